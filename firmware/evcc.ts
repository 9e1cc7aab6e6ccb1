/**
 * The orchestrator: one charging session, plug-in → SLAC → SDP → TLS (→ root fetch → retry) → application
 * handshake, as an explicit sequence of named states with the communication-setup budget enforced across them.
 *
 * Each stage is injected (the composition root binds firmware engines to real or simulated HAL parts), so this file
 * holds only the order, the budgets, the fallback policy and the bench log — and runs unchanged on the Pi and in
 * the embedded bench session.
 */
import type { Clock } from '../hal/clock/types.ts';
import { EvccError, isEvccError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';

import { V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS } from './session/timers.ts';

export { V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS };

export type SessionState =
  | 'WaitForPlugIn'
  | 'Matching' // SLAC (ISO 15118-3)
  | 'WaitForSeccDiscoveryRes' // SDP
  | 'WaitForTlsEstablished' // TLS, including the unknown-root path (Solution C)
  | 'WaitForSupportedAppProtocolRes'
  | 'Established'
  | 'Failed';

export type OrchestratorErrorCode = 'EVCC_SETUP_TIMEOUT' | 'EVCC_STAGE_FAILED' | 'ABORTED';

export interface StageContext {
  signal: AbortSignal;
  /** Monotonic ms (Clock.now) at which the communication-setup window closes. */
  setupDeadline: number;
}

export interface LinkSummary {
  evseMac: string;
  nid: string;
  evses: { mac: string; averageAttenuationDb: number }[];
}

export interface SeccEndpoint {
  address: string;
  port: number;
  security: 'tls' | 'none';
  /** Interface the SECC was found on (link-local addresses need their scope). */
  iface?: string;
}

export interface ChannelSummary {
  protocol: string;
  cipher: string;
  /** Set when the unknown-root path (Solution C) installed a root on the way. */
  installedRoot?: { subject: string; sha256: string };
  recoveryMs?: number;
}

export interface AppProtocolSummary {
  namespace: string;
  schemaId: number;
  responseCode: string;
}

export interface ChargingStages<Channel> {
  /** Resolves on plug-in with 5 % duty (high-level communication requested). */
  waitForPlugIn(ctx: StageContext): Promise<void>;
  slac(ctx: StageContext): Promise<LinkSummary>;
  discoverSecc(ctx: StageContext): Promise<SeccEndpoint>;
  /** TLS with our path validation; the unknown-root path (fetch → install → retry) lives inside this stage. */
  openChannel(secc: SeccEndpoint, ctx: StageContext): Promise<{ channel: Channel; summary: ChannelSummary }>;
  /** SupportedAppProtocol handshake over the channel; optional until the application layer is wired. */
  appHandshake?(channel: Channel, ctx: StageContext): Promise<AppProtocolSummary>;
  closeChannel(channel: Channel): Promise<void>;
}

export interface SessionReport {
  state: SessionState;
  link?: LinkSummary;
  secc?: SeccEndpoint;
  channel?: ChannelSummary;
  app?: AppProtocolSummary;
  /** Milliseconds spent in each state, in order. */
  timeline: { state: SessionState; ms: number }[];
  setupMs?: number;
  error?: { code: string; message: string };
}

export interface RunSessionOptions<Channel> {
  stages: ChargingStages<Channel>;
  clock: Clock;
  log: Logger;
  communicationSetupTimeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Runs one session to the established application channel (or a typed failure). Never throws: the report carries
 * the final state and the typed error so the caller (bench CLI, HIL harness, service loop) decides what follows.
 */
export async function runChargingSession<Channel>(o: RunSessionOptions<Channel>): Promise<SessionReport> {
  const { stages, clock, log } = o;
  const budget = o.communicationSetupTimeoutMs ?? V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS;
  const report: SessionReport = { state: 'WaitForPlugIn', timeline: [] };
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(new EvccError('ABORTED', 'session aborted'));
  o.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let entered = clock.now();
  let setupTimer: ReturnType<Clock['setTimer']> | undefined;
  let channel: Channel | undefined;

  const enter = (state: SessionState) => {
    const now = clock.now();
    report.timeline.push({ state: report.state, ms: Math.round(now - entered) });
    log.info({ from: report.state, to: state }, `${report.state} -> ${state}`);
    report.state = state;
    entered = now;
  };

  try {
    const ctx0: StageContext = { signal: abort.signal, setupDeadline: Number.POSITIVE_INFINITY };
    log.info('waiting for plug-in (state B, 5 % duty)');
    await stages.waitForPlugIn(ctx0);
    const pluggedAt = clock.now();
    const ctx: StageContext = { signal: abort.signal, setupDeadline: pluggedAt + budget };
    // The communication-setup window is a hard limit: when it closes every stage is aborted with a typed error.
    setupTimer = clock.setTimer(() => {
      abort.abort(new EvccError<OrchestratorErrorCode>('EVCC_SETUP_TIMEOUT',
        `V2G_EVCC_CommunicationSetup_Timeout (${budget} ms) expired in ${report.state}`, { state: report.state, budgetMs: budget }));
    }, budget);

    enter('Matching');
    report.link = await stages.slac(ctx);

    enter('WaitForSeccDiscoveryRes');
    report.secc = await stages.discoverSecc(ctx);

    enter('WaitForTlsEstablished');
    const opened = await stages.openChannel(report.secc, ctx);
    channel = opened.channel;
    report.channel = opened.summary;

    if (stages.appHandshake) {
      enter('WaitForSupportedAppProtocolRes');
      report.app = await stages.appHandshake(channel, ctx);
    }
    report.setupMs = Math.round(clock.now() - pluggedAt);
    enter('Established');
    log.info({ setupMs: report.setupMs, budgetMs: budget }, `communication setup complete in ${report.setupMs} ms (budget ${budget} ms)`);
  } catch (err) {
    const failure = abort.signal.aborted && isEvccError(abort.signal.reason) ? abort.signal.reason : err;
    const code = isEvccError(failure) ? failure.code : 'EVCC_STAGE_FAILED';
    const message = failure instanceof Error ? failure.message : String(failure);
    report.error = { code, message };
    log.error({ code, state: report.state }, `session failed in ${report.state}: ${message}`);
    enter('Failed');
  } finally {
    if (setupTimer !== undefined) clock.clearTimer(setupTimer);
    o.signal?.removeEventListener('abort', onOuterAbort);
    if (channel !== undefined) await stages.closeChannel(channel).catch(() => undefined);
  }
  return report;
}
