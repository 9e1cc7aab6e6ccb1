import type { Clock } from '../../hal/clock/types.ts';
import type { Logger } from '../../core/logger.ts';
import type { RootStorePort } from './ports.ts';
import type { RootFetcher } from './root-fetch.ts';
import type { OtaSettings } from './settings.ts';
import { connectWithRootFetch, rootFetchBudget, type UnknownRootState } from './unknown-root.ts';

/**
 * The TLS stage of the orchestrator (firmware/evcc.ts `openChannel`) with the unknown-root path inside: the fetch
 * budget is what is left of the communication-setup window (ctx.setupDeadline) minus the reserve for what follows,
 * and the orchestrator's abort signal (setup window closed, unplug) ends the fetch with its own typed reason.
 */
export interface TlsStageOptions<S> {
  /** One attempt of firmware/tls connectTls (bound to the SECC endpoint and the store), honouring `signal`. */
  connect: (signal: AbortSignal) => Promise<S>;
  fetcher: RootFetcher;
  store: RootStorePort;
  clock: Clock;
  log: { tls: Logger; ota: Logger };
  settings: Pick<OtaSettings, 'reserveAfterFetchMs' | 'rootFetchMaxMs' | 'fallback'>;
  peer?: string;
}

export interface TlsStageResult<S> {
  channel: S;
  summary: { installedRoot?: { subject: string; sha256: string }; recoveryMs?: number; states: UnknownRootState[] };
}

export async function openTlsWithRootFetch<S>(o: TlsStageOptions<S>, ctx: { signal: AbortSignal; setupDeadline: number }): Promise<TlsStageResult<S>> {
  const r = await connectWithRootFetch({
    connectTls: () => o.connect(ctx.signal),
    fetcher: o.fetcher,
    store: o.store,
    clock: o.clock,
    log: o.log,
    // Evaluated when the first handshake has failed: what is left of the setup window then, minus the reserve.
    budgetMs: () => rootFetchBudget(ctx.setupDeadline, o.clock.now(), { reserveAfterFetchMs: o.settings.reserveAfterFetchMs, maxMs: o.settings.rootFetchMaxMs }),
    fallback: o.settings.fallback,
    signal: ctx.signal,
    ...(o.peer ? { peer: o.peer } : {}),
  });
  return {
    channel: r.session,
    summary: { states: r.states, ...(r.installedRoot ? { installedRoot: r.installedRoot } : {}), ...(r.recoveryMs !== undefined ? { recoveryMs: r.recoveryMs } : {}) },
  };
}
