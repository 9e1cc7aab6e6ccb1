import { createHash, createPublicKey } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import { concat, toHex } from '../../core/bytes.ts';

/**
 * Offline TPM 2.0 policy arithmetic (TPM 2.0 Part 3 §23; TPM.md §4). Pure: the OEM and MO backends compute the
 * same digests the TPM computes in a policy session, without a TPM. Every function is checked against trial
 * sessions on swtpm in test/integration/tpm-policy.test.ts.
 */
export const TPM_ALG_SHA256 = 0x000b;
export const TPM_CC_PolicyPCR = 0x17f;
export const TPM_CC_PolicyNV = 0x149;
export const TPM_CC_PolicyAuthorize = 0x16a;
export const TPM_CC_PolicyAuthValue = 0x16b;
/** TPM_EO_UNSIGNED_LE: in TPM2_PolicyNV operandA is the NV content, so this asserts counter ≤ version. */
export const TPM_EO_UNSIGNED_LE = 0x0009;

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}
export function u16(v: number): Uint8Array {
  return Uint8Array.of((v >>> 8) & 0xff, v & 0xff);
}
export function u32(v: number): Uint8Array {
  return Uint8Array.of((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
}
/** Firmware versions travel as 8-byte big-endian operandB (TPM.md pitfall 10). */
export function u64be(v: bigint | number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v));
  return b;
}
export { concat, toHex };
export function fromHex(hex: string, what = 'hex value'): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new EvccError('CONFIG_INVALID', `${what} is not hex`, { what });
  return new Uint8Array(Buffer.from(hex, 'hex'));
}
export const ZERO_DIGEST = new Uint8Array(32);

/** TPML_PCR_SELECTION with one sha256 bank (pcrSelect of 3 bytes). */
export function pcrSelection(pcrs: readonly number[]): Uint8Array {
  const select = new Uint8Array(3);
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p > 23) throw new EvccError('CONFIG_INVALID', `PCR index ${p} out of range`);
    select[p >> 3]! |= 1 << (p & 7);
  }
  return concat(u32(1), u16(TPM_ALG_SHA256), Uint8Array.of(3), select);
}

/** Value of a PCR after one extend from zero: H(0^32 || digest). The measured-boot value the OEM predicts. */
export function pcrAfterExtend(digest: Uint8Array, from: Uint8Array = ZERO_DIGEST): Uint8Array {
  return sha256(from, digest);
}

/** TPM2_PolicyPCR: H(old || CC || TPML_PCR_SELECTION || H(concatenated PCR values)). */
export function policyPcr(old: Uint8Array, pcrs: readonly number[], values: readonly Uint8Array[]): Uint8Array {
  return sha256(old, u32(TPM_CC_PolicyPCR), pcrSelection(pcrs), sha256(...values));
}

/** TPM2_PolicyNV: H(old || CC || H(operandB || offset || operation) || nvIndexName). */
export function policyNv(old: Uint8Array, operandB: Uint8Array, offset: number, operation: number, nvName: Uint8Array): Uint8Array {
  return sha256(old, u32(TPM_CC_PolicyNV), sha256(operandB, u16(offset), u16(operation)), nvName);
}

/** TPM2_PolicyAuthorize: H(H(0^32 || CC || keyName) || policyRef) — replaces everything asserted before it. */
export function policyAuthorize(keyName: Uint8Array, policyRef: Uint8Array): Uint8Array {
  return sha256(sha256(ZERO_DIGEST, u32(TPM_CC_PolicyAuthorize), keyName), policyRef);
}

/** TPM2_PolicyAuthValue (same digest as TPM2_PolicyPassword): H(old || CC). */
export function policyAuthValue(old: Uint8Array): Uint8Array {
  return sha256(old, u32(TPM_CC_PolicyAuthValue));
}

/** What the OEM signs for PolicyAuthorize: aHash = H(approvedPolicy || policyRef) (TPM.md pitfall 7). */
export function authorizeSigningInput(approvedPolicy: Uint8Array, policyRef: Uint8Array): Uint8Array {
  return concat(approvedPolicy, policyRef);
}

/** Uncompressed P-256 point (x, y) of a PEM/DER public key. */
export function eccPoint(publicKeyPem: string): { x: Uint8Array; y: Uint8Array } {
  let jwk: { crv?: string; x?: string; y?: string };
  try {
    jwk = createPublicKey(publicKeyPem).export({ format: 'jwk' }) as typeof jwk;
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', 'not a public key', {}, { cause: err });
  }
  if (jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw new EvccError('CONFIG_INVALID', 'public key is not ECC P-256', { crv: jwk.crv });
  return { x: new Uint8Array(Buffer.from(jwk.x, 'base64url')), y: new Uint8Array(Buffer.from(jwk.y, 'base64url')) };
}

/** TPMA_OBJECT bits used here (TPM 2.0 Part 2 §8.3). */
export const TPMA = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

/**
 * TPM name of an external P-256 key exactly as `tpm2_loadexternal -G ecc` loads it (attributes
 * userwithauth|decrypt|sign, no policy, null schemes). The ticket depends on this name (TPM.md pitfall 8).
 */
export function externalEccName(publicKeyPem: string): Uint8Array {
  const { x, y } = eccPoint(publicKeyPem);
  const attrs = TPMA.userWithAuth | TPMA.decrypt | TPMA.sign;
  const tpmtPublic = concat(u16(0x0023), u16(TPM_ALG_SHA256), u32(attrs), u16(0), u16(0x0010), u16(0x0010), u16(0x0003), u16(0x0010),
    u16(32), x, u16(32), y);
  return concat(u16(TPM_ALG_SHA256), sha256(tpmtPublic));
}

/** TPMA_NV of the anti-rollback counter: ownerwrite|nt=counter|ownerread|authread|no_da. */
export const NV_COUNTER_ATTRIBUTES = 0x02060012;
export const TPMA_NV_WRITTEN = 0x20000000;
/** NV name after the first increment (WRITTEN set; TPM.md pitfall 10): 000B || H(index || 000B || attrs || 0000 || 0008). */
export function nvCounterName(index: number, attributes = NV_COUNTER_ATTRIBUTES | TPMA_NV_WRITTEN): Uint8Array {
  return concat(u16(TPM_ALG_SHA256), sha256(u32(index), u16(TPM_ALG_SHA256), u32(attributes >>> 0), u16(0), u16(8)));
}

/** SHA-256 over the SubjectPublicKeyInfo DER: the key fingerprint written into signed policies. */
export function spkiFingerprint(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return toHex(sha256(new Uint8Array(der)));
}
