import { createCipheriv, createDecipheriv, createECDH, createPublicKey, type KeyObject } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import { sha256, u32 } from './policy.ts';

/**
 * The ISO 15118-2 contract-key transport of CertificateInstallationRes / CertificateUpdateRes (the "compatible"
 * path; the direct TPM import is in duplicate.ts):
 * - the CPS/MO makes an ephemeral P-256 key, does ECDH with the public key the request was signed with (the OEM
 *   provisioning certificate's for an installation, the current contract certificate's for an update) and sends
 *   the ephemeral public key as `DHpublickey` (04‖x‖y, 65 bytes);
 * - both sides derive a 128-bit AES key from the shared secret Z (its x-coordinate, 32 bytes) with the NIST SP
 *   800-56A concatenation KDF over SHA-256: K = SHA-256(counter 00000001 ‖ Z ‖ OtherInfo)[0..16), OtherInfo =
 *   AlgorithmID 0x01 ‖ PartyUInfo 0x55 ‖ PartyVInfo 0x56 ([V2G2-818]). Layout as read in EcoG-io/iso15118
 *   (iso15118/shared/security.py, encrypt_priv_key / decrypt_priv_key);
 * - `ContractSignatureEncryptedPrivateKey` = IV (16 bytes) ‖ AES-128-CBC(K, IV, private scalar, 32 bytes, no
 *   padding): 48 bytes.
 * On the vehicle the ECDH runs inside the TPM (TPM2_ECDH_ZGen, KeyService); only this module's pure steps run here,
 * in memory, and every intermediate is wiped. CBC carries no integrity tag: a wrong key decrypts to random bytes,
 * which the caller catches by comparing the derived public key with the certificate.
 */

export const ISO_KDF_OTHER_INFO = Uint8Array.of(0x01, 0x55, 0x56);
const IV_BYTES = 16;
const SCALAR_BYTES = 32;
export const ISO_ENCRYPTED_PRIVATE_KEY_BYTES = IV_BYTES + SCALAR_BYTES;

/** The AES-128 key from the x-coordinate of the ECDH shared point. The caller wipes both. */
export function isoKdf(zx: Uint8Array): Uint8Array {
  if (zx.length !== 32) throw new EvccError('KEYS_BLOB_MALFORMED', 'ECDH shared secret must be the 32-byte x-coordinate');
  const block = sha256(u32(1), zx, ISO_KDF_OTHER_INFO);
  const key = Uint8Array.from(block.subarray(0, 16));
  block.fill(0);
  return key;
}

/** x-coordinate of a TPM2B_ECC_POINT as TPM2_ECDH_ZGen returns it (u16 size ‖ TPM2B x ‖ TPM2B y). */
export function zxOfEccPoint(tpm2bPoint: Uint8Array): Uint8Array {
  const v = new DataView(tpm2bPoint.buffer, tpm2bPoint.byteOffset, tpm2bPoint.byteLength);
  if (tpm2bPoint.length < 6 || v.getUint16(0) !== tpm2bPoint.length - 2) throw new EvccError('KEYS_BLOB_MALFORMED', 'ECDH result is not a TPM2B_ECC_POINT');
  const xLen = v.getUint16(2);
  if (xLen > 32 || 4 + xLen > tpm2bPoint.length) throw new EvccError('KEYS_BLOB_MALFORMED', 'ECDH result x-coordinate malformed');
  const out = new Uint8Array(32); // left-pad: the TPM may strip leading zero bytes
  out.set(tpm2bPoint.subarray(4, 4 + xLen), 32 - xLen);
  return out;
}

/** TPM2B_ECC_POINT of an uncompressed P-256 point (the input TPM2_ECDH_ZGen takes). */
export function eccPointOfUncompressed(point65: Uint8Array): Uint8Array {
  checkUncompressedPoint(point65);
  const out = new Uint8Array(2 + 2 + 32 + 2 + 32);
  const v = new DataView(out.buffer);
  v.setUint16(0, 68);
  v.setUint16(2, 32);
  out.set(point65.subarray(1, 33), 4);
  v.setUint16(36, 32);
  out.set(point65.subarray(33, 65), 38);
  return out;
}

/** Refuses anything but an uncompressed point on P-256 (an off-curve point must never reach the TPM or OpenSSL). */
export function checkUncompressedPoint(point65: Uint8Array): void {
  if (point65.length !== 65 || point65[0] !== 4) throw new EvccError('KEYS_BLOB_MALFORMED', 'DH public key is not an uncompressed P-256 point', { length: point65.length });
  try {
    createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: Buffer.from(point65.subarray(1, 33)).toString('base64url'), y: Buffer.from(point65.subarray(33, 65)).toString('base64url') }, format: 'jwk' });
  } catch (err) {
    throw new EvccError('KEYS_BLOB_MALFORMED', 'DH public key is not a point on P-256', {}, { cause: err });
  }
}

/**
 * Decrypts the 48-byte ContractSignatureEncryptedPrivateKey with the AES key from isoKdf. Returns the 32-byte private
 * scalar; the caller wipes it (and the AES key).
 */
export function isoDecryptPrivateKey(aesKey: Uint8Array, encrypted: Uint8Array): Uint8Array {
  if (encrypted.length !== ISO_ENCRYPTED_PRIVATE_KEY_BYTES) {
    throw new EvccError('KEYS_BLOB_MALFORMED', `ISO 15118-2 encrypted private key must be ${ISO_ENCRYPTED_PRIVATE_KEY_BYTES} bytes`, { length: encrypted.length });
  }
  const decipher = createDecipheriv('aes-128-cbc', aesKey, encrypted.subarray(0, IV_BYTES)).setAutoPadding(false);
  const a = decipher.update(encrypted.subarray(IV_BYTES));
  const b = decipher.final();
  const scalar = new Uint8Array(SCALAR_BYTES);
  scalar.set(a, 0);
  scalar.set(b, a.length);
  a.fill(0);
  b.fill(0);
  return scalar;
}

/**
 * The sender's side (CPS/MO simulator, tests): encrypts `privateScalar` for the holder of `recipient` (a P-256 public
 * key) with a fresh ephemeral key (or `ephemeralScalar`, for tests that must know Z). `iv` is the CBC IV (16 random
 * bytes from the caller's randomness).
 */
export function isoEncryptPrivateKey(privateScalar: Uint8Array, recipient: KeyObject | string, iv: Uint8Array, ephemeralScalar?: Uint8Array): { dhPublicKey: Uint8Array; encryptedPrivateKey: Uint8Array } {
  if (privateScalar.length !== SCALAR_BYTES || iv.length !== IV_BYTES) throw new EvccError('KEYS_BLOB_MALFORMED', 'scalar must be 32 bytes and IV 16 bytes');
  const jwk = (typeof recipient === 'string' ? createPublicKey(recipient) : recipient).export({ format: 'jwk' }) as { crv?: string; x?: string; y?: string };
  if (jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw new EvccError('KEYS_BLOB_MALFORMED', 'recipient is not a P-256 public key');
  const peer = Buffer.concat([Buffer.of(4), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
  const ephemeral = createECDH('prime256v1');
  if (ephemeralScalar) ephemeral.setPrivateKey(Buffer.from(ephemeralScalar)); // known-answer tests only
  else ephemeral.generateKeys();
  const zx = new Uint8Array(ephemeral.computeSecret(peer));
  const key = isoKdf(zx);
  zx.fill(0);
  const cipher = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
  const ct = Buffer.concat([cipher.update(privateScalar), cipher.final()]);
  key.fill(0);
  const encryptedPrivateKey = new Uint8Array(ISO_ENCRYPTED_PRIVATE_KEY_BYTES);
  encryptedPrivateKey.set(iv, 0);
  encryptedPrivateKey.set(ct, IV_BYTES);
  return { dhPublicKey: new Uint8Array(ephemeral.getPublicKey()), encryptedPrivateKey };
}
