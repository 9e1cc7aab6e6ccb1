import type { FileStore } from '../../hal/store/types.ts';
import { otaError } from './errors.ts';
import { backendTrustFromPem, type BackendTrust } from './signing.ts';

/**
 * The OEM backend's answer-verification key, installed into the vehicle's store at production (end of line). It is
 * a public key: its integrity matters (the store dir is 0700 and, on the device, inside the measured data
 * partition), not its secrecy. Without it the vehicle trusts nothing from the backend.
 */
export const BACKEND_KEY_PATH = 'ota/oem-backend-key.pem';

export async function loadBackendTrust(store: FileStore): Promise<BackendTrust | undefined> {
  const pem = await store.read(BACKEND_KEY_PATH);
  if (!pem) return undefined;
  try {
    return backendTrustFromPem(pem);
  } catch (err) {
    throw otaError('OTA_BACKEND_KEY_MISSING', `stored OEM backend key ${BACKEND_KEY_PATH} is unusable`, {}, err);
  }
}

/** Production step: installs (or replaces) the backend key; refuses anything but an EC P-256 public key. */
export async function installBackendKey(store: FileStore, pem: string): Promise<BackendTrust> {
  let trust: BackendTrust;
  try {
    trust = backendTrustFromPem(pem);
  } catch (err) {
    throw otaError('OTA_BACKEND_KEY_MISSING', 'not an EC P-256 public key', {}, err);
  }
  await store.writeAtomic(BACKEND_KEY_PATH, pem.endsWith('\n') ? pem : `${pem}\n`, { mode: 0o644 });
  return trust;
}

/**
 * Where a release ships the OEM backend key: inside the root file system of the RAUC bundle (read-only, measured
 * into PCR 14 with the bundle), next to the OEM keyring that verifies bundles. Unlike the data-dir copy above, its
 * trust does not need the TPM-derived tag, so it still verifies the V2G roots' OEM approvals when measured boot
 * failed (degraded mode, firmware/pki/README.md). The composition root reads it and hands it in as a
 * `ReleaseBackendKey`; firmware never reads files.
 */
export const RELEASE_BACKEND_KEY_FILE = '/usr/share/evcc/oem-backend-key.pem';

export interface ReleaseBackendKey {
  pem: string | Uint8Array;
  /** Where it was read (a path, or 'bench release'), for the log. */
  origin: string;
}

/** The release's backend key as a verification key; OTA_BACKEND_KEY_MISSING when it is not an EC P-256 public key. */
export function releaseBackendTrust(key: ReleaseBackendKey): BackendTrust {
  try {
    return backendTrustFromPem(key.pem);
  } catch (err) {
    throw otaError('OTA_BACKEND_KEY_MISSING', `OEM backend key of the release (${key.origin}) is not an EC P-256 public key`, { origin: key.origin }, err);
  }
}
