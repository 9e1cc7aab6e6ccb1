import { createHmac, timingSafeEqual } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { BACKEND_KEY_PATH, installBackendKey } from '../ota/backend-key.ts';
import { backendTrustFromPem, type BackendTrust } from '../ota/signing.ts';
import { CertificateStore, type CertificateStoreOptions } from '../pki/store.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { KeyService } from './key-service.ts';
import { RuntimeSecret, unsealRuntimeSecret, type TpmSealedIntegrity } from './runtime-secret.ts';

/**
 * The vehicle's trust, composed once at runtime start (`evcc charge` / `evcc run` on real hardware, and the bench
 * `evcc pki roots …` commands): unseal the TPM runtime secret through the OEM-signed state policy, open the
 * certificate store under the derived integrity key, check the OEM backend key's tag, derive the link-key
 * passphrase. The secret itself is destroyed before this returns; only the derived keys live on.
 *
 * Any failure is one typed error, KEYS_TRUST_UNAVAILABLE, with `details.reason` = the underlying stable code
 * (TPM_POLICY_NOT_APPROVED, TPM_POLICY_ROLLBACK, KEYS_NOT_BOOTED, KEYS_RUNTIME_SECRET_MISSING, PKI_STORE_TAMPERED,
 * PKI_STORE_CORRUPT, …) and `details.rc` for TPM refusals. The runtime then refuses PnC (no verified V2G roots, no
 * contract-key use in that state anyway) and may charge with EIM only; it never falls back to an unverified store.
 */
export type VehicleTrustErrorCode = 'KEYS_TRUST_UNAVAILABLE';

export interface VehicleTrustDeps {
  /** The runtime's key service (KeyService.open({ tpm, data, run, log }, { reclaim: true })). */
  keys: KeyService;
  /** Persistent data dir (the same FileStore the key service reads): `pki/store.json`, `ota/oem-backend-key.pem`. */
  data: FileStore;
  log: Logger;
}

export type VehicleTrustOptions = Omit<CertificateStoreOptions, 'integrity' | 'log'>;

export interface VehicleTrust {
  /** V2G roots, OEM and contract chains, verified with the TPM-derived integrity key; writes are tagged with it. */
  store: CertificateStore;
  /** Guard the store uses (for tools that open a second store file, e.g. a staging copy). */
  integrity: TpmSealedIntegrity;
  /** Passphrase of the encrypted PKCS#8 OEM-backend link key (MqttTlsIdentity.passphrase). Memory only. */
  linkKeyPassphrase: string;
  /**
   * The OEM backend's answer-verification key, only when its tag verifies with the TPM-derived key (installed by
   * `evcc pki backend-key install`); undefined when none is installed, or when it is untagged or tampered (logged:
   * Solution C then stays off, nothing from the backend is trusted).
   */
  backendTrust: BackendTrust | undefined;
  /** Tags and installs a new OEM backend key (production / bench; keeps `ota/oem-backend-key.pem` for the ota tools). */
  installBackendKey(pem: string): Promise<BackendTrust>;
}

/** Tag file of the OEM backend key: HMAC-SHA256(HKDF(secret, 'evcc ota backend-key integrity v1'), pem bytes), hex. */
export const BACKEND_KEY_TAG_PATH = `${BACKEND_KEY_PATH}.tag`;

export async function openVehicleTrust(deps: VehicleTrustDeps, options: VehicleTrustOptions = {}): Promise<VehicleTrust> {
  const { keys, data, log } = deps;
  let secret: RuntimeSecret;
  try {
    secret = await unsealRuntimeSecret({ keys, data, log });
  } catch (err) {
    throw unavailable(err, 'the TPM runtime secret could not be unsealed');
  }
  try {
    const integrity = secret.storeIntegrity();
    let store: CertificateStore;
    try {
      // Store events (root installed/removed, tampering) are PKI lines in the bench log, whoever opened the store.
      store = await CertificateStore.open(data, { ...options, integrity, log: log.child({ sub: 'PKI' }) });
    } catch (err) {
      throw unavailable(err, 'the certificate store did not verify');
    }
    const backendKeyMac = secret.derive('otaBackendKeyIntegrity');
    const backendTrust = await loadTaggedBackendKey(data, backendKeyMac, log);
    const linkKeyPassphrase = secret.linkKeyPassphrase();
    log.info({ roots: store.rootCount, backendKey: backendTrust ? backendTrust.keyId : 'none' }, 'vehicle trust opened: store verified with the TPM-derived key');
    return {
      store, integrity, linkKeyPassphrase, backendTrust,
      async installBackendKey(pem: string): Promise<BackendTrust> {
        const trust = await installBackendKey(data, pem);
        const stored = await data.read(BACKEND_KEY_PATH);
        await data.writeAtomic(BACKEND_KEY_TAG_PATH, `${mac(backendKeyMac, stored!).toString('hex')}\n`, { mode: 0o644 });
        log.info({ keyId: trust.keyId }, 'OEM backend key installed and tagged with the TPM-derived key');
        return trust;
      },
    };
  } finally {
    secret.destroy();
  }
}

function unavailable(err: unknown, why: string): EvccError<VehicleTrustErrorCode> {
  const e = err as EvccError;
  const reason = typeof e?.code === 'string' ? e.code : 'UNKNOWN';
  return new EvccError('KEYS_TRUST_UNAVAILABLE', `vehicle trust unavailable (${reason}): ${why}; PnC refused, EIM only`,
    { reason, ...(e?.details?.rc ? { rc: e.details.rc } : {}) }, { cause: err });
}

function mac(key: Uint8Array, data: Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

async function loadTaggedBackendKey(data: FileStore, key: Uint8Array, log: Logger): Promise<BackendTrust | undefined> {
  const pem = await data.read(BACKEND_KEY_PATH);
  if (!pem) return undefined;
  const tagText = await data.read(BACKEND_KEY_TAG_PATH);
  const tag = tagText ? Buffer.from(Buffer.from(tagText).toString('utf8').trim(), 'hex') : Buffer.alloc(0);
  const expect = mac(key, pem);
  if (tag.length !== expect.length || !timingSafeEqual(tag, expect)) {
    log.error({ path: BACKEND_KEY_PATH, tagged: tagText !== undefined, cp: 'OTA-BACKEND-KEY-TAMPERED' },
      'OEM backend key is untagged or does not match its TPM-derived tag: not trusted (reinstall with evcc pki backend-key install)');
    return undefined;
  }
  try {
    return backendTrustFromPem(pem);
  } catch (err) {
    log.error({ path: BACKEND_KEY_PATH, cp: 'OTA-BACKEND-KEY-TAMPERED' }, 'tagged OEM backend key is unusable');
    void err;
    return undefined;
  }
}
