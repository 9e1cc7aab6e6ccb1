/**
 * DC: CableCheck → PreCharge → (PowerDelivery(Start), charge.ts) → CurrentDemand loop.
 */
import type { Iso2 } from '../../exi/index.ts';
import type { EvLimits, EvStatus } from '../../../hal/ev/types.ts';
import { next, repeat, stopWith, type Step, type StepEnv, type Transition } from '../exchange.ts';
import { ISO2_TIMERS, PACING } from '../timers.ts';
import { checkCableCheckRes, checkCurrentDemandRes, checkPreChargeRes } from './checks.ts';
import { beginSeries, dcEvStatus, msOf, openContactors, recordEnergy, repeatWithin, reportEvseOutput, timer, type EvseDcLimits, type Iso2Ctx } from './context.ts';
import { iso2Stop } from './errors.ts';
import { meteringReceiptIfRequired } from './charge.ts';
import { evLoopDecision, evseStatusStop, renegotiationAsked } from './status.ts';
import { fmt, fmtPv, pvAtMost, si } from './values.ts';

export const cableCheck: Step<Iso2Ctx> = {
  request: 'CableCheckReq',
  response: 'CableCheckRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgCableCheck),
  // S2 closed (state C) before the first CableCheckReq: the charger energises the cable for the isolation test only
  // with the vehicle in state C.
  before: (ctx) => {
    if (ctx.s2Closed) return [];
    ctx.s2Closed = true;
    return [{ kind: 'chargeRequest', closed: true }];
  },
  build: (ctx, env) => {
    beginSeries(ctx, 'cableCheck', env.now);
    return { body: { CableCheckReq: { DC_EVStatus: dcEvStatus(env) } } };
  },
  check: checkCableCheckRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Iso2.CableCheckResType;
    const stop = evseStatusStop(ctx, res.DC_EVSEStatus, 'CableCheckRes');
    if (stop) return stop;
    const isolation = res.DC_EVSEStatus.EVSEIsolationStatus;
    if (isolation === 'Fault') return stopWith(iso2Stop('ISO2_ISOLATION_FAULT', 'CableCheckRes: EVSEIsolationStatus=Fault'));
    if (res.EVSEProcessing === 'Finished' && (isolation === 'Valid' || isolation === 'Warning')) {
      if (isolation === 'Warning') env.note('warn', 'CableCheck finished with EVSEIsolationStatus=Warning: isolation resistance is low but allowed');
      return next('preCharge', { why: `isolation ${isolation}` });
    }
    return repeatWithin(ctx, env, {
      total: ISO2_TIMERS.cableCheck, pacing: PACING.cableCheckRepeat, code: 'ISO2_CABLE_CHECK_TIMEOUT',
      what: `CableCheck: EVSEProcessing=${res.EVSEProcessing}, isolation ${isolation ?? 'not reported'}`,
    });
  },
  summarize: (r) => {
    const res = r as unknown as Partial<Iso2.CableCheckResType>;
    return `${String(res.EVSEProcessing)}, isolation ${res.DC_EVSEStatus?.EVSEIsolationStatus ?? '?'}, ${res.DC_EVSEStatus?.EVSEStatusCode ?? '?'}`;
  },
};

/** EVSEPresentVoltage above the EV's maximum: stop, contactors open at once. */
function overvoltage(ctx: Iso2Ctx, env: StepEnv, presentV: number, where: string): Transition | undefined {
  const max = env.ev.limits.maxVoltageV;
  if (presentV <= max) return undefined;
  return stopWith(iso2Stop('ISO2_EVSE_OVERVOLTAGE', `${where}: EVSEPresentVoltage ${fmt(presentV, 'V')} above the vehicle's maximum ${fmt(max, 'V')}`, { presentVoltageV: presentV, maxVoltageV: max }), openContactors(ctx));
}

export const preCharge: Step<Iso2Ctx> = {
  request: 'PreChargeReq',
  response: 'PreChargeRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  build: (ctx, env) => {
    beginSeries(ctx, 'preCharge', env.now);
    const vMax = Math.min(env.ev.limits.maxVoltageV, ctx.evseDc?.maxVoltageV ?? Infinity);
    const target = Math.min(Math.max(0, env.ev.status().batteryVoltageV), vMax);
    const current = Math.min(ctx.settings.preChargeCurrentA, ctx.evseDc?.maxCurrentA ?? Infinity);
    ctx.preChargeTargetV = target;
    return {
      body: { PreChargeReq: { DC_EVStatus: dcEvStatus(env), EVTargetVoltage: pvAtMost(target, 'V'), EVTargetCurrent: pvAtMost(current, 'A') } },
      summary: `target ${fmt(target, 'V')} ${fmt(current, 'A')}`,
    };
  },
  check: checkPreChargeRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Iso2.PreChargeResType;
    const present = si(res.EVSEPresentVoltage)!;
    ctx.present = { voltageV: present };
    const danger = overvoltage(ctx, env, present, 'PreChargeRes');
    if (danger) return danger;
    const stop = evseStatusStop(ctx, res.DC_EVSEStatus, 'PreChargeRes');
    if (stop) return stop;
    const target = ctx.preChargeTargetV!;
    const tolerance = ctx.settings.preChargeToleranceV;
    // The contactors close next, across EVSE output minus battery voltage: compare with the battery itself, not the
    // target (an EVSE maximum below the battery caps the target, and reaching it would close across the difference).
    const battery = env.ev.status().batteryVoltageV;
    if (Math.abs(present - battery) <= tolerance) return next('powerDeliveryStart', { why: `EVSE output ${fmt(present, 'V')} within ${tolerance} V of the battery's ${fmt(battery, 'V')}` });
    return repeatWithin(ctx, env, {
      total: ISO2_TIMERS.preCharge, pacing: PACING.preChargeRepeat, code: 'ISO2_PRECHARGE_TIMEOUT',
      what: `PreCharge: EVSE output ${fmt(present, 'V')}, battery ${fmt(battery, 'V')}${target < battery - tolerance ? ` (target capped at ${fmt(target, 'V')} by the EVSE maximum)` : ''} (tolerance ${tolerance} V)`,
      details: { presentVoltageV: present, targetVoltageV: target, batteryVoltageV: battery, toleranceV: tolerance },
    });
  },
  summarize: (res) => `present ${fmtPv(res.EVSEPresentVoltage, 'V')}`,
};

/**
 * What the EV asks for in CurrentDemandReq: the BMS's targets, never above the vehicle's limits nor the EVSE's
 * maxima (voltage, current, and the power limits of both at the requested voltage). Pure, for the property test.
 */
export function dcTargets(limits: EvLimits, status: Pick<EvStatus, 'targetVoltageV' | 'targetCurrentA'>, evse: Pick<EvseDcLimits, 'maxVoltageV' | 'maxCurrentA' | 'maxPowerW'> | undefined): { voltageV: number; currentA: number } {
  const finite = (v: number) => (Number.isFinite(v) ? v : 0);
  const vMax = Math.min(limits.maxVoltageV, evse?.maxVoltageV ?? Infinity);
  const voltageV = Math.max(0, Math.min(finite(status.targetVoltageV), vMax));
  const pMax = Math.min(limits.maxPowerW, evse?.maxPowerW ?? Infinity);
  const byPower = voltageV > 0 ? pMax / voltageV : Infinity;
  const currentA = Math.max(0, Math.min(finite(status.targetCurrentA), limits.maxCurrentA, evse?.maxCurrentA ?? Infinity, byPower));
  return { voltageV, currentA };
}

function remaining(seconds: number | undefined, unit: 's'): Iso2.PhysicalValueType | undefined {
  return seconds === undefined || !Number.isFinite(seconds) ? undefined : pvAtMost(seconds, unit);
}

export const currentDemand: Step<Iso2Ctx> = {
  request: 'CurrentDemandReq',
  response: 'CurrentDemandRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgCurrentDemand),
  build: (ctx, env) => {
    const s = env.ev.status();
    const l = env.ev.limits;
    const t = dcTargets(l, s, ctx.evseDc);
    ctx.lastTarget = t;
    const full = remaining(s.remainingTimeToFullSocS, 's');
    const bulk = remaining(s.remainingTimeToBulkSocS, 's');
    const body: Iso2.CurrentDemandReqType = {
      DC_EVStatus: dcEvStatus(env),
      EVTargetCurrent: pvAtMost(t.currentA, 'A'),
      EVMaximumVoltageLimit: pvAtMost(l.maxVoltageV, 'V'),
      EVMaximumCurrentLimit: pvAtMost(l.maxCurrentA, 'A'),
      EVMaximumPowerLimit: pvAtMost(l.maxPowerW, 'W'),
      BulkChargingComplete: s.bulkChargingComplete ? 1 : 0,
      ChargingComplete: s.chargingComplete ? 1 : 0,
      ...(full ? { RemainingTimeToFullSoC: full } : {}),
      ...(bulk ? { RemainingTimeToBulkSoC: bulk } : {}),
      EVTargetVoltage: pvAtMost(t.voltageV, 'V'),
    };
    return { body: { CurrentDemandReq: body }, summary: `target ${fmt(t.voltageV, 'V')} ${fmt(t.currentA, 'A')}, SoC ${s.socPercent.toFixed(0)} %` };
  },
  check: checkCurrentDemandRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Iso2.CurrentDemandResType;
    const voltageV = si(res.EVSEPresentVoltage)!;
    const currentA = si(res.EVSEPresentCurrent)!;
    ctx.present = { voltageV, currentA };
    reportEvseOutput(ctx, env, { presentVoltageV: voltageV, presentCurrentA: currentA });
    recordEnergy(ctx, env, 'now');
    // The charger may lower its maxima during the loop; the next request respects the new ones.
    if (ctx.evseDc) {
      const upd = (v: Iso2.PhysicalValueType | undefined, cur: number) => si(v) ?? cur;
      ctx.evseDc = {
        ...ctx.evseDc,
        maxVoltageV: upd(res.EVSEMaximumVoltageLimit, ctx.evseDc.maxVoltageV),
        maxCurrentA: upd(res.EVSEMaximumCurrentLimit, ctx.evseDc.maxCurrentA),
        maxPowerW: upd(res.EVSEMaximumPowerLimit, ctx.evseDc.maxPowerW),
      };
    }
    const danger = overvoltage(ctx, env, voltageV, 'CurrentDemandRes');
    if (danger) return danger;
    const stop = evseStatusStop(ctx, res.DC_EVSEStatus, 'CurrentDemandRes');
    if (stop) return stop;
    if (renegotiationAsked(res.DC_EVSEStatus)) return next('powerDeliveryRenegotiate', { why: 'EVSENotification=ReNegotiation' });
    const ev = evLoopDecision(ctx, env);
    if (ev) return ev;
    return meteringReceiptIfRequired(ctx, env, res.ReceiptRequired === 1, res.MeterInfo) ?? repeat(msOf(ctx, env, PACING.currentDemandInterval));
  },
  summarize: (r) => {
    const res = r as unknown as Partial<Iso2.CurrentDemandResType>;
    const flags = [res.EVSECurrentLimitAchieved ? 'I-limit' : '', res.EVSEVoltageLimitAchieved ? 'U-limit' : '', res.EVSEPowerLimitAchieved ? 'P-limit' : ''].filter(Boolean);
    return `present ${fmtPv(res.EVSEPresentVoltage, 'V')} ${fmtPv(res.EVSEPresentCurrent, 'A')}${flags.length ? ` (${flags.join(', ')})` : ''}`;
  },
};
