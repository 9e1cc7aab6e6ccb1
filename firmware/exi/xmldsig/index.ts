import { createHash, createPublicKey, verify as cryptoVerify, X509Certificate, type KeyObject } from 'node:crypto';
import { EvccError } from '../../../core/errors.ts';
import { encodeFragment, type FragmentOf, type Iso2, type XmlDsig } from '../index.ts';

/**
 * ISO 15118-2 message signatures (xmldsig over EXI), PROTOCOLS.md §5:
 * - each Reference digest = SHA-256 over the referenced element (by Id) encoded as an EXI fragment with the MsgDef
 *   (ISO-2) fragment grammar [V2G2-116];
 * - the signature = ECDSA-P256-SHA256 over SignedInfo encoded as an EXI fragment with the standalone xmldsig
 *   grammar; SignatureValue is raw r‖s (64 bytes) [V2G2-771].
 * Signing goes through an injected `Signer` (the TPM-held contract key plugs in there).
 */

export const CANONICAL_EXI = 'http://www.w3.org/TR/canonical-exi/';
export const ECDSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256';
export const SHA256 = 'http://www.w3.org/2001/04/xmlenc#sha256';

export type XmldsigErrorCode =
  | 'XMLDSIG_NO_SIGNATURE'
  | 'XMLDSIG_ALGORITHM'
  | 'XMLDSIG_REFERENCE_MISSING'
  | 'XMLDSIG_DUPLICATE_ID'
  | 'XMLDSIG_DIGEST_MISMATCH'
  | 'XMLDSIG_BAD_SIGNATURE'
  | 'XMLDSIG_BAD_KEY'
  | 'XMLDSIG_SIGNER_FAILED';

export class XmldsigError extends EvccError<XmldsigErrorCode> {
  override readonly name = 'XmldsigError';
}

/** Signs a 32-byte SHA-256 digest with a P-256 key; returns raw r‖s (64 bytes). */
export interface Signer {
  sign(digest32: Uint8Array): Promise<Uint8Array>;
}

/** An element to be referenced: `{ AuthorizationReq: { Id: 'id1', ... } }` (its Id is the reference URI). */
export type SignedElement = FragmentOf<'iso2'>;

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest());
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/**
 * SHA-256 of an element's MsgDef EXI fragment: the Reference DigestValue. Length facets are not enforced here: a
 * digest must reproduce what the peer sent (field SECCs send 18-character eMAIDs where ISO-2 allows 15).
 */
export function referenceDigest(element: SignedElement): Uint8Array {
  return sha256(encodeFragment('iso2', element, { ignoreLengthFacets: true }));
}

function idOf(element: SignedElement): string {
  const [content] = Object.values(element) as unknown[];
  const id = content && typeof content === 'object' ? (content as { Id?: unknown }).Id : undefined;
  if (typeof id !== 'string' || !id) throw new XmldsigError('XMLDSIG_REFERENCE_MISSING', 'a signed element needs an Id attribute', { element: Object.keys(element)[0] });
  return id;
}

/** SignedInfo referencing the given elements, with the algorithms ISO 15118-2 prescribes. */
export function buildSignedInfo(elements: SignedElement[]): XmlDsig.SignedInfoType {
  if (elements.length === 0) throw new XmldsigError('XMLDSIG_REFERENCE_MISSING', 'nothing to sign');
  return {
    CanonicalizationMethod: { Algorithm: CANONICAL_EXI },
    SignatureMethod: { Algorithm: ECDSA_SHA256 },
    Reference: elements.map((e) => ({
      URI: `#${idOf(e)}`,
      Transforms: { Transform: { Algorithm: CANONICAL_EXI } },
      DigestMethod: { Algorithm: SHA256 },
      DigestValue: hex(referenceDigest(e)),
    })),
  };
}

/** The bytes the signature covers: SignedInfo as a standalone-xmldsig EXI fragment. */
export function signedInfoBytes(signedInfo: XmlDsig.SignedInfoType, grammar: 'xmldsig' | 'msgdef' = 'xmldsig'): Uint8Array {
  const opts = { ignoreLengthFacets: true };
  return grammar === 'xmldsig' ? encodeFragment('xmldsig', { SignedInfo: signedInfo }, opts) : encodeFragment('iso2', { SignedInfo: signedInfo }, opts);
}

/** Builds the header `Signature` over the given body elements, signing through `signer`. */
export async function sign(elements: SignedElement[], signer: Signer): Promise<Iso2.SignatureType> {
  const signedInfo = buildSignedInfo(elements);
  let raw: Uint8Array;
  try {
    raw = await signer.sign(sha256(signedInfoBytes(signedInfo)));
  } catch (err) {
    throw new XmldsigError('XMLDSIG_SIGNER_FAILED', 'the signer failed', {}, { cause: err });
  }
  if (!(raw instanceof Uint8Array) || raw.length !== 64) throw new XmldsigError('XMLDSIG_SIGNER_FAILED', 'signer must return raw r‖s (64 bytes)', { length: raw?.length });
  return { SignedInfo: signedInfo, SignatureValue: { CONTENT: hex(raw) } };
}

export type VerificationKey = KeyObject | X509Certificate | Uint8Array;

export interface VerifiedSignature {
  /** Ids of the verified references. */
  references: string[];
  /** How SignedInfo was encoded by the signer: the standard standalone xmldsig grammar, or the MsgDef fragment grammar (some SECC stacks). */
  signedInfoEncoding: 'xmldsig' | 'msgdef';
  /** The signature value format seen: raw r‖s (standard) or DER (some stacks). */
  signatureFormat: 'raw' | 'der';
}

/** The verification key: must be an EC P-256 public key (ISO 15118-2 signatures are ECDSA-P256-SHA256). */
function publicKey(key: VerificationKey): KeyObject {
  let pk: KeyObject;
  try {
    if (key instanceof X509Certificate) pk = key.publicKey;
    else if (key instanceof Uint8Array) pk = new X509Certificate(key).publicKey;
    else pk = key.type === 'public' ? key : createPublicKey(key);
  } catch (err) {
    throw new XmldsigError('XMLDSIG_BAD_KEY', 'verification key is not a certificate or public key', {}, { cause: err });
  }
  if (pk.asymmetricKeyType !== 'ec' || pk.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new XmldsigError('XMLDSIG_BAD_KEY', 'verification key is not an EC P-256 key', { type: pk.asymmetricKeyType, curve: pk.asymmetricKeyDetails?.namedCurve });
  }
  return pk;
}

/** All elements carrying an Id attribute, by Id. Duplicate Ids are refused (signature-wrapping defence). */
function collectIds(value: unknown, name: string, out: Map<string, SignedElement>): void {
  if (Array.isArray(value)) {
    for (const v of value) collectIds(v, name, out);
    return;
  }
  if (!value || typeof value !== 'object') return;
  const id = (value as { Id?: unknown }).Id;
  if (typeof id === 'string') {
    if (out.has(id)) throw new XmldsigError('XMLDSIG_DUPLICATE_ID', 'duplicate Id in the message body', { id });
    out.set(id, { [name]: value } as SignedElement);
  }
  for (const [k, v] of Object.entries(value)) collectIds(v, k, out);
}

/**
 * Verifies the header signature of an ISO 15118-2 message: every Reference digest is recomputed from the Body, and
 * the ECDSA signature over SignedInfo is checked with `key`. Throws XmldsigError on any failure.
 */
export function verify(message: Iso2.Document, key: VerificationKey): VerifiedSignature {
  const v2g = (message as { V2G_Message?: Iso2.V2G_MessageElement }).V2G_Message;
  const sig = v2g?.Header.Signature;
  if (!v2g || !sig) throw new XmldsigError('XMLDSIG_NO_SIGNATURE', 'message carries no header signature');
  return verifyDetached(sig, v2g.Body, key);
}

/** Verifies a Signature whose references point into `body` (a V2G Body, or any object holding the signed elements). */
export function verifyDetached(sig: Iso2.SignatureType, body: unknown, key: VerificationKey): VerifiedSignature {
  try {
    return verifyChecked(sig, body, key);
  } catch (err) {
    if (err instanceof XmldsigError) throw err;
    // A decoded message may lack mandatory parts (non-strict EXI ends elements early), or carry elements that cannot
    // be re-encoded: whatever it is, the signature is not verified.
    throw new XmldsigError('XMLDSIG_BAD_SIGNATURE', 'malformed signature or signed element', {}, { cause: err });
  }
}

function verifyChecked(sig: Iso2.SignatureType, body: unknown, key: VerificationKey): VerifiedSignature {
  const si = sig.SignedInfo;
  if (typeof sig.SignatureValue?.CONTENT !== 'string') throw new XmldsigError('XMLDSIG_BAD_SIGNATURE', 'empty SignatureValue');
  if (si.SignatureMethod.Algorithm !== ECDSA_SHA256) throw new XmldsigError('XMLDSIG_ALGORITHM', 'unsupported SignatureMethod', { algorithm: si.SignatureMethod.Algorithm });
  const ids = new Map<string, SignedElement>();
  collectIds(body, '', ids);
  const refs = Array.isArray(si.Reference) ? si.Reference : [si.Reference];
  const verified: string[] = [];
  for (const ref of refs) {
    if (ref.DigestMethod.Algorithm !== SHA256) throw new XmldsigError('XMLDSIG_ALGORITHM', 'unsupported DigestMethod', { algorithm: ref.DigestMethod.Algorithm });
    const uri = ref.URI ?? '';
    const element = uri.startsWith('#') ? ids.get(uri.slice(1)) : undefined;
    if (!element) throw new XmldsigError('XMLDSIG_REFERENCE_MISSING', 'reference points at no element of the body', { uri });
    const digest = hex(referenceDigest(element));
    if (digest !== ref.DigestValue.toLowerCase()) throw new XmldsigError('XMLDSIG_DIGEST_MISMATCH', 'reference digest does not match the element', { uri, expected: ref.DigestValue, computed: digest });
    verified.push(uri.slice(1));
  }
  const value = Buffer.from(sig.SignatureValue.CONTENT, 'hex');
  const format: 'raw' | 'der' = value.length === 64 ? 'raw' : 'der';
  const pk = publicKey(key);
  for (const encoding of ['xmldsig', 'msgdef'] as const) {
    let ok = false;
    try {
      ok = cryptoVerify('sha256', signedInfoBytes(si, encoding), { key: pk, dsaEncoding: format === 'raw' ? 'ieee-p1363' : 'der' }, value);
    } catch {
      ok = false; // malformed DER and the like: simply not a valid signature
    }
    if (ok) return { references: verified, signedInfoEncoding: encoding, signatureFormat: format };
  }
  throw new XmldsigError('XMLDSIG_BAD_SIGNATURE', 'ECDSA signature over SignedInfo does not verify', { references: verified });
}
