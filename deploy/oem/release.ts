import { createPrivateKey, createPublicKey, sign as cryptoSign } from 'node:crypto';
import { sha256File } from '../../hal/store/hash.ts';
export { sha256File };
import { EvccError } from '../../core/errors.ts';
import { TPM_LAYOUT } from '../../firmware/keys/layout.ts';
import { externalEccName, nvCounterName, spkiFingerprint, toHex } from '../../firmware/keys/policy.ts';
import {
  approvedPolicy, DEFAULT_POLICY_REF, parseSignedPolicy, policySigningInput, SIGNED_POLICY_FORMAT, type SignedPolicy,
} from '../../firmware/keys/signed-policy.ts';
import { releaseVersion, rootfsImage, verifyBundle } from '../../hal/rauc/bundle.ts';

/**
 * OEM backend, offline (TR-2019-04 §3.3.2; TPM.md §3 "OEM release N"): for a signed RAUC bundle, predict PCR 14
 * after measured boot — the initramfs extends it once, from zero, with the digest of the root file system image the
 * slot holds, which is the digest the bundle's signed manifest names (boot/README.md) — build
 * approved_N = PolicyPCR ; PolicyNV(counter ≤ N), and sign H(approved_N || policyRef) with the OEM policy key (an
 * HSM in production; a PEM file on the bench). The NV name is a fleet-wide constant computed offline, so no vehicle
 * data is needed.
 */
export interface ReleaseOptions {
  bundlePath: string;
  /** Keyring to check the bundle's signature before the OEM vouches for it. */
  keyring: string;
  /** OEM policy-signing private key (PEM). */
  policyKeyPem: string;
  nvIndex?: number;
  policyRef?: string;
}


export async function createSignedPolicy(o: ReleaseOptions): Promise<SignedPolicy> {
  const info = await verifyBundle(o.bundlePath, o.keyring);
  const version = releaseVersion(info);
  const rootfs = rootfsImage(info, o.bundlePath);
  const digest = await sha256File(o.bundlePath);
  const nvIndex = o.nvIndex ?? TPM_LAYOUT.nvCounterIndex;
  const nvName = nvCounterName(nvIndex);
  const a = approvedPolicy({ version, rootfsSha256: new Uint8Array(Buffer.from(rootfs.sha256, 'hex')), nvIndex, nvName });
  let priv;
  try {
    priv = createPrivateKey(o.policyKeyPem);
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', 'OEM policy key is not a private key', {}, { cause: err });
  }
  const pubPem = createPublicKey(priv).export({ type: 'spki', format: 'pem' }) as string;
  const policyRef = new TextEncoder().encode(o.policyRef ?? DEFAULT_POLICY_REF);
  const unsigned = {
    format: SIGNED_POLICY_FORMAT,
    version,
    bundle: { sha256: toHex(digest), compatible: info.compatible },
    rootfs: { sha256: rootfs.sha256, size: rootfs.size },
    pcrs: { bank: 'sha256' as const, index: TPM_LAYOUT.pcr, value: toHex(a.pcrValue) },
    nv: { index: nvIndex, name: toHex(nvName), operation: 'UNSIGNED_LE' as const, operandB: toHex(a.operandB) },
    policy: toHex(a.policy),
    policyRef: toHex(policyRef),
    key: { name: toHex(externalEccName(pubPem)), fingerprint: spkiFingerprint(pubPem) },
    signature: 'AA==',
  };
  const signature = cryptoSign('sha256', policySigningInput(unsigned as SignedPolicy), priv);
  return parseSignedPolicy({ ...unsigned, signature: signature.toString('base64') });
}
