import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';
import {
  authorizeSigningInput, externalEccName, fromHex, nvCounterName, pcrAfterExtend, policyNv, policyPcr, spkiFingerprint, toHex,
  TPM_EO_UNSIGNED_LE, u64be, ZERO_DIGEST,
} from './policy.ts';

/**
 * The OEM-signed state policy of one release (TR-2019-04 §3.3, TPM.md §1):
 *   approved_N = PolicyPCR(sha256:14 = H(0^32 || H(rootfs_N))) ; PolicyNV(counter ≤ N)
 *   signature  = ECDSA-P256-SHA256(approved_N || policyRef) by the OEM policy key.
 * rootfs_N is the release's root file system image (the digest its signed RAUC manifest names): the initramfs
 * measures the installed slot into PCR 14 before switch_root, once, from zero (boot/README.md). PCR 14 is the only
 * PCR named: on the Raspberry Pi no firmware measures anything into the TPM HAT, so PCRs 0–7 carry nothing a policy
 * could rely on (the boot image is vouched for by Pi secure boot instead).
 * PolicyNV sits inside the signed part, so each release carries its own version and the counter makes every
 * older release's policy fail in TPM2_PolicyNV once raised (anti-rollback by the TPM itself).
 */
export const SIGNED_POLICY_FORMAT = 'evcc-signed-state-policy/2';
export const MEASUREMENT_PCR = 14;
export const DEFAULT_POLICY_REF = 'EVCC-ISO15118-STATE-V1';

const hexString = (bytes?: number) => z.string().regex(bytes ? new RegExp(`^[0-9a-f]{${bytes * 2}}$`) : /^([0-9a-f]{2})+$/);

export const SignedPolicy = z.object({
  format: z.literal(SIGNED_POLICY_FORMAT),
  /** Release (firmware security) version N: a positive integer, the bundle manifest's version. */
  version: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  /** The OEM-signed RAUC bundle the release ships in (SHA-256 of the file). */
  bundle: z.object({ sha256: hexString(32), compatible: z.string().optional() }),
  /** The measured root file system image: SHA-256 and size from the bundle's signed manifest. */
  rootfs: z.object({ sha256: hexString(32), size: z.number().int().positive().max(Number.MAX_SAFE_INTEGER) }),
  pcrs: z.object({ bank: z.literal('sha256'), index: z.number().int().min(0).max(23), value: hexString(32) }),
  nv: z.object({ index: z.number().int(), name: hexString(34), operation: z.literal('UNSIGNED_LE'), operandB: hexString(8) }),
  /** approved_N (hex). */
  policy: hexString(32),
  policyRef: hexString(),
  /** OEM policy key: TPM name as tpm2_loadexternal loads it, and SHA-256 of its SubjectPublicKeyInfo. */
  key: z.object({ name: hexString(34), fingerprint: hexString(32) }),
  /** DER ECDSA signature, base64. */
  signature: z.string().regex(/^[A-Za-z0-9+/]+=*$/).max(200),
}).strict();
export type SignedPolicy = z.infer<typeof SignedPolicy>;

export interface ApprovedPolicyInput {
  version: number;
  /** SHA-256 of the release's root file system image: the one measurement PCR 14 holds in an approved boot. */
  rootfsSha256: Uint8Array;
  nvIndex: number;
  nvName?: Uint8Array;
  pcr?: number;
}

/** Computes PCR value and approved policy digest for a release, offline (OEM side, and re-checked on the EVCC). */
export function approvedPolicy(input: ApprovedPolicyInput): { pcrValue: Uint8Array; policy: Uint8Array; operandB: Uint8Array; nvName: Uint8Array } {
  const pcr = input.pcr ?? MEASUREMENT_PCR;
  const nvName = input.nvName ?? nvCounterName(input.nvIndex);
  const pcrValue = pcrAfterExtend(input.rootfsSha256);
  const operandB = u64be(input.version);
  const policy = policyNv(policyPcr(ZERO_DIGEST, [pcr], [pcrValue]), operandB, 0, TPM_EO_UNSIGNED_LE, nvName);
  return { pcrValue, policy, operandB, nvName };
}

export function parseSignedPolicy(raw: unknown): SignedPolicy {
  const r = SignedPolicy.safeParse(raw);
  if (!r.success) {
    throw new EvccError('POLICY_MALFORMED', `signed policy malformed: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return r.data;
}

export function policySigningInput(p: SignedPolicy): Uint8Array {
  return authorizeSigningInput(fromHex(p.policy), fromHex(p.policyRef));
}

/**
 * Software checks before the TPM sees a policy (defence in depth and clear errors; the TPM re-checks everything):
 * internal consistency (policy digest recomputed from pcrs/nv/version), the expected OEM key and NV index, and
 * the signature. Returns the DER signature for TPM2_VerifySignature.
 */
export function checkSignedPolicy(p: SignedPolicy, expected: { oemPolicyKeyPem: string; nvIndex: number; nvName: Uint8Array; policyRef: Uint8Array; pcr?: number }): Uint8Array {
  const fail = (code: string, msg: string, details: Record<string, unknown> = {}) => new EvccError(code, msg, { version: p.version, ...details });
  if (p.key.fingerprint !== spkiFingerprint(expected.oemPolicyKeyPem) || p.key.name !== toHex(externalEccName(expected.oemPolicyKeyPem))) {
    throw fail('POLICY_FOREIGN_KEY', 'signed policy names a key that is not the provisioned OEM policy key', { fingerprint: p.key.fingerprint });
  }
  if (p.nv.index !== expected.nvIndex || p.nv.name !== toHex(expected.nvName)) throw fail('POLICY_MALFORMED', 'signed policy names another NV counter');
  if (p.policyRef !== toHex(expected.policyRef)) throw fail('POLICY_MALFORMED', 'signed policy has another policyRef');
  if (p.pcrs.index !== (expected.pcr ?? MEASUREMENT_PCR)) throw fail('POLICY_MALFORMED', 'signed policy uses another PCR');
  const a = approvedPolicy({ version: p.version, rootfsSha256: fromHex(p.rootfs.sha256), nvIndex: p.nv.index, nvName: expected.nvName, pcr: p.pcrs.index });
  if (toHex(a.pcrValue) !== p.pcrs.value || toHex(a.operandB) !== p.nv.operandB || toHex(a.policy) !== p.policy) {
    throw fail('POLICY_MALFORMED', 'signed policy digest does not match its version, root file system digest and PCR');
  }
  const sig = new Uint8Array(Buffer.from(p.signature, 'base64'));
  let ok = false;
  try {
    ok = cryptoVerify('sha256', policySigningInput(p), createPublicKey(expected.oemPolicyKeyPem), sig);
  } catch {
    ok = false;
  }
  if (!ok) throw fail('POLICY_SIGNATURE_INVALID', 'signed policy signature does not verify with the OEM policy key');
  return sig;
}
