/**
 * The end of a session: PowerDelivery(Stop) → (DC) WeldingDetection → SessionStop(Terminate | Pause), and the stop
 * path the engine takes from any step (module.ts stopPath).
 */
import { next, repeat, type EffectRequest, type Step } from '../exchange.ts';
import { ISO2_TIMERS, PACING } from '../timers.ts';
import { powerDeliveryBody } from './charge.ts';
import { checkWeldingDetectionRes } from './checks.ts';
import { beginSeries, dcEvStatus, isDc, msOf, openContactors, openS2, recordEnergy, seriesElapsed, timer, type Iso2Ctx } from './context.ts';
import { fmt, fmtPv, si } from './values.ts';

export const powerDeliveryStop: Step<Iso2Ctx> = {
  request: 'PowerDeliveryReq',
  response: 'PowerDeliveryRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgPowerDelivery),
  build: (ctx, env) => {
    recordEnergy(ctx, env, 'now');
    return { body: powerDeliveryBody(ctx, env, 'Stop'), summary: `Stop${ctx.pausing ? ' (pause)' : ''}` };
  },
  handle: (_res, ctx) => {
    // The charger has ramped its current down when it answers: now the contactors open (no switching under load)
    // and S2 opens (state B) at once.
    const effects: EffectRequest[] = [...openContactors(ctx), ...openS2(ctx)];
    return next(isDc(ctx) ? 'weldingDetection' : 'sessionStop', { effects, why: 'energy transfer stopped' });
  },
  summarize: (res) => String(res.ResponseCode),
};

/**
 * Our contactors are open: the charger measures the voltage at its output. Still high means a welded contactor on
 * our side (or a charger that does not discharge). Repeated until safe, bounded; whatever happens, SessionStop
 * follows (PROTOCOLS.md §7: chargers that never answer, answer FAILED, or whose voltage never drops).
 */
export const weldingDetection: Step<Iso2Ctx> = {
  request: 'WeldingDetectionReq',
  response: 'WeldingDetectionRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  // Welding is measured with the EV's contactors open and S2 open (state B), also when PowerDeliveryRes(Stop) failed
  // and its handler never opened them.
  before: (ctx) => [...openContactors(ctx), ...openS2(ctx)],
  build: (ctx, env) => {
    beginSeries(ctx, 'weldingDetection', env.now);
    return { body: { WeldingDetectionReq: { DC_EVStatus: dcEvStatus(env) } } };
  },
  check: checkWeldingDetectionRes,
  handle: (res, ctx, env) => {
    const present = si(res.EVSEPresentVoltage)!;
    const safe = ctx.settings.weldingSafeVoltageV;
    if (present < safe) {
      ctx.weldingDetection = 'safe';
      return next('sessionStop', { why: `EVSE output ${fmt(present, 'V')} below ${safe} V` });
    }
    const total = msOf(ctx, env, PACING.weldingDetectionTotal);
    const elapsed = seriesElapsed(ctx, env.now);
    if (elapsed >= total) {
      ctx.weldingDetection = 'voltage-stays-high';
      env.note('warn', `WeldingDetection: EVSE output still ${fmt(present, 'V')} after ${elapsed} ms (safe below ${safe} V): a welded contactor or a charger that does not discharge; ending the session`, { presentVoltageV: present, elapsedMs: elapsed });
      return next('sessionStop', { why: 'WeldingDetection bound reached' });
    }
    return repeat(Math.max(1, Math.min(msOf(ctx, env, PACING.weldingDetectionRepeat), total - elapsed)), `EVSE output ${fmt(present, 'V')}`);
  },
  onTimeout: (ctx, env) => {
    ctx.weldingDetection = 'unanswered';
    env.note('warn', 'no WeldingDetectionRes: welding not verified by the charger; SessionStop anyway');
    return next('sessionStop', { why: 'WeldingDetectionRes missing' });
  },
  summarize: (res) => `present ${fmtPv(res.EVSEPresentVoltage, 'V')}`,
};

export const sessionStop: Step<Iso2Ctx> = {
  request: 'SessionStopReq',
  response: 'SessionStopRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  // Never SessionStop in state C or with the contactors closed (a stop from CableCheck/PreCharge, a failed PowerDelivery).
  before: (ctx) => [...openContactors(ctx), ...openS2(ctx)],
  build: (ctx, env) => {
    // A failure on the way to a pause terminates instead: a broken session is not one to resume.
    ctx.stopKind = ctx.pausing && !env.stopping?.failure ? 'Pause' : 'Terminate';
    return { body: { SessionStopReq: { ChargingSession: ctx.stopKind } }, summary: ctx.stopKind };
  },
  handle: (_res, ctx) => ({ kind: 'end', paused: ctx.stopKind === 'Pause' }),
  summarize: (res) => String(res.ResponseCode),
};

/** Where an orderly stop goes from a step. */
export function stopPath(fromStep: string, ctx: Iso2Ctx): string | undefined {
  switch (fromStep) {
    case 'sessionStop':
      return undefined;
    case 'weldingDetection':
      return 'sessionStop';
    case 'powerDeliveryStop':
      return isDc(ctx) ? 'weldingDetection' : 'sessionStop';
    case 'sessionSetup':
      // No session exists yet (or the SECC refused one): nothing to stop.
      return ctx.sessionId ? 'sessionStop' : undefined;
    default:
      // Once a PowerDeliveryReq(Start) went out (including a renegotiation), the charger may deliver energy.
      return ctx.energyArmed ? 'powerDeliveryStop' : 'sessionStop';
  }
}
