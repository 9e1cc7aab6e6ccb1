import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';

/**
 * TPM object layout (TPM.md §2) and where the key service keeps its files. Handle values are conventions
 * (TCG/systemd for the SRK); provisioning verifies they are free.
 */
export const TPM_LAYOUT = {
  srkHandle: 0x81000001,
  storageKeyHandle: 0x81000101,
  nvCounterIndex: 0x01800101,
  /** Version counter of the certificate store (store-counter.ts): written only through policy A. */
  storeCounterIndex: 0x01800102,
  pcr: 14,
} as const;

export const STORAGE_KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|adminwithpolicy|restricted|decrypt';
/**
 * The OEM provisioning key signs CertificateInstallationReq and is the ECDH key of the ISO 15118-2 contract-key
 * transport (TPM2_ECDH_ZGen against the CPS's DHpublickey), hence sign|decrypt; the TPM then requires the null
 * scheme (PROVISIONING_KEY_SCHEME). Every use needs policy A (README "Sign and decrypt").
 */
export const PROVISIONING_KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|sign|decrypt';
export const PROVISIONING_KEY_SCHEME = 'null';
/**
 * The security-log key (firmware/log/security-log.ts) signs log checkpoints only: sign-only, ECDSA-SHA256, policy A,
 * so a vehicle whose state the OEM did not approve cannot sign (its checkpoints say so instead).
 */
export const LOG_KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|sign';
export const LOG_KEY_SCHEME = 'ecdsa-sha256';

/** Files in the data dir (persistent). Only public data and TPM-wrapped blobs, plus the storage-key password. */
export const DATA = {
  record: 'tpm/provisioned.json',
  /** 16 random bytes, hex, mode 0600 (TPM.md §8: readable by the EVCC user only). */
  storagePassword: 'tpm/storage.pass',
  oemPolicyKey: 'tpm/oem-policy.pub.pem',
  provisioningKey: (ext: 'pub' | 'priv' | 'pub.pem') => `keys/oem-provisioning.${ext}`,
  /** The security-log checkpoint key (TPM-wrapped blob under the storage key, policy A). */
  logKey: (ext: 'pub' | 'priv' | 'pub.pem') => `keys/security-log.${ext}`,
  contractKey: (id: string, ext: 'pub' | 'priv' | 'pub.pem') => `keys/contract/${id}.${ext}`,
  /** Sealed runtime secret (keyedhash data object under the storage key, authPolicy A): TPM-wrapped only. */
  runtimeSecret: (ext: 'pub' | 'priv') => `keys/runtime-secret.${ext}`,
  /** Attestation key (restricted ECDSA signing key under the SRK, no state policy): TPM-wrapped only. */
  attestationKey: (ext: 'pub' | 'priv' | 'pub.pem') => `keys/attestation.${ext}`,
  /** OEM-link secret (sealed under the SRK, policy PolicyCommandCode(Unseal), no state): TPM-wrapped only (link-credential.ts). */
  linkSecret: (ext: 'pub' | 'priv') => `keys/link-secret.${ext}`,
  contractDir: 'keys/contract',
  activeContractKey: 'keys/contract/active',
  release: (version: number, file: 'signed-policy.json' | 'ticket.bin') => `releases/v${version}/${file}`,
  releasesDir: 'releases',
} as const;

/** Files in the run dir (tmpfs on the device: gone after every reboot, exactly like PCR 14). */
export const RUN = {
  boot: 'boot.json',
} as const;

const hex = z.string().regex(/^([0-9a-f]{2})+$/);

export const ProvisioningRecord = z.object({
  format: z.literal('evcc-tpm-provisioning/1'),
  srk: z.object({ handle: z.number().int(), name: hex }),
  storageKey: z.object({ handle: z.number().int(), name: hex, public: hex }),
  nvCounter: z.object({ index: z.number().int(), name: hex, initialValue: z.string() }),
  pcr: z.object({ bank: z.literal('sha256'), index: z.number().int() }),
  policyRef: hex,
  oemPolicyKey: z.object({ name: hex, fingerprint: hex }),
  /** A = PolicyAuthorize(OEM, ref) for contract and provisioning keys; S = A ; PolicyAuthValue for the storage key. */
  policies: z.object({ keys: hex, storage: hex }),
  oemProvisioningKey: z.object({ name: hex, publicKeyPem: z.string() }).optional(),
  /** The security-log key (created after the first good boot): its public part verifies the log's checkpoints. */
  logKey: z.object({ name: hex, publicKeyPem: z.string() }).optional(),
  /** Sealed runtime secret (firmware/keys/runtime-secret.ts): its TPM name; the data never leaves the TPM in a file. */
  runtimeSecret: z.object({ name: hex }).optional(),
  /** The certificate store's NV version counter (store-counter.ts), defined after the first good boot. */
  storeCounter: z.object({ index: z.number().int(), name: hex, initialValue: z.string() }).optional(),
  /**
   * Attestation key (attestation-key.ts): a restricted signing key under the SRK, independent of the software state,
   * so any boot can be quoted; its public part is what the OEM registers at production.
   */
  attestationKey: z.object({ name: hex, public: hex, publicKeyPem: z.string() }).optional(),
  /** OEM-link secret (link-credential.ts): sealed under the SRK, unsealable in any software state. */
  linkSecret: z.object({ name: hex }).optional(),
  provisionedAt: z.string(),
});
export type ProvisioningRecord = z.infer<typeof ProvisioningRecord>;

/**
 * What `evcc boot` leaves in the run dir for the key service: the release whose root file system the initramfs
 * measured into PCR 14 this boot, as the check found it. A claim for the runtime's bookkeeping, never a
 * credential: the TPM decides from PCR 14 itself, so a copied record unlocks nothing (boot/README.md).
 */
export const BootState = z.object({
  format: z.literal('evcc-boot-state/1'),
  version: z.number().int().positive(),
  bundleSha256: hex,
  rootfsSha256: hex,
  pcrValue: hex,
  bootedAt: z.string(),
});
export type BootState = z.infer<typeof BootState>;

export function parseJson<S extends z.ZodType>(schema: S, bytes: Uint8Array | undefined, what: string, missingCode: string): z.infer<S> {
  if (!bytes) throw new EvccError(missingCode, `${what} missing`, { what });
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new EvccError('STORE_CORRUPT', `${what} is not JSON`, { what }, { cause: err });
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new EvccError('STORE_CORRUPT', `${what} is malformed`, { what, issues: r.error.issues.map((i) => i.message) });
  return r.data;
}

export const jsonBytes = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;
