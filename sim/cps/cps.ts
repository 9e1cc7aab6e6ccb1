/**
 * The CPS / MO backend simulator: answers an ISO 15118-2 CertificateInstallationReq / CertificateUpdateReq the way a
 * certificate provisioning service with a mobility operator behind it does, with the test PKI's software keys
 * (firmware/pki/generate.ts). For each request a new contract key pair and a contract certificate from MO Sub-CA 2
 * (subject CN = eMAID); the key travels
 * - wrapped for direct TPM import (firmware/keys/duplicate.ts DirectTransport) when the certificate the request
 *   brings carries the storage-key extension (the OEM provisioning certificate for an installation, the current
 *   contract certificate for an update: the MO copies the extension into the contract certificates it issues), or
 *   when `storageKey` is given (the MO's own record of the vehicle);
 * - ISO 15118-2 encrypted otherwise (ECDH with the request's certificate key, KDF, AES-128-CBC;
 *   firmware/keys/iso-key-transport.ts).
 * The response is signed by the CPS leaf over ContractSignatureCertChain, ContractSignatureEncryptedPrivateKey,
 * DHpublickey and eMAID. `forge` makes the deliberately wrong answers the vehicle's negative tests need.
 * The returned `{ body, signature }` is what sim/secc's CertificateServiceHook returns.
 */
import { randomBytes, sign as cryptoSign, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { EvccError } from '../../core/errors.ts';
import type {
  CertificateChainType, CertificateInstallationReqType, CertificateInstallationResType, CertificateUpdateReqType, CertificateUpdateResType, SignatureType,
} from '../../firmware/exi/generated/iso2.ts';
import { buildSignedInfo, signedInfoBytes, verifyDetached, type SignedElement } from '../../firmware/exi/xmldsig/index.ts';
import {
  contractKeyPublic, decodeStorageKeyExtension, privateScalarOf, toDirectTransport, wrapWithPublic, type StorageKeyExtension,
} from '../../firmware/keys/duplicate.ts';
import { isoEncryptPrivateKey } from '../../firmware/keys/iso-key-transport.ts';
import { eccPoint } from '../../firmware/keys/policy.ts';
import { issue, type IssuedCert, type TestPki } from '../../firmware/pki/generate.ts';
import { OID_STORAGE_KEY_EXTENSION } from '../../firmware/pki/profiles.ts';

export type CpsErrorCode = 'CPS_REQUEST_MALFORMED' | 'CPS_REQUEST_SIGNATURE_INVALID' | 'CPS_NO_STORAGE_KEY';

export class CpsError extends EvccError<CpsErrorCode> {
  override readonly name = 'CpsError';
}

/** Deliberately wrong answers, each meant to be refused by the vehicle with its own CONTRACT_* code. */
export type CpsForgery =
  /** Signed with a key that is not the CPS leaf's (→ CONTRACT_SIGNATURE_INVALID). */
  | 'wrong-cps-signer'
  /** A CPS chain under a V2G root the vehicle does not have (→ CONTRACT_CPS_CHAIN_INVALID). */
  | 'cps-chain-unknown-root'
  /** A contract chain under an MO root nobody installed (→ CONTRACT_CHAIN_INVALID). */
  | 'contract-chain-unknown-root'
  /** The eMAID element differs from the certificate's CN, consistently signed (→ CONTRACT_EMAID_MISMATCH). */
  | 'emaid-mismatch'
  /** Another key than the certified one is transported (→ CONTRACT_KEY_MISMATCH). */
  | 'key-mismatch'
  /** The eMAID is changed after signing (→ CONTRACT_SIGNATURE_INVALID, digest mismatch). */
  | 'tampered-after-signing'
  /** The signature covers the eMAID only (→ CONTRACT_SIGNATURE_INVALID: the key and chain are unsigned). */
  | 'partial-signature';

export interface CpsOptions {
  pki: TestPki;
  now?: Date;
  /** Installation: the eMAID of the new contract (default DEEVCC000000001). Update: default the requested one. */
  emaid?: string;
  /** 'auto' (default): direct when a storage key is known (extension or `storageKey`), ISO 15118-2 otherwise. */
  transport?: 'auto' | 'direct' | 'compat';
  /** The MO's record of the vehicle's storage key (update of a contract whose certificate lacks the extension). */
  storageKey?: StorageKeyExtension;
  /** How SignedInfo is encoded for the signature: the standard xmldsig grammar, or the MsgDef grammar (EVerest-style). */
  signedInfoEncoding?: 'xmldsig' | 'msgdef';
  /** The request's header signature: verified with the request's certificate when given. */
  requestSignature?: SignatureType;
  forge?: CpsForgery;
  random?: (bytes: number) => Uint8Array;
}

export interface CpsAnswer<Body> {
  body: Body;
  signature: SignatureType;
  transport: 'direct' | 'compat';
  /** The SECC must encode with these: the direct duplicate (78 bytes) exceeds the schema's 48-byte facet. */
  encodeOptions: { ignoreLengthFacets: boolean };
  /** TEST material for assertions: the contract's key (PKCS#8 PEM, never on a vehicle) and certificate. */
  contract: { emaid: string; keyPem: string; certificatePem: string; chainPem: string; certificateChain: CertificateChainType };
}

const DEFAULT_EMAID = 'DEEVCC000000001';
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const fromHex = (h: string, what: string): Uint8Array => {
  if (typeof h !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(h)) throw new CpsError('CPS_REQUEST_MALFORMED', `${what} is not hex binary`);
  return new Uint8Array(Buffer.from(h, 'hex'));
};

function storageKeyOf(certDer: Uint8Array): StorageKeyExtension | undefined {
  const ext = new x509.X509Certificate(Uint8Array.from(certDer)).getExtension(OID_STORAGE_KEY_EXTENSION);
  if (!ext) return undefined;
  // The extension value is an OCTET STRING whose content is our layout (duplicate.ts).
  const v = new Uint8Array(ext.value);
  if (v[0] !== 0x04) return undefined;
  let off = 2;
  let len = v[1]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | v[2 + i]!;
    off = 2 + n;
  }
  return decodeStorageKeyExtension(v.subarray(off, off + len));
}

function chainOf(leaf: IssuedCert, subs: IssuedCert[], id?: string): CertificateChainType {
  return { ...(id ? { Id: id } : {}), Certificate: hex(leaf.der), SubCertificates: { Certificate: subs.map((s) => hex(s.der)) } };
}

/** The same eMAID with its last character changed. */
const otherEmaid = (emaid: string): string => `${emaid.slice(0, -1)}${emaid.endsWith('9') ? '8' : '9'}`;

/** A random valid P-256 scalar (the top bit cleared keeps it below the group order). */
function otherScalar(random: (n: number) => Uint8Array): Uint8Array {
  const s = Uint8Array.from(random(32));
  s[0] = (s[0]! & 0x7f) | 0x01;
  return s;
}

interface Recipient {
  /** The certificate the request brought (OEM provisioning or current contract). */
  certDer: Uint8Array;
  emaid: string;
  operation: 'installation' | 'update';
}

async function answer(r: Recipient, o: CpsOptions): Promise<CpsAnswer<CertificateInstallationResType>> {
  const now = o.now ?? new Date();
  const random = o.random ?? ((n: number) => new Uint8Array(randomBytes(n)));
  const pki = o.pki;
  const known = storageKeyOf(r.certDer) ?? o.storageKey;
  const transport = o.transport === 'compat' ? 'compat' : o.transport === 'direct' || known ? 'direct' : 'compat';
  if (transport === 'direct' && !known) throw new CpsError('CPS_NO_STORAGE_KEY', 'direct import asked for, but the vehicle\'s storage key is unknown');

  // The contract: a new key pair and certificate. On the direct path the storage-key extension is copied, so the
  // next CertificateUpdate can go direct too.
  let moIssuer = pki.mo.sub2;
  let moSubs = [pki.mo.sub2, pki.mo.sub1];
  if (o.forge === 'contract-chain-unknown-root') {
    const root = await issue({ name: 'rogue/mo-root', role: 'mo-root', subject: 'CN=Rogue MO Root, O=Nobody, C=DE, DC=MO', now });
    const sub1 = await issue({ name: 'rogue/mo-sub-ca-1', role: 'mo-sub-ca-1', subject: 'CN=MO Sub-CA 1, O=EVCC Test MO, C=DE, DC=MO', issuer: root, now });
    const sub2 = await issue({ name: 'rogue/mo-sub-ca-2', role: 'mo-sub-ca-2', subject: 'CN=MO Sub-CA 2, O=EVCC Test MO, C=DE, DC=MO', issuer: sub1, now });
    moIssuer = sub2;
    moSubs = [sub2, sub1];
  }
  const copied = transport === 'direct' ? new x509.X509Certificate(Uint8Array.from(r.certDer)).getExtension(OID_STORAGE_KEY_EXTENSION) : undefined;
  const contract = await issue({
    name: 'mo/contract', role: 'contract', subject: `CN=${r.emaid}, O=EVCC Test MO, C=DE, DC=MO`, issuer: moIssuer, now,
    ...(copied ? { extraExtensions: [new x509.Extension(OID_STORAGE_KEY_EXTENSION, false, new Uint8Array(copied.value))] } : {}),
  });

  const scalar = privateScalarOf(contract.keyPem);
  const transported = o.forge === 'key-mismatch' ? otherScalar(random) : scalar;
  let encryptedPrivateKey: Uint8Array;
  let dhPublicKey: Uint8Array;
  if (transport === 'direct') {
    const certPublic = contractKeyPublic(eccPoint(contract.cert.publicKey.toString('pem')), known!.keysPolicy);
    ({ encryptedPrivateKey, dhPublicKey } = toDirectTransport(wrapWithPublic(transported, certPublic, known!.storageKeyPublic)));
  } else {
    const recipient = new X509Certificate(Buffer.from(r.certDer)).publicKey;
    ({ encryptedPrivateKey, dhPublicKey } = isoEncryptPrivateKey(transported, recipient, random(16)));
  }
  scalar.fill(0);
  transported.fill(0);

  // The CPS chain (the signer).
  let cps = { leaf: pki.cps.leaf, subs: [pki.cps.sub2, pki.cps.sub1] };
  if (o.forge === 'cps-chain-unknown-root') {
    const root = await issue({ name: 'rogue/v2g-root', role: 'v2g-root', subject: 'CN=Rogue V2G Root, O=Nobody, C=DE, DC=V2G', now });
    const sub1 = await issue({ name: 'rogue/cps-sub-ca-1', role: 'cps-sub-ca-1', subject: 'CN=CPS Sub-CA 1, O=EVCC Test CPS, C=DE, DC=V2G', issuer: root, now });
    const sub2 = await issue({ name: 'rogue/cps-sub-ca-2', role: 'cps-sub-ca-2', subject: 'CN=CPS Sub-CA 2, O=EVCC Test CPS, C=DE, DC=V2G', issuer: sub1, now });
    const leaf = await issue({ name: 'rogue/cps-leaf', role: 'cps-leaf', subject: 'CN=CPS Leaf, O=EVCC Test CPS, C=DE, DC=CPS', issuer: sub2, now });
    cps = { leaf, subs: [sub2, sub1] };
  }

  const signedEmaid = o.forge === 'emaid-mismatch' ? otherEmaid(r.emaid) : r.emaid;
  const body: CertificateInstallationResType = {
    ResponseCode: 'OK',
    SAProvisioningCertificateChain: chainOf(cps.leaf, cps.subs),
    ContractSignatureCertChain: chainOf(contract, moSubs, 'id1'),
    ContractSignatureEncryptedPrivateKey: { Id: 'id2', CONTENT: hex(encryptedPrivateKey) },
    DHpublickey: { Id: 'id3', CONTENT: hex(dhPublicKey) },
    eMAID: { Id: 'id4', CONTENT: signedEmaid },
  };
  const elements: SignedElement[] = o.forge === 'partial-signature'
    ? [{ eMAID: body.eMAID }]
    : [
      { ContractSignatureCertChain: body.ContractSignatureCertChain },
      { ContractSignatureEncryptedPrivateKey: body.ContractSignatureEncryptedPrivateKey },
      { DHpublickey: body.DHpublickey },
      { eMAID: body.eMAID },
    ] as SignedElement[];
  const signedInfo = buildSignedInfo(elements);
  const signerKeyPem = o.forge === 'wrong-cps-signer' ? pki.a.seccLeaf.keyPem : cps.leaf.keyPem;
  const value = cryptoSign('sha256', signedInfoBytes(signedInfo, o.signedInfoEncoding ?? 'xmldsig'), { key: signerKeyPem, dsaEncoding: 'ieee-p1363' });
  const signature: SignatureType = { SignedInfo: signedInfo, SignatureValue: { CONTENT: hex(value) } };
  if (o.forge === 'tampered-after-signing') body.eMAID = { Id: 'id4', CONTENT: otherEmaid(r.emaid) };

  const certificateChain = chainOf(contract, moSubs);
  return {
    body,
    signature,
    transport,
    encodeOptions: { ignoreLengthFacets: transport === 'direct' },
    contract: {
      emaid: r.emaid, keyPem: contract.keyPem, certificatePem: contract.pem, chainPem: [contract, ...moSubs].map((c) => c.pem).join(''),
      certificateChain: { Certificate: certificateChain.Certificate, SubCertificates: certificateChain.SubCertificates! },
    },
  };
}

function verifyRequest(element: SignedElement, certDer: Uint8Array, o: CpsOptions): void {
  if (!o.requestSignature) return;
  try {
    verifyDetached(o.requestSignature, element, certDer);
  } catch (err) {
    throw new CpsError('CPS_REQUEST_SIGNATURE_INVALID', `request signature refused: ${(err as Error).message}`, { cause: (err as EvccError).code }, { cause: err });
  }
}

/** CertificateInstallationRes for a CertificateInstallationReq (signed by the OEM provisioning key). */
export async function answerCertificateInstallation(req: CertificateInstallationReqType, o: CpsOptions): Promise<CpsAnswer<CertificateInstallationResType>> {
  const certDer = fromHex(req?.OEMProvisioningCert, 'OEMProvisioningCert');
  verifyRequest({ CertificateInstallationReq: req } as SignedElement, certDer, o);
  return answer({ certDer, emaid: o.emaid ?? DEFAULT_EMAID, operation: 'installation' }, o);
}

/** CertificateUpdateRes for a CertificateUpdateReq (signed by the current contract key). */
export async function answerCertificateUpdate(req: CertificateUpdateReqType, o: CpsOptions): Promise<CpsAnswer<CertificateUpdateResType>> {
  const certDer = fromHex(req?.ContractSignatureCertChain?.Certificate, 'ContractSignatureCertChain.Certificate');
  verifyRequest({ CertificateUpdateReq: req } as SignedElement, certDer, o);
  if (typeof req.eMAID !== 'string' || !req.eMAID) throw new CpsError('CPS_REQUEST_MALFORMED', 'CertificateUpdateReq without eMAID');
  return answer({ certDer, emaid: o.emaid ?? req.eMAID, operation: 'update' }, o);
}
