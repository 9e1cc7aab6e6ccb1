/**
 * The orchestrator: one charging session, plug-in → SLAC → SDP → TLS or TCP (→ root fetch → retry) → V2G session
 * (SupportedAppProtocol, then ISO 15118-2 or DIN SPEC 70121 to SessionStop) → [pause → resume] → end, as an explicit
 * sequence of named states with the communication-setup budget enforced across them until SessionSetupRes
 * (V2G_EVCC_CommunicationSetup_Timeout, ISO 15118-2 Table 109).
 *
 * Each stage is injected: firmware/vehicle binds the firmware engines to the HAL parts (real drivers or simulated
 * ones), so this file holds only the order, the budgets and the report — and runs unchanged on the Pi, in
 * `evcc charge`, in the service and in the embedded bench session.
 */
import type { Clock } from '../hal/clock/types.ts';
import { EvccError, isEvccError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { SessionResult } from './session/engine.ts';
import { V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS } from './session/timers.ts';

export { V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS };

export type SessionState =
  | 'WaitForPlugIn'
  | 'Matching' // SLAC (ISO 15118-3), or the link given as up
  | 'WaitForSeccDiscoveryRes' // SDP
  | 'WaitForChannel' // TLS (including the unknown-root path, Solution C) or plain TCP
  | 'V2GSession' // SupportedAppProtocol … SessionStopRes (the engine's own states are in the session report)
  | 'Paused' // SessionStop(Pause) done; waiting for the vehicle to resume
  | 'Ended'
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
  /** The link was up already (`--link-up`): no SLAC ran. */
  given?: boolean;
}

export interface SeccEndpoint {
  address: string;
  port: number;
  security: 'tls' | 'none';
  /** Interface the SECC was found on (link-local addresses need their scope). */
  iface?: string;
}

export interface ChannelSummary {
  kind: 'tls' | 'tcp';
  protocol: string;
  cipher?: string;
  /** Set when the unknown-root path (Solution C) installed a root on the way. */
  installedRoot?: { subject: string; sha256: string };
  recoveryMs?: number;
  /** What the channel plan decided (offer, PnC allowed) and why. */
  plan?: { pnc: boolean; offer: string[]; reason: string };
}

export interface SessionStageContext extends StageContext {
  /** When this communication setup began (plug-in, or the resume), Clock.now ms. */
  plugInAt: number;
  /** Call when SessionSetupRes arrived: the communication-setup budget ends there. */
  setupComplete(): void;
  /** Resume a paused session with this SessionID. */
  resume?: { sessionId: string };
}

export interface ChargingStages<Channel> {
  /** Resolves on plug-in with 5 % duty (high-level communication requested). */
  waitForPlugIn(ctx: StageContext): Promise<void>;
  slac(ctx: StageContext): Promise<LinkSummary>;
  discoverSecc(ctx: StageContext): Promise<SeccEndpoint>;
  /** TLS with our path validation (the unknown-root path lives inside this stage) or plain TCP, per the plan. */
  openChannel(secc: SeccEndpoint, ctx: StageContext): Promise<{ channel: Channel; summary: ChannelSummary }>;
  /** The V2G session on the channel, to SessionStopRes (or a typed end). Never throws for protocol failures. */
  session(channel: Channel, ctx: SessionStageContext): Promise<SessionResult>;
  /** After SessionStop(Pause): resolves when the vehicle wants to go on (absent: a paused session ends here). */
  waitForResume?(signal: AbortSignal): Promise<void>;
  closeChannel(channel: Channel): Promise<void>;
}

export interface SessionReport {
  state: SessionState;
  link?: LinkSummary;
  secc?: SeccEndpoint;
  channel?: ChannelSummary;
  /** The V2G session (the last one when a paused session was resumed). */
  session?: SessionResult;
  /** Earlier sessions of this plug-in that ended paused. */
  paused?: SessionResult[];
  /** Milliseconds spent in each orchestrator state, in order. */
  timeline: { state: SessionState; ms: number }[];
  /** Plug-in to SessionSetupRes. */
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
 * Runs one plug-in to its end. Never throws: the report carries the final state, the V2G session's result and the
 * typed error, so the caller (CLI, HIL harness, service loop) decides what follows.
 */
export async function runChargingSession<Channel>(o: RunSessionOptions<Channel>): Promise<SessionReport> {
  const { stages, clock, log } = o;
  const budget = o.communicationSetupTimeoutMs ?? V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS;
  const report: SessionReport = { state: 'WaitForPlugIn', timeline: [] };
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(isEvccError(o.signal?.reason) ? o.signal!.reason : new EvccError('ABORTED', 'session aborted'));
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
  const clearSetupTimer = () => {
    if (setupTimer !== undefined) clock.clearTimer(setupTimer);
    setupTimer = undefined;
  };

  try {
    const ctx0: StageContext = { signal: abort.signal, setupDeadline: Number.POSITIVE_INFINITY };
    log.info('waiting for plug-in (state B, 5 % duty)');
    await stages.waitForPlugIn(ctx0);
    const pluggedAt = clock.now();
    let ctx: StageContext = { signal: abort.signal, setupDeadline: pluggedAt + budget };
    // The communication-setup window is a hard limit until SessionSetupRes: when it closes, the running stage is
    // aborted with a typed error.
    const armSetupTimer = (from: number) => {
      clearSetupTimer();
      ctx = { signal: abort.signal, setupDeadline: from + budget };
      setupTimer = clock.setTimer(() => {
        abort.abort(new EvccError<OrchestratorErrorCode>('EVCC_SETUP_TIMEOUT',
          `V2G_EVCC_CommunicationSetup_Timeout (${budget} ms) expired in ${report.state}`, { state: report.state, budgetMs: budget }));
      }, budget);
    };
    armSetupTimer(pluggedAt);

    enter('Matching');
    report.link = await stages.slac(ctx);

    let resume: { sessionId: string } | undefined;
    for (;;) {
      enter('WaitForSeccDiscoveryRes');
      report.secc = await stages.discoverSecc(ctx);

      enter('WaitForChannel');
      const opened = await stages.openChannel(report.secc, ctx);
      channel = opened.channel;
      report.channel = opened.summary;

      enter('V2GSession');
      const setupStart = ctx.setupDeadline - budget;
      const result = await stages.session(channel, {
        ...ctx, plugInAt: setupStart,
        setupComplete: () => {
          if (report.setupMs === undefined) report.setupMs = Math.round(clock.now() - setupStart);
          clearSetupTimer();
          log.info({ setupMs: Math.round(clock.now() - setupStart), budgetMs: budget, cp: 'EVCC_SETUP_COMPLETE' }, `communication setup complete in ${Math.round(clock.now() - setupStart)} ms (budget ${budget} ms)`);
        },
        ...(resume ? { resume } : {}),
      });
      await stages.closeChannel(channel).catch(() => undefined);
      channel = undefined;
      report.session = result;
      if (result.outcome !== 'paused' || !stages.waitForResume) {
        if (result.outcome === 'failed') {
          report.error = { code: result.reason.code, message: result.reason.message };
          enter('Failed');
        } else {
          enter('Ended');
        }
        break;
      }
      const sessionId = result.protocol?.sessionId;
      (report.paused ??= []).push(result);
      enter('Paused');
      clearSetupTimer();
      await stages.waitForResume(abort.signal);
      if (!sessionId) throw new EvccError('EVCC_STAGE_FAILED', 'paused session without a SessionID cannot be resumed');
      resume = { sessionId };
      report.setupMs = undefined;
      armSetupTimer(clock.now()); // resuming is a new communication setup (SDP, TLS, SessionSetup with the old ID)
    }
  } catch (err) {
    const failure = abort.signal.aborted && isEvccError(abort.signal.reason) ? abort.signal.reason : err;
    const code = isEvccError(failure) ? failure.code : 'EVCC_STAGE_FAILED';
    const message = failure instanceof Error ? failure.message : String(failure);
    report.error = { code, message };
    log.error({ code, state: report.state }, `session failed in ${report.state}: ${message}`);
    enter('Failed');
  } finally {
    clearSetupTimer();
    o.signal?.removeEventListener('abort', onOuterAbort);
    if (channel !== undefined) await stages.closeChannel(channel).catch(() => undefined);
  }
  return report;
}
