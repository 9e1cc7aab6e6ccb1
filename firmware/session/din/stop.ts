/**
 * The end of a DIN session: PowerDelivery(ReadyToChargeState=false) → S2 open, contactors open → WeldingDetection
 * (repeated until the EVSE output is safe, bounded; no answer, a voltage that never drops or FAILED: SessionStop
 * all the same) → SessionStop. And the stop path the engine takes from any step.
 */
import type { Din } from '../../exi/index.ts';
import { next, repeat, type Step } from '../exchange.ts';
import { checkPowerDeliveryRes, checkWeldingDetectionRes } from './checks.ts';
import { beginSeries, dcEvStatus, msOf, openContactors, openS2, recordEnergy, reportEvseOutput, seriesElapsed, timer, toSessionStop, type DinCtx } from './context.ts';
import { powerDeliveryBody } from './dc.ts';
import { DIN_PACING, DIN_TIMERS } from './timers.ts';
import { fmt, fmtPv, si } from './values.ts';

export const powerDeliveryStop: Step<DinCtx> = {
  request: 'PowerDeliveryReq',
  response: 'PowerDeliveryRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgPowerDelivery),
  build: (ctx, env) => {
    recordEnergy(ctx, env, 'now');
    return { body: { PowerDeliveryReq: powerDeliveryBody(ctx, env, false) }, summary: 'ReadyToChargeState=false' };
  },
  check: checkPowerDeliveryRes,
  // The charger has ramped its current down when it answers (a Compleo takes ~1.5 s for that): S2 opens (state B)
  // now, and the contactors open when WeldingDetection begins — after S2, never under load.
  handle: (_res, ctx) => next('weldingDetection', { effects: openS2(ctx), why: 'energy transfer stopped' }),
  summarize: (r) => String(r.ResponseCode),
};

/**
 * Our contactors are open: the charger measures the voltage at its output. Still high means a welded contactor on
 * our side (or a charger that does not discharge its output).
 */
export const weldingDetection: Step<DinCtx> = {
  request: 'WeldingDetectionReq',
  response: 'WeldingDetectionRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgWeldingDetection),
  // Normally only the contactors are still closed here; on a stop path that skipped PowerDelivery's answer S2 too
  // (S2 listed first: the charger stops its current on state B).
  before: (ctx) => [...openS2(ctx), ...openContactors(ctx)],
  build: (ctx, env) => {
    beginSeries(ctx, 'weldingDetection', env.now);
    return { body: { WeldingDetectionReq: { DC_EVStatus: dcEvStatus(ctx, env, { ready: false }) } } };
  },
  check: checkWeldingDetectionRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Din.WeldingDetectionResType;
    const present = si(res.EVSEPresentVoltage)!;
    ctx.present = { voltageV: present };
    reportEvseOutput(ctx, env, { presentVoltageV: present, presentCurrentA: 0 });
    const safe = ctx.settings.weldingSafeVoltageV;
    if (present < safe) {
      ctx.weldingDetection = 'safe';
      return toSessionStop(ctx, env, `EVSE output ${fmt(present, 'V')} below ${safe} V`);
    }
    const total = msOf(ctx, env, DIN_PACING.weldingDetectionTotal);
    const elapsed = seriesElapsed(ctx, env.now);
    if (elapsed >= total) {
      ctx.weldingDetection = 'voltage-stays-high';
      env.note('warn', `WeldingDetection: EVSE output still ${fmt(present, 'V')} after ${elapsed} ms (safe below ${safe} V): a welded contactor or a charger that does not discharge; SessionStop`, { presentVoltageV: present, elapsedMs: elapsed });
      return toSessionStop(ctx, env, 'WeldingDetection bound reached');
    }
    return repeat(Math.max(1, Math.min(msOf(ctx, env, DIN_PACING.weldingDetectionRepeat), total - elapsed)), `EVSE output ${fmt(present, 'V')}`);
  },
  // Only consulted while the engine is not stopping (see context.ts stopInOrder: the module keeps it so).
  onTimeout: (ctx, env) => {
    ctx.weldingDetection = 'unanswered';
    env.note('warn', 'no WeldingDetectionRes: welding not verified by the charger; SessionStop anyway');
    return toSessionStop(ctx, env, 'WeldingDetectionRes missing');
  },
  summarize: (r) => `present ${fmtPv(r.EVSEPresentVoltage, 'V')}`,
};

export const sessionStop: Step<DinCtx> = {
  request: 'SessionStopReq',
  response: 'SessionStopRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgDefault),
  // Whatever is still closed (a stop from CableCheck or PreCharge: S2; after a failed PowerDelivery: contactors too).
  before: (ctx) => [...openS2(ctx), ...openContactors(ctx)],
  // DIN's SessionStopReq is empty: no pause, no ChargingSession element.
  build: () => ({ body: { SessionStopReq: {} } }),
  handle: () => ({ kind: 'end', paused: false }),
  summarize: (r) => String(r.ResponseCode),
};

/** Where an orderly stop goes from a step (the step whose response just arrived, failed or timed out). */
export function stopPath(fromStep: string, ctx: DinCtx): string | undefined {
  switch (fromStep) {
    case 'sessionSetup':
      // No session exists yet (or the SECC refused one): nothing to stop.
      return ctx.sessionId ? 'sessionStop' : undefined;
    case 'sessionStop':
      return undefined;
    case 'weldingDetection':
    case 'powerDeliveryStop':
      return 'sessionStop';
    default:
      // Once PowerDeliveryReq(true) went out the charger may deliver energy: ramp it down first.
      return ctx.powerDeliveryRequested ? 'powerDeliveryStop' : 'sessionStop';
  }
}
