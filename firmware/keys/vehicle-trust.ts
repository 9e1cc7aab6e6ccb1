import { stateIndependentLinkPassphrase } from './link-credential.ts';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { BACKEND_KEY_PATH, installBackendKey, loadBackendTrust, releaseBackendTrust, type ReleaseBackendKey } from '../ota/backend-key.ts';
import { backendTrustFromPem, type BackendTrust } from '../ota/signing.ts';
import { RootApprovalVerifier, type ApprovalKey } from '../pki/root-approval.ts';
import { CertificateStore, HmacIntegrity, type CertificateStoreOptions } from '../pki/store.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { KeyService } from './key-service.ts';
import { RuntimeSecret, unsealRuntimeSecret, type TpmSealedIntegrity } from './runtime-secret.ts';
import { TpmStoreCounter } from './store-counter.ts';

/**
 * The vehicle's trust, composed once at runtime start (`evcc charge` / `evcc run` on real hardware, and the bench
 * `evcc pki roots …` commands). Two modes (firmware/pki/README.md):
 *
 *  - full (`openVehicleTrust`): unseal the TPM runtime secret through the OEM-signed state policy, open the
 *    certificate store under the derived integrity key (and check every root's OEM approval), check the OEM
 *    backend key's tag, derive the link-key passphrase. The secret is destroyed before this returns.
 *  - degraded (`openDegradedTrust`): the TPM refused the state (measured boot failed, rollback, …), so no
 *    state-bound key exists. The store is opened read-only and each V2G root is trusted only if its OEM approval
 *    verifies with the OEM backend key shipped in the release (`ReleaseBackendKey`). The vehicle can still
 *    authenticate chargers over TLS and charge with EIM; the contract and provisioning keys stay locked in the TPM,
 *    and nothing else of the store (contract chains) is trusted.
 *
 * `openVehicleTrustOrDegraded` tries the first and falls back to the second, with the reason. No function here
 * ever returns an unverified store: when neither mode can verify anything, the answer is KEYS_TRUST_UNAVAILABLE
 * with `details.reason` = the underlying stable code (TPM_POLICY_NOT_APPROVED, TPM_POLICY_ROLLBACK,
 * KEYS_NOT_BOOTED, KEYS_RUNTIME_SECRET_MISSING, PKI_STORE_TAMPERED, PKI_STORE_MISSING, …), `details.rc` for TPM
 * refusals and, when the degraded attempt failed too, `details.degraded` = its code.
 */
export type VehicleTrustErrorCode = 'KEYS_TRUST_UNAVAILABLE';

export interface VehicleTrustDeps {
  /** The runtime's key service (KeyService.open({ tpm, data, run, log }, { reclaim: true })). */
  keys: KeyService;
  /** Persistent data dir (the same FileStore the key service reads): `pki/store.json`, `ota/oem-backend-key.pem`. */
  data: FileStore;
  log: Logger;
}

export type VehicleTrustOptions = Omit<CertificateStoreOptions, 'integrity' | 'log' | 'approvals'> & {
  /**
   * The OEM backend key shipped in the release (firmware/ota/backend-key.ts RELEASE_BACKEND_KEY_FILE, read by the
   * composition root). Verifies the roots' OEM approvals in both modes; the only key the degraded mode has.
   */
  releaseBackendKey?: ReleaseBackendKey;
};

/** Why the full trust is unavailable: a stable code, the message, and the TPM response code when the TPM refused. */
export interface TrustRefusal {
  code: string;
  message: string;
  rc?: string;
}

export interface VehicleTrust {
  mode: 'full';
  /** V2G roots, OEM and contract chains, verified with the TPM-derived integrity key; writes are tagged with it. */
  store: CertificateStore;
  /** Guard the store uses (for tools that open a second store file, e.g. a staging copy). */
  integrity: TpmSealedIntegrity;
  /** Passphrase of the encrypted PKCS#8 OEM-backend link key (MqttTlsIdentity.passphrase). Memory only. */
  linkKeyPassphrase: string;
  /** The state-bound passphrase link keys were encrypted under before the link secret existed (`evcc pki link-key rewrap`). */
  stateBoundLinkKeyPassphrase: string;
  /** AES-256-GCM key of the encrypted session history (firmware/log/session-history.ts). Memory only. */
  historyKey: Uint8Array;
  /**
   * The OEM backend's answer-verification key: the data-dir key when its tag verifies with the TPM-derived key
   * (installed by `evcc pki backend-key install`), else the release's key; undefined when there is neither (an
   * untagged or tampered data-dir key is logged and not trusted: Solution C then stays off).
   */
  backendTrust: BackendTrust | undefined;
  /** Tags and installs a new OEM backend key (production / bench; keeps `ota/oem-backend-key.pem` for the ota tools). */
  installBackendKey(pem: string): Promise<BackendTrust>;
}

export interface DegradedVehicleTrust {
  mode: 'degraded';
  /** Why the full trust is unavailable (logged; for the session report and the OEM backend's retained state). */
  reason: TrustRefusal;
  /** Read-only view (store.mode 'degraded'): the V2G roots whose OEM approval verifies; no OEM or contract chains. */
  store: CertificateStore;
  /** The release's OEM backend key (also verifies Solution C answers and the approvals they bring). */
  backendTrust: BackendTrust;
}

export type OpenedVehicleTrust = VehicleTrust | DegradedVehicleTrust;

/** Tag file of the OEM backend key: HMAC-SHA256(HKDF(secret, 'evcc ota backend-key integrity v1'), pem bytes), hex. */
export const BACKEND_KEY_TAG_PATH = `${BACKEND_KEY_PATH}.tag`;

/** Full mode; throws KEYS_TRUST_UNAVAILABLE (see above) when the TPM refuses or the store does not verify. */
export async function openVehicleTrust(deps: VehicleTrustDeps, options: VehicleTrustOptions = {}): Promise<VehicleTrust> {
  const { keys, data, log } = deps;
  const { releaseBackendKey, ...storeOptions } = options;
  const release = releaseKey(releaseBackendKey, log);
  let secret: RuntimeSecret;
  try {
    secret = await unsealRuntimeSecret({ keys, data, log });
  } catch (err) {
    throw unavailable(err, 'the TPM runtime secret could not be unsealed');
  }
  try {
    const backendKeyMac = secret.derive('otaBackendKeyIntegrity');
    const tagged = await loadTaggedBackendKey(data, backendKeyMac, log);
    if (tagged && release && tagged.keyId !== release.keyId) {
      log.warn({ tagged: tagged.keyId.slice(0, 16), release: release.keyId.slice(0, 16) }, 'OEM backend key of the data dir differs from the release\'s: answers are verified with the tagged key, root approvals with either');
    }
    const approvalKeys: ApprovalKey[] = [
      ...(tagged ? [{ ...tagged, origin: 'tpm-tagged' }] : []),
      ...(release && release.keyId !== tagged?.keyId ? [{ ...release, origin: 'release' }] : []),
    ];
    const integrity = secret.storeIntegrity();
    const version = TpmStoreCounter.of(keys);
    if (!version) log.warn({ cp: 'PKI-STORE-UNCOUNTED' }, 'certificate store not bound to a TPM version counter (provisioned before it existed): an older copy of the file would be accepted; run evcc tpm provision');
    let store: CertificateStore;
    try {
      // Store events (root installed/removed, tampering) are PKI lines in the bench log, whoever opened the store.
      store = await CertificateStore.open(data, {
        ...storeOptions, integrity, log: log.child({ sub: 'PKI' }), ...(version ? { version } : {}),
        ...(approvalKeys.length ? { approvals: new RootApprovalVerifier(approvalKeys) } : {}),
      });
    } catch (err) {
      throw unavailable(err, 'the certificate store did not verify');
    }
    const backendTrust = tagged ?? release;
    // The link's own state-independent credential when provisioned (link-credential.ts), else the state-bound one.
    const linkKeyPassphrase = (await stateIndependentLinkPassphrase({ tpm: keys.tpm, data, log })) ?? secret.linkKeyPassphrase();
    const historyKey = secret.derive('sessionHistoryEncryption');
    const approved = store.listRoots().filter((r) => r.approvedBy).length;
    log.info({ roots: store.rootCount, approved, dropped: store.dropped.length, backendKey: backendTrust ? backendTrust.keyId : 'none' },
      'vehicle trust opened: store verified with the TPM-derived key');
    return {
      mode: 'full', store, integrity, linkKeyPassphrase, stateBoundLinkKeyPassphrase: secret.linkKeyPassphrase(), historyKey, backendTrust,
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

/**
 * Degraded mode: the store verified entry by entry with the release's OEM backend key, no TPM involved. `reason`
 * is why the full trust is unavailable (the error it threw, or a TrustRefusal); it is logged and returned. Throws
 * KEYS_TRUST_UNAVAILABLE (`details.reason` = that reason's code, `details.degraded` = why this failed too) when the
 * release has no usable backend key or the store file is missing or not a store.
 */
export async function openDegradedTrust(deps: { data: FileStore; log: Logger }, options: VehicleTrustOptions & { reason: unknown }): Promise<DegradedVehicleTrust> {
  const { data, log } = deps;
  const { releaseBackendKey, reason: cause, requireApproval: _notApplicable, ...storeOptions } = options;
  const reason = refusalOf(cause);
  const refuse = (code: string, why: string, err?: unknown): EvccError<VehicleTrustErrorCode> => {
    log.error({ reason: reason.code, degraded: code, cp: 'KEYS-TRUST-UNAVAILABLE' }, `no verified V2G roots: ${why}`);
    return new EvccError('KEYS_TRUST_UNAVAILABLE', `vehicle trust unavailable (${reason.code}), and degraded mode failed (${code}): ${why}; no TLS authentication of the SECC possible`,
      { reason: reason.code, ...(reason.rc ? { rc: reason.rc } : {}), degraded: code }, err === undefined ? undefined : { cause: err });
  };
  if (!releaseBackendKey) throw refuse('OTA_BACKEND_KEY_MISSING', 'the release ships no OEM backend key, so the roots\' OEM approvals cannot be verified without the TPM');
  let backendTrust: BackendTrust;
  try {
    backendTrust = releaseBackendTrust(releaseBackendKey);
  } catch (err) {
    throw refuse('OTA_BACKEND_KEY_MISSING', (err as Error).message, err);
  }
  let store: CertificateStore;
  try {
    store = await CertificateStore.openDegraded(data, {
      ...storeOptions, log: log.child({ sub: 'PKI' }), approvals: new RootApprovalVerifier([{ ...backendTrust, origin: 'release' }]),
    });
  } catch (err) {
    throw refuse(codeOf(err), `the certificate store cannot be read: ${(err as Error).message}`, err);
  }
  log.warn({ reason: reason.code, ...(reason.rc ? { rc: reason.rc } : {}), roots: store.rootCount, dropped: store.dropped.length, backendKey: backendTrust.keyId, keyOrigin: releaseBackendKey.origin },
    `vehicle trust degraded (${reason.code}): ${store.rootCount} V2G root(s) verified by their OEM approval with the release's backend key; contract and provisioning keys stay locked in the TPM — EIM only`);
  return { mode: 'degraded', reason, store, backendTrust };
}

/** Full mode when the TPM grants it, else degraded mode with the reason; throws only when neither can verify anything. */
export async function openVehicleTrustOrDegraded(deps: VehicleTrustDeps, options: VehicleTrustOptions = {}): Promise<OpenedVehicleTrust> {
  try {
    return await openVehicleTrust(deps, options);
  } catch (err) {
    return openDegradedTrust({ data: deps.data, log: deps.log }, { ...options, reason: err });
  }
}

export interface BenchVehicleTrust {
  mode: 'full';
  source: 'bench-env';
  /** Verified with the bench key (HMAC) and, per root, with the OEM approvals. */
  store: CertificateStore;
  /** The data-dir backend key (untagged: bench arrangement), else the release's key. */
  backendTrust: BackendTrust | undefined;
}

/**
 * The bench arrangement without a TPM (`--store-key-env`): the store under an integrity key the operator names, the
 * OEM approvals checked with the release's key and the data-dir key file (untagged: anyone with data-dir access can
 * replace it — bench only, said in the log).
 */
export async function openBenchTrust(deps: { data: FileStore; log: Logger }, options: VehicleTrustOptions & { storeKey: Uint8Array }): Promise<BenchVehicleTrust> {
  const { data, log } = deps;
  const { releaseBackendKey, storeKey, ...storeOptions } = options;
  const release = releaseKey(releaseBackendKey, log);
  const file = await loadBackendTrust(data);
  const approvalKeys: ApprovalKey[] = [
    ...(file ? [{ ...file, origin: 'data-dir (untagged, bench)' }] : []),
    ...(release && release.keyId !== file?.keyId ? [{ ...release, origin: 'release' }] : []),
  ];
  const store = await CertificateStore.open(data, {
    ...storeOptions, integrity: new HmacIntegrity(storeKey), log: log.child({ sub: 'PKI' }),
    ...(approvalKeys.length ? { approvals: new RootApprovalVerifier(approvalKeys) } : {}),
  });
  return { mode: 'full', source: 'bench-env', store, backendTrust: file ?? release };
}

/** The stable code and message of a refusal (KEYS_TRUST_UNAVAILABLE unwrapped to its reason). */
export function refusalOf(err: unknown): TrustRefusal {
  if (err && typeof err === 'object' && !(err instanceof Error) && typeof (err as TrustRefusal).code === 'string' && typeof (err as TrustRefusal).message === 'string') {
    return err as TrustRefusal;
  }
  const e = err as EvccError;
  const wrapped = e?.code === 'KEYS_TRUST_UNAVAILABLE' && typeof e.details?.reason === 'string';
  const rc = typeof e?.details?.rc === 'string' ? e.details.rc : undefined;
  return {
    code: wrapped ? (e.details.reason as string) : codeOf(err),
    message: err instanceof Error ? err.message : String(err),
    ...(rc ? { rc } : {}),
  };
}

function codeOf(err: unknown): string {
  const e = err as EvccError;
  return typeof e?.code === 'string' ? e.code : 'UNKNOWN';
}

function releaseKey(key: ReleaseBackendKey | undefined, log: Logger): BackendTrust | undefined {
  if (!key) return undefined;
  try {
    return releaseBackendTrust(key);
  } catch (err) {
    log.error({ origin: key.origin, cp: 'OTA-BACKEND-KEY-TAMPERED' }, `${(err as Error).message}: not trusted`);
    return undefined;
  }
}

function unavailable(err: unknown, why: string): EvccError<VehicleTrustErrorCode> {
  const e = err as EvccError;
  const reason = codeOf(err);
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
