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
