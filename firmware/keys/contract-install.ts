import { EvccError, isEvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { CertificateChainType, CertificateInstallationResType, CertificateUpdateResType, SignatureType } from '../exi/generated/iso2.ts';
import { verifyDetached } from '../exi/xmldsig/index.ts';
import { derToPem, parseCert } from '../pki/cert.ts';
import { validateChain } from '../pki/validate.ts';
import { ISO_ENCRYPTED_KEY_BYTES, type DirectTransport } from './duplicate.ts';
import type { EcdhKey, ImportedKey } from './key-service.ts';

/**
 * The vehicle's side of ISO 15118-2 CertificateInstallation / CertificateUpdate: what the runtime plugs into the
 * session engine's `installContract` effect. In this order, and nothing reaches the TPM before the last step:
 *  1. the CPS chain (SAProvisioningCertificateChain) validates to an installed V2G root (leaf profile `cps-leaf`);
 *  2. the header signature verifies with the CPS leaf and covers the four elements ISO 15118-2 signs
 *     (ContractSignatureCertChain, ContractSignatureEncryptedPrivateKey, DHpublickey, eMAID), whichever SignedInfo
 *     encoding the signer used (xmldsig or the MsgDef fragment grammar, PROTOCOLS.md §5);
 *  3. the contract chain validates to an MO root or a V2G root (leaf profile `contract`);
 *  4. the eMAID element equals the contract certificate's subject CN (and, for an update, the requested eMAID);
 *  5. the key is imported: directly when ContractSignatureEncryptedPrivateKey is a TPM duplicate for this vehicle's
 *     storage key (duplicate.ts DirectTransport, TR-2019-04), otherwise on the ISO 15118-2 path (ECDH inside the
 *     TPM with the key that signed the request, KDF + AES-128-CBC in memory, import); either way the key must be the
 *     certified one before it becomes active, and the superseded contract key is deleted.
 * Any failure throws one of the CONTRACT_* codes below and leaves the previous contract key active and usable.
 */
export type ContractInstallErrorCode =
  /** A mandatory element is missing or not what the schema says (hex, Ids, point length). */
  | 'CONTRACT_RESPONSE_MALFORMED'
  /** No header signature, a digest or ECDSA failure, or a signature that does not cover the four signed elements. */
  | 'CONTRACT_SIGNATURE_INVALID'
  /** The CPS chain does not validate to an installed V2G root. details.cause = the PKI_* code. */
  | 'CONTRACT_CPS_CHAIN_INVALID'
  /** The contract chain does not validate to an MO or V2G root. details.cause = the PKI_* code. */
  | 'CONTRACT_CHAIN_INVALID'
  | 'CONTRACT_EMAID_MISMATCH'
  /**
   * The transported key is not the contract certificate's key: on the ISO path the decrypted key's public key
   * differs (AES-CBC has no integrity tag, so a response encrypted for another vehicle ends here too); on the direct
   * path the proof signature does not verify with the certificate.
   */
  | 'CONTRACT_KEY_MISMATCH'
  /**
   * The key could not be recovered: the TPM refused the ECDH (e.g. a sign-only provisioning key) or the duplicate
   * (TPM integrity check: not wrapped for this storage key and this certified public key), or the decrypted value is
   * no P-256 private key. details.cause / details.rc say which.
   */
  | 'CONTRACT_DECRYPT_FAILED'
  /** The TPM refused the import itself (state policy, storage key). details.cause / details.rc. */
  | 'CONTRACT_IMPORT_FAILED';

export class ContractInstallError extends EvccError<ContractInstallErrorCode> {
  override readonly name = 'ContractInstallError';
}

/** The part of the key service installContract needs (KeyService implements it). */
export interface ContractKeyImporter {
  importCertifiedContractKey(transport: DirectTransport, certificatePublicKeyPem: string): Promise<ImportedKey>;
  importIsoEncryptedContractKey(o: { ecdhKey: EcdhKey; dhPublicKey: Uint8Array; encryptedPrivateKey: Uint8Array; expectedPublicKeyPem: string }): Promise<ImportedKey>;
}

export interface ContractTrust {
  /** Installed V2G roots (DER): anchors of the CPS chain, and of contract chains issued under a V2G root. */
  v2gRoots: readonly Uint8Array[];
  /** Installed MO roots (DER), when the vehicle keeps any: further anchors of the contract chain. */
  moRoots?: readonly Uint8Array[];
}

export interface InstallContractInput {
  operation: 'installation' | 'update';
  /** The response body element's content, or the body element itself (`{ CertificateInstallationRes: … }`). */
  response: CertificateInstallationResType | CertificateUpdateResType | Record<string, unknown>;
  /** The response's V2G header (its `Signature` is what is verified). */
  header: { Signature?: SignatureType } | Record<string, unknown>;
  trust: ContractTrust;
  keys: ContractKeyImporter;
  /** Validation time (the vehicle's clock). */
  now: Date;
  /** Update: the eMAID the request named; the new contract must be for the same one. */
  expectedEmaid?: string;
  log?: Logger;
}

export interface InstalledContract {
  emaid: string;
  contractKeyId: string;
  /** ContractSignatureCertChain as the ISO-2 type (lowercase hex, without Id): what PaymentDetailsReq sends. */
  certificateChain: CertificateChainType;
  /** The contract certificate (leaf), PEM. */
  certificatePem: string;
  /** Leaf and sub-CAs, PEM, leaf first. */
  chainPem: string;
  /** Leaf and sub-CAs, DER, leaf first (CertificateStore.putContractChain(emaid, chainDer)). */
  chainDer: Uint8Array[];
  path: 'direct' | 'compat';
  /** Contract key ids this one replaced (deleted). */
  supersededKeyIds: string[];
  /** How the CPS encoded SignedInfo (EVerest-style stacks use the MsgDef grammar). */
  signedInfoEncoding: 'xmldsig' | 'msgdef';
}

const fail = (code: ContractInstallErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown): never => {
  throw new ContractInstallError(code, message, details, cause === undefined ? undefined : { cause });
};

function bytesOf(hex: unknown, what: string): Uint8Array {
  if (typeof hex !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(hex)) fail('CONTRACT_RESPONSE_MALFORMED', `${what} is not hex binary`, { field: what });
  return new Uint8Array(Buffer.from(hex as string, 'hex'));
}

function chainDers(chain: CertificateChainType | undefined, what: string): Uint8Array[] {
  if (!chain || typeof chain !== 'object') return fail('CONTRACT_RESPONSE_MALFORMED', `${what} missing`, { field: what });
  const subs = chain.SubCertificates?.Certificate;
  const list = subs === undefined ? [] : Array.isArray(subs) ? subs : [subs];
  return [bytesOf(chain.Certificate, `${what}.Certificate`), ...list.map((c, i) => bytesOf(c, `${what}.SubCertificates[${i}]`))];
}

function idOf(el: unknown, what: string): string {
  const id = (el as { Id?: unknown } | undefined)?.Id;
  if (typeof id !== 'string' || !id) fail('CONTRACT_RESPONSE_MALFORMED', `${what} carries no Id`, { field: what });
  return id as string;
}

function unwrap(response: InstallContractInput['response'], operation: InstallContractInput['operation']): CertificateInstallationResType | CertificateUpdateResType {
  const name = operation === 'installation' ? 'CertificateInstallationRes' : 'CertificateUpdateRes';
  const r = response as Record<string, unknown>;
  const inner = (r && typeof r === 'object' && name in r ? r[name] : r) as CertificateInstallationResType | undefined;
  if (!inner || typeof inner !== 'object') return fail('CONTRACT_RESPONSE_MALFORMED', `${name} missing`);
  if (typeof inner.ResponseCode !== 'string' || inner.ResponseCode.startsWith('FAILED')) {
    fail('CONTRACT_RESPONSE_MALFORMED', `${name} carries no contract (ResponseCode ${String(inner.ResponseCode)})`, { responseCode: inner.ResponseCode });
  }
  return inner;
}

/** eMAIDs compared as ISO 15118-2 writes them: case-insensitive, with or without the '-' separators. */
const normalEmaid = (s: string): string => s.replace(/-/g, '').toUpperCase();

/**
 * Verifies a CertificateInstallationRes / CertificateUpdateRes and installs its contract key (see the module
 * comment). Resolves with what the runtime stores (the chain, for PaymentDetailsReq) and reports.
 */
export async function installContract(input: InstallContractInput): Promise<InstalledContract> {
  const res = unwrap(input.response, input.operation);
  const log = input.log;

  // 1. CPS chain → V2G root.
  const cpsChain = chainDers(res.SAProvisioningCertificateChain, 'SAProvisioningCertificateChain');
  try {
    validateChain(cpsChain, { anchors: input.trust.v2gRoots, now: input.now, purpose: 'cps' });
  } catch (err) {
    fail('CONTRACT_CPS_CHAIN_INVALID', `CPS certificate chain refused: ${(err as Error).message}`, { cause: (err as EvccError).code }, err);
  }

  // 2. Signature by the CPS leaf over the four elements.
  const signature = (input.header as { Signature?: SignatureType }).Signature;
  if (!signature) fail('CONTRACT_SIGNATURE_INVALID', `${input.operation === 'installation' ? 'CertificateInstallationRes' : 'CertificateUpdateRes'} carries no header signature`);
  const signedIds = {
    ContractSignatureCertChain: idOf(res.ContractSignatureCertChain, 'ContractSignatureCertChain'),
    ContractSignatureEncryptedPrivateKey: idOf(res.ContractSignatureEncryptedPrivateKey, 'ContractSignatureEncryptedPrivateKey'),
    DHpublickey: idOf(res.DHpublickey, 'DHpublickey'),
    eMAID: idOf(res.eMAID, 'eMAID'),
  };
  let verified: ReturnType<typeof verifyDetached>;
  try {
    verified = verifyDetached(signature!, res, cpsChain[0]!);
  } catch (err) {
    return fail('CONTRACT_SIGNATURE_INVALID', `CPS signature refused: ${(err as Error).message}`, { cause: (err as EvccError).code }, err);
  }
  const unsigned = Object.entries(signedIds).filter(([, id]) => !verified.references.includes(id)).map(([el]) => el);
  if (unsigned.length) fail('CONTRACT_SIGNATURE_INVALID', `CPS signature does not cover ${unsigned.join(', ')}`, { unsigned });

  // 3. Contract chain → MO or V2G root.
  const contractChain = chainDers(res.ContractSignatureCertChain, 'ContractSignatureCertChain');
  try {
    validateChain(contractChain, { anchors: [...(input.trust.moRoots ?? []), ...input.trust.v2gRoots], now: input.now, purpose: 'contract' });
  } catch (err) {
    fail('CONTRACT_CHAIN_INVALID', `contract certificate chain refused: ${(err as Error).message}`, { cause: (err as EvccError).code }, err);
  }
  const leaf = parseCert(contractChain[0]!);

  // 4. eMAID.
  const emaid = res.eMAID?.CONTENT;
  if (typeof emaid !== 'string' || !emaid) return fail('CONTRACT_RESPONSE_MALFORMED', 'eMAID missing', { field: 'eMAID' });
  const cn = leaf.peculiar.subjectName.getField('CN')[0];
  if (!cn || normalEmaid(cn) !== normalEmaid(emaid)) fail('CONTRACT_EMAID_MISMATCH', `eMAID ${emaid} is not the contract certificate's (CN=${cn ?? '(none)'})`, { emaid, certificateCn: cn });
  if (input.expectedEmaid !== undefined && normalEmaid(input.expectedEmaid) !== normalEmaid(emaid)) {
    fail('CONTRACT_EMAID_MISMATCH', `update answered for eMAID ${emaid}, requested ${input.expectedEmaid}`, { emaid, expected: input.expectedEmaid });
  }

  // 5. Key import.
  const encryptedPrivateKey = bytesOf(res.ContractSignatureEncryptedPrivateKey?.CONTENT, 'ContractSignatureEncryptedPrivateKey');
  const dhPublicKey = bytesOf(res.DHpublickey?.CONTENT, 'DHpublickey');
  if (dhPublicKey.length !== 65 || dhPublicKey[0] !== 4) fail('CONTRACT_RESPONSE_MALFORMED', 'DHpublickey is not an uncompressed P-256 point', { length: dhPublicKey.length });
  const certificatePublicKeyPem = leaf.node.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const path: 'direct' | 'compat' = encryptedPrivateKey.length === ISO_ENCRYPTED_KEY_BYTES ? 'compat' : 'direct';
  let imported: ImportedKey;
  try {
    imported = path === 'compat'
      ? await input.keys.importIsoEncryptedContractKey({
        ecdhKey: input.operation === 'installation' ? 'provisioning' : 'contract', dhPublicKey, encryptedPrivateKey, expectedPublicKeyPem: certificatePublicKeyPem,
      })
      : await input.keys.importCertifiedContractKey({ encryptedPrivateKey, dhPublicKey }, certificatePublicKeyPem);
  } catch (err) {
    return failImport(err, path);
  } finally {
    encryptedPrivateKey.fill(0);
  }

  const certificateChain: CertificateChainType = {
    Certificate: Buffer.from(contractChain[0]!).toString('hex'),
    ...(contractChain.length > 1 ? { SubCertificates: { Certificate: contractChain.slice(1).map((d) => Buffer.from(d).toString('hex')) } } : {}),
  };
  log?.info({ emaid, key: imported.id, path, superseded: imported.superseded, signedInfo: verified.signedInfoEncoding },
    `contract ${emaid} installed (${input.operation}, ${path === 'direct' ? 'direct TPM import' : 'ISO 15118-2 transport, ECDH in the TPM'})`);
  return {
    emaid,
    contractKeyId: imported.id,
    certificateChain,
    certificatePem: derToPem(contractChain[0]!),
    chainPem: contractChain.map(derToPem).join(''),
    chainDer: contractChain,
    path,
    supersededKeyIds: imported.superseded,
    signedInfoEncoding: verified.signedInfoEncoding,
  };
}

/** Maps a key-service or TPM failure of step 5 to its CONTRACT_* code. */
function failImport(err: unknown, path: 'direct' | 'compat'): never {
  const code = isEvccError(err) ? err.code : 'UNKNOWN';
  const details = { path, cause: code, ...(isEvccError(err) && err.details.rc ? { rc: err.details.rc } : {}) };
  const message = (err as Error).message;
  if (code === 'KEYS_KEY_MISMATCH') fail('CONTRACT_KEY_MISMATCH', `contract key is not the certified one: ${message}`, details, err);
  // TPM_RC_BINDING (format-one 0x025): public and sensitive area of the duplicate do not belong together.
  const rc = isEvccError(err) && typeof err.details.rc === 'string' ? parseInt(err.details.rc, 16) : 0;
  if (rc & 0x080 && (rc & 0x03f) === 0x025) {
    fail('CONTRACT_KEY_MISMATCH', `the TPM found the wrapped key not bound to the certified public key: ${message}`, details, err);
  }
  const command = isEvccError(err) ? err.details.command : undefined;
  if (code === 'KEYS_BLOB_MALFORMED' || code === 'TPM_BLOB_INTEGRITY' || command === 'tpm2_ecdhzgen' || code === 'TPM_KEY_ATTRIBUTES') {
    fail('CONTRACT_DECRYPT_FAILED', `contract key could not be recovered (${path}): ${message}`, details, err);
  }
  return fail('CONTRACT_IMPORT_FAILED', `contract key import refused (${path}): ${message}`, details, err);
}
