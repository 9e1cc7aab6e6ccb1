/**
 * The vehicle's trust and its mapping to the session's key readiness (ARCHITECTURE.md §3 steps 1 and 7), one place
 * for `evcc charge`, `evcc run`, the OTA tools and the bench:
 *
 *   key service (TPM) → measured boot of this boot → runtime secret unsealed through the OEM-signed state → full
 *   store (integrity tag + OEM root approvals) → contract key armed                          = PnC and EIM
 *   any refusal on the way (tampered bundle, rollback, no boot record, TPM error) → degraded: the store opens by the
 *   roots' OEM approvals alone, verified with the release's OEM backend key; contract and provisioning keys stay
 *   locked                                                                                    = EIM only, said why
 *   a bench without a TPM → an explicitly named store key (said loudly), no key service      = EIM only
 *
 * Every refusal is an answer (readiness.ready = false with its typed code), never an exception; an unverified store is
 * never used. The TPM driver and the boot record reader are injected (firmware touches no hardware).
 */
import type { Logger, Subsystem } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { Tpm } from '../../hal/tpm/types.ts';
import { KeyService } from '../keys/key-service.ts';
import { stateIndependentLinkPassphrase } from '../keys/link-credential.ts';
import type { ReleaseBackendKey } from '../ota/backend-key.ts';
import { openBenchTrust, openDegradedTrust, openVehicleTrustOrDegraded, refusalOf } from '../keys/vehicle-trust.ts';
import type { BackendTrust } from '../ota/signing.ts';
import type { SecurityEvents } from '../log/security-log.ts';
import type { CertificateStore } from '../pki/store.ts';
import type { KeyReadiness } from './policy.ts';

export type TrustSource = 'tpm' | 'tpm-degraded' | 'bench-env' | 'none';

export interface TrustPart {
  readiness: KeyReadiness;
  source: TrustSource;
  keys?: KeyService;
  /** The TPM driver the key service uses (A/B commit after a good session). */
  tpm?: Tpm;
  store?: CertificateStore;
  /** Passphrase of the OEM link key: from the state-independent link secret in any mode (link-credential.ts), else full mode only. */
  linkKeyPassphrase?: string;
  /** Key of the encrypted session history (firmware/log/session-history.ts): full mode only. */
  historyKey?: Uint8Array;
  backendTrust?: BackendTrust;
  close(): Promise<void>;
}

export interface TrustPorts {
  data: FileStore;
  run: FileStore;
  log: (sub: Subsystem) => Logger;
  /** Opens the TPM driver (tpm2-tools on the configured TCTI); absent: no key service on this vehicle/bench. */
  openTpm?: () => Promise<Tpm & { close(): Promise<void> }>;
  /** The boot record measured boot left in the run dir this boot (throws typed when it did not run or failed). */
  bootState: () => Promise<{ version: number }>;
  /** The OEM backend key shipped in the release's read-only root file system (verifies root approvals). */
  releaseBackendKey?: ReleaseBackendKey;
  /** Bench without a TPM: the store integrity key from an explicitly named environment variable. */
  benchStoreKey?: Uint8Array;
  /** Where the bench key came from, for the log (`EVCC_STORE_KEY`). */
  benchStoreKeyOrigin?: string;
  /** The security log: the key service's TPM refusals and the store's root installs are recorded there. */
  events?: SecurityEvents;
}

export async function openTrust(p: TrustPorts, o: { reclaim: boolean; armContractKey: boolean }): Promise<TrustPart> {
  const log = p.log('KEYS');
  const pkiLog = p.log('PKI');
  const release = p.releaseBackendKey ? { releaseBackendKey: p.releaseBackendKey } : {};
  const bench = async (readiness: KeyReadiness): Promise<TrustPart> => {
    if (!p.benchStoreKey) return { readiness, source: 'none', close: async () => undefined };
    pkiLog.warn({ env: p.benchStoreKeyOrigin }, `certificate-store integrity key from the environment${p.benchStoreKeyOrigin ? ` (${p.benchStoreKeyOrigin})` : ''}: bench arrangement, not TPM-sealed`);
    const t = await openBenchTrust({ data: p.data, log: pkiLog }, { storeKey: p.benchStoreKey, ...release });
    return { readiness, source: 'bench-env', store: t.store, ...(t.backendTrust ? { backendTrust: t.backendTrust } : {}), close: async () => undefined };
  };
  // The OEM link's credential does not depend on the software state: a degraded vehicle still reports and is attested.
  let linkKeyPassphrase: string | undefined;
  const link = () => (linkKeyPassphrase ? { linkKeyPassphrase } : {});
  const degraded = async (err: unknown): Promise<TrustPart> => {
    const reason = refusalOf(err);
    const readiness: KeyReadiness = { ready: false, code: reason.code, message: reason.message };
    if (p.benchStoreKey) return { ...(await bench(readiness)), ...link() };
    try {
      const t = await openDegradedTrust({ data: p.data, log: pkiLog }, { ...release, reason: err });
      return { readiness, source: 'tpm-degraded', store: t.store, ...(t.backendTrust ? { backendTrust: t.backendTrust } : {}), ...link(), close: async () => undefined };
    } catch (e) {
      pkiLog.error({ code: refusalOf(e).code }, `no verified V2G roots in this state: ${refusalOf(e).message}`);
      return { readiness, source: 'none', ...link(), close: async () => undefined };
    }
  };

  if (!p.openTpm) return bench({ ready: false, code: 'KEYS_DISABLED', message: 'no TPM key service (--no-keys)' });
  let tpm: (Tpm & { close(): Promise<void> }) | undefined;
  let keys: KeyService | undefined;
  const closeTpm = async () => {
    await keys?.close().catch(() => undefined);
    await tpm?.close().catch(() => undefined);
  };
  try {
    tpm = await p.openTpm();
    linkKeyPassphrase = await stateIndependentLinkPassphrase({ tpm, data: p.data, log });
    keys = await KeyService.open({ tpm, data: p.data, run: p.run, log, ...(p.events ? { events: p.events } : {}) }, { reclaim: o.reclaim });
    await p.bootState();
  } catch (err) {
    await closeTpm();
    return degraded(err);
  }
  let trust: Awaited<ReturnType<typeof openVehicleTrustOrDegraded>>;
  try {
    trust = await openVehicleTrustOrDegraded({ keys, data: p.data, log }, { ...release, ...(p.events ? { events: p.events } : {}) });
  } catch (err) {
    // Neither the full trust nor the degraded one verifies: no store at all (TLS impossible), said why.
    await closeTpm();
    const r = refusalOf(err);
    pkiLog.error({ code: r.code }, `no verified V2G roots in this state: ${r.message}`);
    return { readiness: { ready: false, code: r.code, message: r.message }, source: 'none', ...link(), close: async () => undefined };
  }
  if (trust.mode === 'degraded') {
    // The key service answers, but this state is not OEM-approved: the keys stay locked (the TPM says so too).
    await closeTpm();
    return { readiness: { ready: false, code: trust.reason.code, message: trust.reason.message }, source: 'tpm-degraded', store: trust.store, ...(trust.backendTrust ? { backendTrust: trust.backendTrust } : {}), ...link(), close: async () => undefined };
  }
  const common = {
    source: 'tpm' as const, keys, tpm, store: trust.store, linkKeyPassphrase: trust.linkKeyPassphrase, historyKey: trust.historyKey,
    ...(trust.backendTrust ? { backendTrust: trust.backendTrust } : {}), close: closeTpm,
  };
  if (!o.armContractKey) return { ...common, readiness: { ready: false, code: 'KEYS_NOT_ARMED', message: 'contract key not armed (not needed by this command)' } };
  try {
    const boot = await p.bootState();
    await keys.arm();
    const status = await keys.status();
    return { ...common, readiness: { ready: true, version: boot.version, contractKey: status.activeContractKey ?? '?' } };
  } catch (err) {
    const r = refusalOf(err);
    // No contract yet, but the OEM provisioning certificate is there: the state is approved and the session can get
    // the contract by CertificateInstallation (signed with the provisioning key in the TPM).
    if (r.code === 'KEYS_NO_CONTRACT_KEY' && trust.store.getOemProvisioningChain()?.length) {
      const boot = await p.bootState().catch(() => undefined);
      if (boot) {
        log.info({ cp: 'KEYS_CONTRACT_INSTALLABLE' }, `no contract key yet: OEM provisioning certificate held, the contract comes by CertificateInstallation`);
        return { ...common, readiness: { ready: true, version: boot.version } };
      }
    }
    // The store verified, but the contract key cannot be used (the TPM refused): EIM only.
    return { ...common, readiness: { ready: false, code: r.code, message: r.message } };
  }
}
