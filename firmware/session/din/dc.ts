/**
 * ChargeParameterDiscovery (repeat while Ongoing) → CableCheck (S2 closed first; repeat while Ongoing or the
 * isolation is not yet valid) → PreCharge (until the EVSE output is within tolerance of the battery voltage) →
 * contactors closed → PowerDelivery(ReadyToChargeState=true) → CurrentDemand loop.
 *
 * Where the contactors close: after PreCharge and before PowerDeliveryReq(true). PreCharge brings the charger's
 * output to the battery voltage with its current held at ≤ 2 A, so closing then switches (almost) no current; and it
 * must happen before PowerDeliveryReq(true), because after PowerDeliveryRes the charger may deliver the first
 * CurrentDemand current at once — into open contactors, or through contactors that close under load. The field
 * stacks do the same (ccs32clara closes the relay once |inlet − battery| is small, then sends PowerDeliveryReq), and
 * a charger answers FAILED_PowerDeliveryNotApplied when the contactors are to close across ~20 V.
 */
import type { Din } from '../../exi/index.ts';
import { next, repeat, type Step } from '../exchange.ts';
import { checkCableCheckRes, checkChargeParameterDiscoveryRes, checkCurrentDemandRes, checkPowerDeliveryRes, checkPreChargeRes } from './checks.ts';
import {
  beginSeries, closeContactors, closeS2, dcEvStatus, msOf, readyToChargeExpired, recordEnergy, repeatWithin, reportEvseOutput, stopInOrder, timer,
  type DinCtx, type EvseDcLimits,
} from './context.ts';
import { demand, evseStatusStop, evStop, overvoltage, preChargeTarget } from './status.ts';
import { DIN_PACING, DIN_TIMERS } from './timers.ts';
import { fmt, fmtPv, pv, pvAtMost, si } from './values.ts';

function dcChargeParameter(ctx: DinCtx, env: Parameters<Step<DinCtx>['build']>[1]): Din.DC_EVChargeParameterType {
  const l = env.ev.limits;
  const s = env.ev.status();
  return {
    DC_EVStatus: dcEvStatus(ctx, env),
    EVMaximumCurrentLimit: pvAtMost(l.maxCurrentA, 'A'),
    EVMaximumPowerLimit: pvAtMost(l.maxPowerW, 'W'),
    EVMaximumVoltageLimit: pvAtMost(l.maxVoltageV, 'V'),
    EVEnergyCapacity: pv(Math.max(0, l.energyCapacityWh), 'Wh'),
    EVEnergyRequest: pv(Math.max(0, s.energyRequestWh), 'Wh'),
    FullSOC: Math.round(Math.min(100, Math.max(0, l.fullSocPercent))),
    BulkSOC: Math.round(Math.min(100, Math.max(0, l.bulkSocPercent))),
  };
}

function evseLimits(cp: Din.DC_EVSEChargeParameterType): EvseDcLimits {
  const opt = (k: keyof EvseDcLimits, p: Din.PhysicalValueType | undefined) => (p === undefined ? {} : { [k]: si(p)! });
  return {
    maxVoltageV: si(cp.EVSEMaximumVoltageLimit)!,
    maxCurrentA: si(cp.EVSEMaximumCurrentLimit)!,
    minVoltageV: si(cp.EVSEMinimumVoltageLimit)!,
    minCurrentA: si(cp.EVSEMinimumCurrentLimit)!,
    peakCurrentRippleA: si(cp.EVSEPeakCurrentRipple)!,
    ...opt('maxPowerW', cp.EVSEMaximumPowerLimit),
    ...opt('currentRegulationToleranceA', cp.EVSECurrentRegulationTolerance),
    ...opt('energyToBeDeliveredWh', cp.EVSEEnergyToBeDelivered),
  };
}

export const chargeParameterDiscovery: Step<DinCtx> = {
  request: 'ChargeParameterDiscoveryReq',
  response: 'ChargeParameterDiscoveryRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgChargeParameterDiscovery),
  build: (ctx, env) => {
    beginSeries(ctx, 'chargeParameterDiscovery', env.now);
    ctx.requestedTransferType = ctx.settings.energyTransferType;
    const cp = dcChargeParameter(ctx, env);
    return {
      body: { ChargeParameterDiscoveryReq: { EVRequestedEnergyTransferType: ctx.settings.energyTransferType, DC_EVChargeParameter: cp } },
      summary: `${ctx.settings.energyTransferType}, EV max ${fmtPv(cp.EVMaximumVoltageLimit, 'V')} ${fmtPv(cp.EVMaximumCurrentLimit, 'A')} ${fmtPv(cp.EVMaximumPowerLimit, 'W')}, SoC ${cp.DC_EVStatus.EVRESSSOC} %`,
    };
  },
  check: checkChargeParameterDiscoveryRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Din.ChargeParameterDiscoveryResType;
    const stop = evseStatusStop(res.DC_EVSEChargeParameter?.DC_EVSEStatus, 'ChargeParameterDiscoveryRes') ?? evStop(env, { inLoop: false });
    if (stop) return stopInOrder(ctx, env, stop);
    if (res.EVSEProcessing === 'Ongoing') {
      return readyToChargeExpired(ctx, env)
        ?? repeatWithin(ctx, env, { total: DIN_TIMERS.ongoing, pacing: DIN_PACING.ongoingRepeat, code: 'DIN_ONGOING_TIMEOUT', what: 'ChargeParameterDiscovery: EVSEProcessing=Ongoing', details: { message: 'ChargeParameterDiscoveryRes' } });
    }
    const evse = evseLimits(res.DC_EVSEChargeParameter!);
    ctx.evse = evse;
    const battery = env.ev.status().batteryVoltageV;
    if (battery > evse.maxVoltageV || battery < evse.minVoltageV) {
      env.note('warn', `the charger's voltage range ${fmt(evse.minVoltageV, 'V')}–${fmt(evse.maxVoltageV, 'V')} does not include the battery's ${fmt(battery, 'V')}: PreCharge will not converge`, { battery, ...evse });
    }
    return next('cableCheck', { why: 'charge parameters discovered' });
  },
  summarize: (r) => {
    const res = r as unknown as Partial<Din.ChargeParameterDiscoveryResType>;
    const cp = res.DC_EVSEChargeParameter;
    if (res.EVSEProcessing !== 'Finished' || !cp) return String(res.EVSEProcessing);
    return `Finished, EVSE max ${fmtPv(cp.EVSEMaximumVoltageLimit, 'V')} ${fmtPv(cp.EVSEMaximumCurrentLimit, 'A')}${cp.EVSEMaximumPowerLimit ? ` ${fmtPv(cp.EVSEMaximumPowerLimit, 'W')}` : ''}, min ${fmtPv(cp.EVSEMinimumVoltageLimit, 'V')} ${fmtPv(cp.EVSEMinimumCurrentLimit, 'A')}`;
  },
};

export const cableCheck: Step<DinCtx> = {
  request: 'CableCheckReq',
  response: 'CableCheckRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgCableCheck),
  // S2 closed (state C) before the first CableCheckReq: the charger energises the cable only in state C.
  before: (ctx) => closeS2(ctx),
  build: (ctx, env) => {
    beginSeries(ctx, 'cableCheck', env.now);
    return { body: { CableCheckReq: { DC_EVStatus: dcEvStatus(ctx, env) } }, ...(ctx.series!.requests > 1 ? { summary: `#${ctx.series!.requests}` } : {}) };
  },
  check: checkCableCheckRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Din.CableCheckResType;
    const stop = evseStatusStop(res.DC_EVSEStatus, 'CableCheckRes') ?? evStop(env, { inLoop: false });
    if (stop) return stopInOrder(ctx, env, stop);
    const isolation = res.DC_EVSEStatus.EVSEIsolationStatus;
    ctx.isolation = isolation;
    if (res.EVSEProcessing === 'Finished' && isolation !== 'Invalid') {
      if (isolation === 'Warning') env.note('warn', 'CableCheck finished with EVSEIsolationStatus=Warning: charging continues, the isolation is degraded');
      // An optional element: some chargers never send it, and their Finished is the whole answer.
      if (isolation === undefined) env.note('info', 'CableCheck finished without EVSEIsolationStatus: taking Finished as the result');
      return next('preCharge', { why: `cable check ${isolation ?? 'finished'}` });
    }
    return readyToChargeExpired(ctx, env)
      ?? repeatWithin(ctx, env, { total: DIN_TIMERS.cableCheck, pacing: DIN_PACING.cableCheckRepeat, code: 'DIN_CABLE_CHECK_TIMEOUT', what: `CableCheck: EVSEProcessing=${res.EVSEProcessing}, isolation ${isolation ?? 'not reported'}`, details: { message: 'CableCheckRes', isolation } });
  },
  summarize: (r) => {
    const res = r as unknown as Partial<Din.CableCheckResType>;
    return `${String(res.EVSEProcessing)}, ${String(res.DC_EVSEStatus?.EVSEStatusCode)}, isolation ${res.DC_EVSEStatus?.EVSEIsolationStatus ?? 'not reported'}`;
  },
};

export const preCharge: Step<DinCtx> = {
  request: 'PreChargeReq',
  response: 'PreChargeRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgPreCharge),
  build: (ctx, env) => {
    beginSeries(ctx, 'preCharge', env.now);
    const target = pvAtMost(preChargeTarget(ctx, env), 'V');
    const current = pvAtMost(Math.min(ctx.settings.preChargeCurrentA, env.ev.limits.maxCurrentA, ctx.evse?.maxCurrentA ?? Infinity), 'A');
    return { body: { PreChargeReq: { DC_EVStatus: dcEvStatus(ctx, env), EVTargetVoltage: target, EVTargetCurrent: current } }, summary: `target ${fmtPv(target, 'V')} ${fmtPv(current, 'A')}` };
  },
  check: checkPreChargeRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Din.PreChargeResType;
    const present = si(res.EVSEPresentVoltage)!;
    ctx.present = { voltageV: present };
    reportEvseOutput(ctx, env, { presentVoltageV: present, presentCurrentA: 0 });
    const stop = evseStatusStop(res.DC_EVSEStatus, 'PreChargeRes') ?? overvoltage(ctx, env, present, 'PreChargeRes') ?? evStop(env, { inLoop: false });
    if (stop) return stopInOrder(ctx, env, stop);
    const battery = env.ev.status().batteryVoltageV;
    const tolerance = ctx.settings.preChargeToleranceV;
    if (Math.abs(present - battery) <= tolerance) {
      return next('powerDeliveryStart', { effects: closeContactors(ctx), why: `EVSE output ${fmt(present, 'V')} within ${tolerance} V of the battery's ${fmt(battery, 'V')}: contactors close` });
    }
    return readyToChargeExpired(ctx, env)
      ?? repeatWithin(ctx, env, { total: DIN_TIMERS.preCharge, pacing: DIN_PACING.preChargeRepeat, code: 'DIN_PRECHARGE_TIMEOUT', what: `PreCharge: EVSE output ${fmt(present, 'V')}, battery ${fmt(battery, 'V')}`, details: { message: 'PreChargeRes', presentVoltageV: present, batteryVoltageV: battery, toleranceV: tolerance } });
  },
  summarize: (r) => `present ${fmtPv(r.EVSEPresentVoltage, 'V')}`,
};

/** DC_EVPowerDeliveryParameter of both PowerDeliveryReqs. */
export function powerDeliveryBody(ctx: DinCtx, env: Parameters<Step<DinCtx>['build']>[1], ready: boolean): Din.PowerDeliveryReqType {
  const s = env.ev.status();
  return {
    ReadyToChargeState: ready ? 1 : 0,
    DC_EVPowerDeliveryParameter: {
      DC_EVStatus: dcEvStatus(ctx, env),
      // Optional, but sent: one charger ignores a PowerDeliveryReq without it (ccs32clara field note).
      BulkChargingComplete: s.bulkChargingComplete ? 1 : 0,
      ChargingComplete: s.chargingComplete ? 1 : 0,
    },
  };
}

export const powerDeliveryStart: Step<DinCtx> = {
  request: 'PowerDeliveryReq',
  response: 'PowerDeliveryRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgPowerDelivery),
  build: (ctx, env) => {
    ctx.powerDeliveryRequested = true;
    return { body: { PowerDeliveryReq: powerDeliveryBody(ctx, env, true) }, summary: 'ReadyToChargeState=true' };
  },
  check: checkPowerDeliveryRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Din.PowerDeliveryResType;
    const stop = evseStatusStop(res.DC_EVSEStatus, 'PowerDeliveryRes') ?? evStop(env, { inLoop: true });
    if (stop) return stopInOrder(ctx, env, stop);
    recordEnergy(ctx, env, 'start');
    return next('currentDemand', { why: 'energy transfer' });
  },
  summarize: (r) => `${String(r.ResponseCode)}${(r.DC_EVSEStatus as Din.DC_EVSEStatusType | undefined) ? `, ${(r.DC_EVSEStatus as Din.DC_EVSEStatusType).EVSEStatusCode}` : ''}`,
};

export const currentDemand: Step<DinCtx> = {
  request: 'CurrentDemandReq',
  response: 'CurrentDemandRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgCurrentDemand),
  build: (ctx, env) => {
    const l = env.ev.limits;
    const s = env.ev.status();
    const target = demand(ctx, env);
    const voltage = pvAtMost(target.voltageV, 'V');
    const current = pvAtMost(target.currentA, 'A');
    ctx.lastTarget = { voltageV: si(voltage)!, currentA: si(current)! };
    ctx.currentDemands++;
    const body: Din.CurrentDemandReqType = {
      DC_EVStatus: dcEvStatus(ctx, env),
      EVTargetCurrent: current,
      // Optional, but sent: a 'Plugit HUBE S' charger does not charge without them (ccs32clara field note).
      EVMaximumVoltageLimit: pvAtMost(l.maxVoltageV, 'V'),
      EVMaximumCurrentLimit: pvAtMost(l.maxCurrentA, 'A'),
      EVMaximumPowerLimit: pvAtMost(l.maxPowerW, 'W'),
      BulkChargingComplete: s.bulkChargingComplete ? 1 : 0,
      ChargingComplete: s.chargingComplete ? 1 : 0,
      ...(s.remainingTimeToFullSocS !== undefined && s.remainingTimeToFullSocS >= 0 ? { RemainingTimeToFullSoC: pv(s.remainingTimeToFullSocS, 's') } : {}),
      ...(s.remainingTimeToBulkSocS !== undefined && s.remainingTimeToBulkSocS >= 0 ? { RemainingTimeToBulkSoC: pv(s.remainingTimeToBulkSocS, 's') } : {}),
      EVTargetVoltage: voltage,
    };
    return { body: { CurrentDemandReq: body }, summary: `target ${fmtPv(voltage, 'V')} ${fmtPv(current, 'A')}, SoC ${body.DC_EVStatus.EVRESSSOC} %` };
  },
  check: checkCurrentDemandRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Din.CurrentDemandResType;
    const presentV = si(res.EVSEPresentVoltage)!;
    const presentA = si(res.EVSEPresentCurrent)!;
    ctx.present = { voltageV: presentV, currentA: presentA };
    reportEvseOutput(ctx, env, { presentVoltageV: presentV, presentCurrentA: presentA });
    // The charger may lower its maxima during the session (derating): the next request respects the new ones.
    if (ctx.evse) {
      const maxV = si(res.EVSEMaximumVoltageLimit);
      const maxA = si(res.EVSEMaximumCurrentLimit);
      const maxW = si(res.EVSEMaximumPowerLimit);
      ctx.evse = { ...ctx.evse, ...(maxV !== undefined ? { maxVoltageV: maxV } : {}), ...(maxA !== undefined ? { maxCurrentA: maxA } : {}), ...(maxW !== undefined ? { maxPowerW: maxW } : {}) };
    }
    recordEnergy(ctx, env, 'now');
    const stop = evseStatusStop(res.DC_EVSEStatus, 'CurrentDemandRes') ?? overvoltage(ctx, env, presentV, 'CurrentDemandRes') ?? evStop(env, { inLoop: true });
    if (stop) return stopInOrder(ctx, env, stop);
    return repeat(msOf(ctx, env, DIN_PACING.currentDemandInterval));
  },
  summarize: (r) => {
    const res = r as unknown as Partial<Din.CurrentDemandResType>;
    const limits = [res.EVSECurrentLimitAchieved ? 'I' : '', res.EVSEVoltageLimitAchieved ? 'U' : '', res.EVSEPowerLimitAchieved ? 'P' : ''].filter(Boolean).join('');
    return `present ${fmtPv(res.EVSEPresentVoltage, 'V')} ${fmtPv(res.EVSEPresentCurrent, 'A')}${limits ? `, limit ${limits}` : ''}${res.DC_EVSEStatus && res.DC_EVSEStatus.EVSEStatusCode !== 'EVSE_Ready' ? `, ${res.DC_EVSEStatus.EVSEStatusCode}` : ''}`;
  },
};
