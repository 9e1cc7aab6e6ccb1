import { createCipheriv, createECDH, createHmac, createPrivateKey, createPublicKey } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import { concat, sha256, TPM_ALG_SHA256, TPMA, u16, u32 } from './policy.ts';

/**
 * Direct import of an ECC P-256 key into one vehicle's TPM storage key (TR-2019-04 §3.3.3): the MO (or, on the
 * compatibility path, the EVCC itself in memory) builds the TPM2_Import inputs offline — TPM2B_PUBLIC,
 * a duplicate (TPM2B_PRIVATE, outer wrapper only) and the ECDH-encrypted seed — so the plaintext key never
 * reaches a file. TPM 2.0 Part 1 §23.3 (duplication outer wrapper), §11.4.10 (KDFa, KDFe), Part 2 §12.
 * Checked against TPM2_Import on swtpm in test/integration/tpm-flow.test.ts.
 */

const TPM_ALG_ECC = 0x0023;
const TPM_ALG_NULL = 0x0010;
const TPM_ALG_ECDSA = 0x0018;
const TPM_ALG_AES = 0x0006;
const TPM_ALG_CFB = 0x0043;
const TPM_ECC_NIST_P256 = 0x0003;

/**
 * Attributes of an imported contract key: sign and decrypt, policy only (no userWithAuth), admin role by policy too.
 * `decrypt` because the ISO 15118-2 CertificateUpdate transport does ECDH (TPM2_ECDH_ZGen) with the current contract
 * key; the TPM then requires a null scheme (TPM2_Sign picks ECDSA-SHA256 at use). Every use, signature or ZGen, still
 * needs policy A, i.e. the OEM-approved state (README "Sign and decrypt": the trade-off).
 */
export const CONTRACT_KEY_ATTRIBUTES = TPMA.sign | TPMA.decrypt | TPMA.adminWithPolicy;

export interface EccPublicArea {
  nameAlg: number;
  attributes: number;
  authPolicy: Uint8Array;
  symmetric: { alg: number; keyBits?: number; mode?: number };
  scheme: { alg: number; hash?: number };
  curve: number;
  x: Uint8Array;
  y: Uint8Array;
}

export interface ImportBlob {
  /** TPM2B_PUBLIC of the key being imported (carries its authPolicy). */
  public: Uint8Array;
  /** TPM2B_PRIVATE: outer HMAC || AES-128-CFB(TPM2B_SENSITIVE). */
  duplicate: Uint8Array;
  /** TPM2B_ENCRYPTED_SECRET: the ephemeral ECDH point the seed was derived from. */
  encryptedSeed: Uint8Array;
}

function tpm2b(b: Uint8Array): Uint8Array {
  return concat(u16(b.length), b);
}

export function marshalEccPublic(p: EccPublicArea): Uint8Array {
  const sym = p.symmetric.alg === TPM_ALG_NULL ? u16(TPM_ALG_NULL) : concat(u16(p.symmetric.alg), u16(p.symmetric.keyBits ?? 0), u16(p.symmetric.mode ?? 0));
  const scheme = p.scheme.alg === TPM_ALG_NULL ? u16(TPM_ALG_NULL) : concat(u16(p.scheme.alg), u16(p.scheme.hash ?? TPM_ALG_SHA256));
  return concat(u16(TPM_ALG_ECC), u16(p.nameAlg), u32(p.attributes >>> 0), tpm2b(p.authPolicy), sym, scheme, u16(p.curve), u16(TPM_ALG_NULL),
    tpm2b(p.x), tpm2b(p.y));
}

/** Bounded reader; every overrun is a typed error. */
class Reader {
  private o = 0;
  constructor(private readonly b: Uint8Array, private readonly what: string) {}
  private need(n: number): void {
    if (this.o + n > this.b.length) throw new EvccError('KEYS_BLOB_MALFORMED', `${this.what}: truncated`, { what: this.what });
  }
  u16(): number {
    this.need(2);
    const v = (this.b[this.o]! << 8) | this.b[this.o + 1]!;
    this.o += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = ((this.b[this.o]! << 24) | (this.b[this.o + 1]! << 16) | (this.b[this.o + 2]! << 8) | this.b[this.o + 3]!) >>> 0;
    this.o += 4;
    return v;
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const v = this.b.subarray(this.o, this.o + n);
    this.o += n;
    return v;
  }
  tpm2b(max: number): Uint8Array {
    const n = this.u16();
    if (n > max) throw new EvccError('KEYS_BLOB_MALFORMED', `${this.what}: field of ${n} bytes`, { what: this.what });
    return this.bytes(n);
  }
  get done(): boolean {
    return this.o === this.b.length;
  }
}

/** Parses a TPM2B_PUBLIC (as `tpm2_readpublic -o` / `tpm2_create -u` write it) of an ECC key. */
export function parseEccPublic(tpm2bPublic: Uint8Array): EccPublicArea {
  const outer = new Reader(tpm2bPublic, 'TPM2B_PUBLIC');
  const area = outer.tpm2b(1024);
  if (!outer.done) throw new EvccError('KEYS_BLOB_MALFORMED', 'TPM2B_PUBLIC: trailing bytes');
  const r = new Reader(area, 'TPMT_PUBLIC');
  if (r.u16() !== TPM_ALG_ECC) throw new EvccError('KEYS_BLOB_MALFORMED', 'TPMT_PUBLIC: not an ECC key');
  const nameAlg = r.u16();
  const attributes = r.u32();
  const authPolicy = r.tpm2b(64);
  const symAlg = r.u16();
  const symmetric = symAlg === TPM_ALG_NULL ? { alg: symAlg } : { alg: symAlg, keyBits: r.u16(), mode: r.u16() };
  const schemeAlg = r.u16();
  const scheme = schemeAlg === TPM_ALG_NULL ? { alg: schemeAlg } : { alg: schemeAlg, hash: r.u16() };
  const curve = r.u16();
  const kdf = r.u16();
  if (kdf !== TPM_ALG_NULL) r.u16();
  const x = r.tpm2b(66);
  const y = r.tpm2b(66);
  if (!r.done) throw new EvccError('KEYS_BLOB_MALFORMED', 'TPMT_PUBLIC: trailing bytes');
  return { nameAlg, attributes, authPolicy, symmetric, scheme, curve, x, y };
}

/** TPM name of a public area: nameAlg || H(TPMT_PUBLIC). */
export function objectName(tpm2bPublic: Uint8Array): Uint8Array {
  const area = new Reader(tpm2bPublic, 'TPM2B_PUBLIC').tpm2b(1024);
  return concat(u16(TPM_ALG_SHA256), sha256(area));
}

/** SubjectPublicKeyInfo PEM of an ECC P-256 TPM public area. */
export function eccPublicPem(p: EccPublicArea): string {
  return createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: Buffer.from(p.x).toString('base64url'), y: Buffer.from(p.y).toString('base64url') }, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' }) as string;
}

/** SP 800-108 counter-mode KDF with HMAC-SHA256 (TPM 2.0 Part 1 §11.4.10.2). Label includes its NUL. */
export function kdfa(key: Uint8Array, label: string, contextU: Uint8Array, contextV: Uint8Array, bits: number): Uint8Array {
  const out: Uint8Array[] = [];
  for (let i = 1, have = 0; have < bits / 8; i++, have += 32) {
    out.push(new Uint8Array(createHmac('sha256', key).update(u32(i)).update(label).update(Uint8Array.of(0)).update(contextU).update(contextV)
      .update(u32(bits)).digest()));
  }
  return concat(...out).subarray(0, bits / 8);
}

/** SP 800-56A concatenation KDF (TPM 2.0 Part 1 §11.4.10.3), one SHA-256 block is enough for a 256-bit seed. */
export function kdfe(z: Uint8Array, label: string, partyU: Uint8Array, partyV: Uint8Array): Uint8Array {
  return sha256(u32(1), z, new TextEncoder().encode(label), Uint8Array.of(0), partyU, partyV);
}

export interface WrapOptions {
  /** TPM2B_PUBLIC of the vehicle's storage key (restricted decrypt ECC P-256, AES-128-CFB). */
  storageKeyPublic: Uint8Array;
  /** The key's own authPolicy: A = PolicyAuthorize(OEM, policyRef) (TPM.md §1, direct binding). */
  authPolicy: Uint8Array;
  attributes?: number;
}

/**
 * TPM2B_PUBLIC of a contract key as the vehicle imports it: P-256, nameAlg SHA-256, CONTRACT_KEY_ATTRIBUTES (or
 * `attributes`), authPolicy A, symmetric null, scheme ECDSA-SHA256 for a sign-only key and null once decrypt is set.
 * The vehicle rebuilds it from the contract certificate's public key (direct import from CertificateInstallationRes),
 * so the certificate, not the sender, decides the key, its attributes and its policy: the duplicate's outer HMAC
 * covers this area's name, and a blob made for another key, attributes or policy fails the TPM's integrity check.
 */
export function contractKeyPublic(point: { x: Uint8Array; y: Uint8Array }, authPolicy: Uint8Array, attributes = CONTRACT_KEY_ATTRIBUTES): Uint8Array {
  if (point.x.length !== 32 || point.y.length !== 32) throw new EvccError('KEYS_BLOB_MALFORMED', 'P-256 point coordinates must be 32 bytes');
  const signOnly = !(attributes & TPMA.decrypt);
  return tpm2b(marshalEccPublic({
    nameAlg: TPM_ALG_SHA256,
    attributes,
    authPolicy,
    symmetric: { alg: TPM_ALG_NULL },
    scheme: signOnly ? { alg: TPM_ALG_ECDSA, hash: TPM_ALG_SHA256 } : { alg: TPM_ALG_NULL },
    curve: TPM_ECC_NIST_P256,
    x: point.x,
    y: point.y,
  }));
}

/** The public point of a P-256 private scalar (the ECDH object holding the scalar is overwritten). */
function pointOf(privateScalar: Uint8Array): { x: Uint8Array; y: Uint8Array } {
  const ecdh = createECDH('prime256v1');
  try {
    ecdh.setPrivateKey(Buffer.from(privateScalar));
  } catch (err) {
    throw new EvccError('KEYS_BLOB_MALFORMED', 'not a valid P-256 private scalar', {}, { cause: err });
  }
  const point = new Uint8Array(ecdh.getPublicKey());
  ecdh.setPrivateKey(Buffer.alloc(32, 1)); // overwrite the scalar held by the ECDH object
  return { x: point.slice(1, 33), y: point.slice(33, 65) };
}

/**
 * Wraps a P-256 private scalar for TPM2_Import under `storageKeyPublic`. The scalar is consumed: the caller
 * should zero its copy; this function zeroes every intermediate that contains it.
 */
export function wrapForImport(privateScalar: Uint8Array, opts: WrapOptions): ImportBlob {
  if (privateScalar.length !== 32) throw new EvccError('KEYS_BLOB_MALFORMED', 'P-256 private scalar must be 32 bytes');
  return wrapWithPublic(privateScalar, contractKeyPublic(pointOf(privateScalar), opts.authPolicy, opts.attributes ?? CONTRACT_KEY_ATTRIBUTES), opts.storageKeyPublic);
}

/**
 * As wrapForImport, with the public area given (TPM2B_PUBLIC). The MO wraps under the area the vehicle will rebuild
 * from the certificate; a simulator forging a key mismatch pairs another scalar with a certified area.
 */
export function wrapWithPublic(privateScalar: Uint8Array, tpm2bPublic: Uint8Array, storageKeyPublic: Uint8Array): ImportBlob {
  if (privateScalar.length !== 32) throw new EvccError('KEYS_BLOB_MALFORMED', 'P-256 private scalar must be 32 bytes');
  parseEccPublic(tpm2bPublic);
  const parent = parseEccPublic(storageKeyPublic);
  if (parent.curve !== TPM_ECC_NIST_P256 || parent.nameAlg !== TPM_ALG_SHA256) {
    throw new EvccError('KEYS_BLOB_MALFORMED', 'storage key is not an ECC P-256/SHA-256 key');
  }
  if (!(parent.attributes & TPMA.restricted) || !(parent.attributes & TPMA.decrypt) || parent.symmetric.alg !== TPM_ALG_AES
    || parent.symmetric.keyBits !== 128 || parent.symmetric.mode !== TPM_ALG_CFB) {
    throw new EvccError('KEYS_BLOB_MALFORMED', 'storage key is not a restricted decryption key with AES-128-CFB');
  }
  const publicArea = new Reader(tpm2bPublic, 'TPM2B_PUBLIC').tpm2b(1024);
  const name = concat(u16(TPM_ALG_SHA256), sha256(publicArea));
  // Seed by one-pass ECDH with an ephemeral key against the storage key ("DUPLICATE" label, Part 1 §C.6.4).
  const ephemeral = createECDH('prime256v1');
  ephemeral.generateKeys();
  const parentPoint = concat(Uint8Array.of(4), parent.x, parent.y);
  const z = new Uint8Array(ephemeral.computeSecret(Buffer.from(parentPoint)));
  const ephPoint = new Uint8Array(ephemeral.getPublicKey());
  const ephX = ephPoint.subarray(1, 33);
  const seed = kdfe(z, 'DUPLICATE', ephX, parent.x);
  z.fill(0);
  // TPMT_SENSITIVE: type, authValue (empty), seedValue (empty), sensitive = private scalar.
  const sensitive = concat(u16(TPM_ALG_ECC), u16(0), u16(0), tpm2b(privateScalar));
  const plain = tpm2b(sensitive);
  sensitive.fill(0);
  const symKey = kdfa(seed, 'STORAGE', name, new Uint8Array(0), 128);
  const cipher = createCipheriv('aes-128-cfb', symKey, Buffer.alloc(16));
  const encSensitive = new Uint8Array(Buffer.concat([cipher.update(plain), cipher.final()]));
  plain.fill(0);
  symKey.fill(0);
  const hmacKey = kdfa(seed, 'INTEGRITY', new Uint8Array(0), new Uint8Array(0), 256);
  const outerHmac = new Uint8Array(createHmac('sha256', hmacKey).update(encSensitive).update(name).digest());
  hmacKey.fill(0);
  seed.fill(0);
  return {
    public: tpm2b(publicArea),
    duplicate: tpm2b(concat(tpm2b(outerHmac), encSensitive)),
    encryptedSeed: tpm2b(concat(tpm2b(ephX), tpm2b(ephPoint.subarray(33, 65)))),
  };
}

/** The 32-byte private scalar of a PEM private key (PKCS#8 or SEC1), for the compatibility path. */
export function privateScalarOf(pem: string | Uint8Array): Uint8Array {
  try {
    const jwk = createPrivateKey(typeof pem === 'string' ? pem : Buffer.from(pem)).export({ format: 'jwk' }) as { crv?: string; d?: string };
    if (jwk.crv !== 'P-256' || !jwk.d) throw new Error(`curve ${jwk.crv}`);
    return new Uint8Array(Buffer.from(jwk.d, 'base64url'));
  } catch (err) {
    throw new EvccError('KEYS_BLOB_MALFORMED', 'not an ECC P-256 private key', {}, { cause: err });
  }
}

/** Serialised direct-import blob (what `evcc mo wrap-contract-key` writes): JSON, all fields base64. */
export interface ImportBlobFile {
  format: 'evcc-tpm-import/1';
  /** Name of the storage key this blob is bound to (hex), so a wrong vehicle is refused with a clear error. */
  storageKeyName: string;
  public: string;
  duplicate: string;
  encryptedSeed: string;
}

export function encodeImportBlob(blob: ImportBlob, storageKeyName: Uint8Array): ImportBlobFile {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  return { format: 'evcc-tpm-import/1', storageKeyName: Buffer.from(storageKeyName).toString('hex'), public: b64(blob.public), duplicate: b64(blob.duplicate), encryptedSeed: b64(blob.encryptedSeed) };
}

export function decodeImportBlob(raw: unknown): { blob: ImportBlob; storageKeyName: Uint8Array } {
  const o = raw as Partial<ImportBlobFile> | null;
  if (!o || o.format !== 'evcc-tpm-import/1' || typeof o.public !== 'string' || typeof o.duplicate !== 'string'
    || typeof o.encryptedSeed !== 'string' || typeof o.storageKeyName !== 'string' || !/^[0-9a-f]{68}$/.test(o.storageKeyName)) {
    throw new EvccError('KEYS_BLOB_MALFORMED', 'not an evcc-tpm-import/1 blob');
  }
  const d = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
  const blob = { public: d(o.public), duplicate: d(o.duplicate), encryptedSeed: d(o.encryptedSeed) };
  parseEccPublic(blob.public);
  return { blob, storageKeyName: new Uint8Array(Buffer.from(o.storageKeyName, 'hex')) };
}

// ---- direct import inside CertificateInstallationRes / CertificateUpdateRes ---------------------------------------

/**
 * How a direct-import blob travels in an ISO 15118-2 CertificateInstallationRes / CertificateUpdateRes (our
 * deviation, documented in firmware/keys/README.md "Direct import over ISO 15118-2"):
 * - `DHpublickey` (65 bytes, as the schema says) carries the ephemeral point of the seed's one-pass ECDH against the
 *   vehicle's storage key, uncompressed 04‖x‖y: the TPM2B_ENCRYPTED_SECRET of TPM2_Import, re-framed;
 * - `ContractSignatureEncryptedPrivateKey` carries the duplicate (TPM2B_PRIVATE: outer HMAC + AES-128-CFB of the
 *   sensitive area), 78 bytes for a P-256 key: longer than the schema's 48-byte maxLength, so the sender encodes it
 *   with the EXI encoder's `ignoreLengthFacets` (a facet, not the EXI representation: our decoder and any decoder
 *   that does not enforce facets read it);
 * - the TPM2B_PUBLIC is not sent at all: the vehicle rebuilds it from the contract certificate (contractKeyPublic).
 * An ISO-encrypted key is exactly 48 bytes (16-byte IV + 32-byte AES-128-CBC ciphertext), so the length tells the two
 * transports apart.
 */
export interface DirectTransport {
  /** TPM2B_PRIVATE (the duplicate). */
  encryptedPrivateKey: Uint8Array;
  /** Uncompressed P-256 point 04‖x‖y (65 bytes). */
  dhPublicKey: Uint8Array;
}

export const ISO_ENCRYPTED_KEY_BYTES = 48;

export function toDirectTransport(blob: ImportBlob): DirectTransport {
  const seed = new Reader(blob.encryptedSeed, 'TPM2B_ENCRYPTED_SECRET');
  const point = new Reader(seed.tpm2b(256), 'TPMS_ECC_POINT');
  const x = point.tpm2b(66);
  const y = point.tpm2b(66);
  if (x.length !== 32 || y.length !== 32 || !point.done || !seed.done) throw new EvccError('KEYS_BLOB_MALFORMED', 'encrypted seed is not a P-256 point');
  return { encryptedPrivateKey: Uint8Array.from(blob.duplicate), dhPublicKey: concat(Uint8Array.of(4), x, y) };
}

/** The TPM2_Import inputs from the transport and the public area the vehicle rebuilt from the certificate. */
export function fromDirectTransport(t: DirectTransport, tpm2bPublic: Uint8Array): ImportBlob {
  if (t.dhPublicKey.length !== 65 || t.dhPublicKey[0] !== 4) throw new EvccError('KEYS_BLOB_MALFORMED', 'DH public key is not an uncompressed P-256 point');
  const dup = new Reader(t.encryptedPrivateKey, 'TPM2B_PRIVATE');
  const inner = new Reader(dup.tpm2b(1024), 'duplicate');
  inner.tpm2b(64); // outer HMAC
  if (!dup.done || t.encryptedPrivateKey.length <= ISO_ENCRYPTED_KEY_BYTES) throw new EvccError('KEYS_BLOB_MALFORMED', 'not a TPM2B_PRIVATE duplicate');
  const x = t.dhPublicKey.subarray(1, 33);
  const y = t.dhPublicKey.subarray(33, 65);
  return { public: Uint8Array.from(tpm2bPublic), duplicate: Uint8Array.from(t.encryptedPrivateKey), encryptedSeed: tpm2b(concat(tpm2b(x), tpm2b(y))) };
}

// ---- the storage-key extension of the OEM provisioning certificate -------------------------------------------------

/**
 * Content of the provisioning certificate's storage-key extension (OID_STORAGE_KEY_EXTENSION, the inner OCTET
 * STRING; TR-2019-04 §3.3.2: the OEM certifies the vehicle's storage key so a CPS/MO can wrap for it). Our layout,
 * version 1: u8 version ‖ TPM2B_PUBLIC of the storage key ‖ TPM2B_DIGEST of policy A (the contract keys' authPolicy,
 * a fleet constant the OEM publishes anyway). Everything in it is public.
 */
export interface StorageKeyExtension {
  storageKeyPublic: Uint8Array;
  keysPolicy: Uint8Array;
}

const STORAGE_KEY_EXTENSION_V1 = 1;

export function encodeStorageKeyExtension(e: StorageKeyExtension): Uint8Array {
  parseEccPublic(e.storageKeyPublic);
  if (e.keysPolicy.length !== 32) throw new EvccError('KEYS_BLOB_MALFORMED', 'policy A must be a SHA-256 digest');
  return concat(Uint8Array.of(STORAGE_KEY_EXTENSION_V1), e.storageKeyPublic, tpm2b(e.keysPolicy));
}

/** Parses the extension content; undefined when it is not our version-1 layout (e.g. another OEM's format). */
export function decodeStorageKeyExtension(content: Uint8Array): StorageKeyExtension | undefined {
  try {
    const r = new Reader(content, 'storage-key extension');
    if (r.bytes(1)[0] !== STORAGE_KEY_EXTENSION_V1) return undefined;
    const area = r.tpm2b(1024);
    const keysPolicy = r.tpm2b(64);
    if (!r.done || keysPolicy.length !== 32) return undefined;
    const storageKeyPublic = tpm2b(area);
    const parsed = parseEccPublic(storageKeyPublic);
    if (!(parsed.attributes & TPMA.restricted) || !(parsed.attributes & TPMA.decrypt)) return undefined;
    return { storageKeyPublic, keysPolicy: Uint8Array.from(keysPolicy) };
  } catch {
    return undefined;
  }
}
