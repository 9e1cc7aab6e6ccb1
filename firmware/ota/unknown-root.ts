import type { Clock } from '../../hal/clock/types.ts';
import { isEvccError } from '../../core/errors.ts';
import { unknownRootOf, type ApprovedRootStorePort } from './pki-adapter.ts';
import type { Logger } from '../../core/logger.ts';
import { OTA_RESERVE_AFTER_FETCH_MS, OTA_ROOT_FETCH_MAX_MS } from './constants.ts';
import { otaError, OtaError } from './errors.ts';
import type { UnknownRootInfo } from './ports.ts';
import type { RootFetcher } from './root-fetch.ts';

/**
 * The unknown-root path of the TLS stage as an explicit state machine (STYLE.md §7):
 *
 *   ConnectTls ──ok──────────────────────────────────────────────▶ Established
 *       │ TLS_UNKNOWN_ROOT
 *       ▼
 *   RootMissing ─▶ FetchRoot ─verified─▶ InstallRoot ─▶ Retry ─ok─▶ Established
 *                      │ typed error / budget spent      │ fails
 *                      ▼                                 ▼
 *                   Fallback (OTA_ROOT_UNAVAILABLE)   the retry's own TLS error (no second fetch)
 *
 * The fetch runs on its own budget, drawn from what is left of V2G_EVCC_CommunicationSetup_Timeout minus what
 * must still follow (TLS retry, SupportedAppProtocol, SessionSetup). Fallback never means plain TCP for PnC: the
 * typed error carries the configured policy (`retry-later` or `eim`) and the orchestrator acts on it.
 */
export type UnknownRootState = 'ConnectTls' | 'RootMissing' | 'FetchRoot' | 'InstallRoot' | 'Retry' | 'Established' | 'Fallback';

export type RootFallbackPolicy = 'retry-later' | 'eim';

export interface ConnectWithRootFetchOptions<S> {
  /** One TLS connection attempt to the SECC (firmware/tls); throws TLS_UNKNOWN_ROOT when the chain's root is missing. */
  connectTls: () => Promise<S>;
  fetcher: RootFetcher;
  /** Where the verified root goes, with the OEM approval it arrived with (rootStoreOf). */
  store: ApprovedRootStorePort;
  /**
   * Budget of the fetch; see rootFetchBudget(). A function is evaluated when the first handshake has failed, so the
   * time that handshake took is not counted twice.
   */
  budgetMs: number | (() => number);
  clock: Clock;
  /** Logger with `sub` unset or any; TLS lines go to `tls`, fetch/install lines to `ota`. */
  log: { tls: Logger; ota: Logger };
  fallback: RootFallbackPolicy;
  /** Extracts the presented chain from a TLS failure; undefined when the failure is not an unknown root. */
  unknownRoot?: (err: unknown) => UnknownRootInfo | undefined;
  /** Where the SECC is, for the bench lines. */
  peer?: string;
  signal?: AbortSignal;
}

export interface ConnectWithRootFetchResult<S> {
  session: S;
  /** The root installed on the way, when the fetch was needed. */
  installedRoot?: { subject: string; sha256: string };
  /** Milliseconds from the TLS failure to the established retry (when the fetch was needed). */
  recoveryMs?: number;
  states: UnknownRootState[];
}

/**
 * The fetch budget: what is left of the communication-setup time minus the reserve for what follows, capped so a
 * silent backend cannot eat the whole setup window. Never negative.
 */
export function rootFetchBudget(setupDeadline: number, now: number, settings: { reserveAfterFetchMs?: number; maxMs?: number } = {}): number {
  const reserve = settings.reserveAfterFetchMs ?? OTA_RESERVE_AFTER_FETCH_MS;
  const max = settings.maxMs ?? OTA_ROOT_FETCH_MAX_MS;
  return Math.max(0, Math.min(max, setupDeadline - now - reserve));
}

export async function connectWithRootFetch<S>(o: ConnectWithRootFetchOptions<S>): Promise<ConnectWithRootFetchResult<S>> {
  const states: UnknownRootState[] = [];
  const { tls, ota } = o.log;
  const enter = (state: UnknownRootState, fields: Record<string, unknown> = {}) => {
    states.push(state);
    ota.debug({ state, ...fields }, `unknown-root path: ${state}`);
  };
  const where = o.peer ? ` to ${o.peer}` : '';
  const extract = o.unknownRoot ?? unknownRootOf;

  enter('ConnectTls');
  let missing: UnknownRootInfo | undefined;
  try {
    const session = await o.connectTls();
    tls.info({ state: 'Established' }, 'connection established');
    enter('Established');
    return { session, states };
  } catch (err) {
    missing = extract(err);
    if (!missing) throw err;
  }

  const failedAt = o.clock.now();
  tls.error({ issuer: missing.issuer, aki: missing.aki, code: 'TLS_UNKNOWN_ROOT' }, `connection failed: unknown root CA ${missing.issuer}`);
  enter('RootMissing', { issuer: missing.issuer });

  const budgetMs = typeof o.budgetMs === 'function' ? o.budgetMs() : o.budgetMs;
  enter('FetchRoot', { budgetMs });
  let root;
  try {
    if (budgetMs <= 0) throw otaError('OTA_BACKEND_SILENT', 'no communication-setup time left for a root fetch', { budgetMs });
    root = await o.fetcher.fetchRoot(missing, { budgetMs, ...(o.signal ? { signal: o.signal } : {}) });
  } catch (err) {
    throw fallback(o, ota, missing, err, states);
  }
  ota.info({ subject: root.subject, sha256: root.sha256, requestId: root.requestId }, 'V2G root received and verified');

  enter('InstallRoot');
  try {
    await o.store.install(root.der, { source: `ota:${root.requestId}`, ...(root.approval ? { approval: root.approval } : {}) });
  } catch (err) {
    throw fallback(o, ota, missing, err, states);
  }
  ota.info({ subject: root.subject, sha256: root.sha256, approved: root.approval !== undefined }, 'V2G root installed');

  enter('Retry');
  tls.info({ attempt: 2 }, `retrying TLS connection${where}`);
  let session: S;
  try {
    session = await o.connectTls();
  } catch (err) {
    // Once only: a second unknown root (or any other failure) ends here, no fetch loop.
    const code = isEvccError(err) ? err.code : 'INTERNAL';
    tls.error({ code, state: 'Retry' }, `connection failed after the root install: ${code}`);
    throw err;
  }
  const recoveryMs = o.clock.now() - failedAt;
  tls.info({ state: 'Established', recoveryMs: Math.round(recoveryMs) }, 'connection established');
  enter('Established');
  return { session, installedRoot: { subject: root.subject, sha256: root.sha256 }, recoveryMs, states };
}

function fallback<S>(o: ConnectWithRootFetchOptions<S>, ota: Logger, missing: UnknownRootInfo, cause: unknown, states: UnknownRootState[]): OtaError {
  states.push('Fallback');
  const causeCode = isEvccError(cause) ? cause.code : 'INTERNAL';
  const err = otaError(
    'OTA_ROOT_UNAVAILABLE',
    `V2G root for ${missing.issuer} not obtained (${causeCode}); falling back: ${o.fallback}`,
    { issuer: missing.issuer, causeCode, fallback: o.fallback, ...(isEvccError(cause) ? { cause: cause.toJSON() } : {}) },
    cause,
  );
  ota.error({ code: err.code, causeCode, fallback: o.fallback, state: 'Fallback' }, err.message);
  return err;
}
