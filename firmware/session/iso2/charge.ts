/**
 * Steps both DC and AC use: ChargeParameterDiscovery (repeat while Ongoing), PowerDelivery(Start) and
 * PowerDelivery(Renegotiate), and MeteringReceipt (PnC) from either charge loop.
 */
import type { Iso2 } from '../../exi/index.ts';
import { next, type EffectRequest, type Step, type StepEnv, type Transition } from '../exchange.ts';
import { ISO2_TIMERS, PACING } from '../timers.ts';
import { checkChargeParameterDiscoveryRes, checkPowerDeliveryRes } from './checks.ts';
import { asArray, beginSeries, dcEvStatus, isDc, isOngoing, msOf, recordEnergy, repeatWithin, timer, type Iso2Ctx } from './context.ts';
import { evseStatusStop } from './status.ts';
import { fmt, pv, pvAtMost, si } from './values.ts';

/** AC per-phase maximum of the vehicle (EvLimits.acMaxCurrentA where the AC limit differs from DC). */
export function evAcMaxCurrentA(env: StepEnv): number {
  const l = env.ev.limits as StepEnv['ev']['limits'] & { acMaxCurrentA?: number };
  return l.acMaxCurrentA ?? l.maxCurrentA;
}

export const acPhases = (ctx: Iso2Ctx): number => (ctx.mode === 'AC_three_phase_core' ? 3 : 1);

function dcChargeParameter(ctx: Iso2Ctx, env: StepEnv): Iso2.DC_EVChargeParameterType {
  const l = env.ev.limits;
  const s = env.ev.status();
  return {
    ...(ctx.settings.departureTimeS !== undefined ? { DepartureTime: ctx.settings.departureTimeS } : {}),
    DC_EVStatus: dcEvStatus(env),
    EVMaximumCurrentLimit: pvAtMost(l.maxCurrentA, 'A'),
    EVMaximumPowerLimit: pvAtMost(l.maxPowerW, 'W'),
    EVMaximumVoltageLimit: pvAtMost(l.maxVoltageV, 'V'),
    EVEnergyCapacity: pv(l.energyCapacityWh, 'Wh'),
    EVEnergyRequest: pv(s.energyRequestWh, 'Wh'),
    FullSOC: Math.round(Math.min(100, Math.max(0, l.fullSocPercent))),
    BulkSOC: Math.round(Math.min(100, Math.max(0, l.bulkSocPercent))),
  };
}

function acChargeParameter(ctx: Iso2Ctx, env: StepEnv): Iso2.AC_EVChargeParameterType {
  const l = env.ev.limits;
  return {
    ...(ctx.settings.departureTimeS !== undefined ? { DepartureTime: ctx.settings.departureTimeS } : {}),
    EAmount: pv(env.ev.status().energyRequestWh, 'Wh'),
    EVMaxVoltage: pvAtMost(l.maxVoltageV, 'V'),
    EVMaxCurrent: pvAtMost(evAcMaxCurrentA(env), 'A'),
    EVMinCurrent: pv(l.minCurrentA, 'A'),
  };
}

function rememberEvseLimits(ctx: Iso2Ctx, res: Iso2.ChargeParameterDiscoveryResType): void {
  const dc = res.DC_EVSEChargeParameter;
  if (dc) {
    ctx.evseDc = {
      maxVoltageV: si(dc.EVSEMaximumVoltageLimit)!,
      maxCurrentA: si(dc.EVSEMaximumCurrentLimit)!,
      maxPowerW: si(dc.EVSEMaximumPowerLimit)!,
      minVoltageV: si(dc.EVSEMinimumVoltageLimit)!,
      minCurrentA: si(dc.EVSEMinimumCurrentLimit)!,
      peakCurrentRippleA: si(dc.EVSEPeakCurrentRipple)!,
      ...(dc.EVSECurrentRegulationTolerance ? { currentRegulationToleranceA: si(dc.EVSECurrentRegulationTolerance)! } : {}),
      ...(dc.EVSEEnergyToBeDelivered ? { energyToBeDeliveredWh: si(dc.EVSEEnergyToBeDelivered)! } : {}),
    };
  }
  const ac = res.AC_EVSEChargeParameter;
  if (ac) ctx.evseAc = { nominalVoltageV: si(ac.EVSENominalVoltage)!, maxCurrentA: si(ac.EVSEMaxCurrent)! };
}

export const chargeParameterDiscovery: Step<Iso2Ctx> = {
  request: 'ChargeParameterDiscoveryReq',
  response: 'ChargeParameterDiscoveryRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgChargeParameterDiscovery),
  build: (ctx, env) => {
    beginSeries(ctx, 'chargeParameterDiscovery', env.now);
    const dc = isDc(ctx);
    const body: Iso2.ChargeParameterDiscoveryReqType = {
      ...(ctx.settings.maxEntriesSAScheduleTuple !== undefined ? { MaxEntriesSAScheduleTuple: ctx.settings.maxEntriesSAScheduleTuple } : {}),
      RequestedEnergyTransferMode: ctx.mode!,
      ...(dc ? { DC_EVChargeParameter: dcChargeParameter(ctx, env) } : { AC_EVChargeParameter: acChargeParameter(ctx, env) }),
    };
    const l = env.ev.limits;
    const summary = dc
      ? `${ctx.mode}, EV max ${fmt(l.maxVoltageV, 'V')} ${fmt(l.maxCurrentA, 'A')} ${fmt(l.maxPowerW / 1000, 'kW')}, SoC ${env.ev.status().socPercent.toFixed(0)} %`
      : `${ctx.mode}, EAmount ${env.ev.status().energyRequestWh.toFixed(0)} Wh, EV max ${fmt(evAcMaxCurrentA(env), 'A')}`;
    return { body: { ChargeParameterDiscoveryReq: body }, summary: `${summary}${ctx.renegotiating ? ' (renegotiation)' : ''}` };
  },
  check: checkChargeParameterDiscoveryRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Iso2.ChargeParameterDiscoveryResType;
    rememberEvseLimits(ctx, res);
    const stop = evseStatusStop(ctx, res.DC_EVSEChargeParameter?.DC_EVSEStatus ?? res.AC_EVSEChargeParameter?.AC_EVSEStatus, 'ChargeParameterDiscoveryRes');
    if (stop) return stop;
    if (isOngoing(res.EVSEProcessing)) {
      return repeatWithin(ctx, env, { total: ISO2_TIMERS.ongoing, pacing: PACING.ongoingRepeat, code: 'ISO2_ONGOING_TIMEOUT', what: `ChargeParameterDiscovery: EVSEProcessing=${res.EVSEProcessing}` });
    }
    // The SECC lists the tuples by its own preference; we take the first.
    ctx.tuple = asArray(res.SAScheduleList!.SAScheduleTuple)[0];
    if (ctx.renegotiating) return next('powerDeliveryStart', { why: 'renegotiated: no CableCheck/PreCharge again' });
    return next(isDc(ctx) ? 'cableCheck' : 'powerDeliveryStart');
  },
  summarize: (r) => {
    const res = r as unknown as Partial<Iso2.ChargeParameterDiscoveryResType>;
    const dc = res.DC_EVSEChargeParameter;
    const ac = res.AC_EVSEChargeParameter;
    const limits = dc
      ? `EVSE max ${fmt(si(dc.EVSEMaximumVoltageLimit), 'V')} ${fmt(si(dc.EVSEMaximumCurrentLimit), 'A')} ${fmt((si(dc.EVSEMaximumPowerLimit) ?? NaN) / 1000, 'kW')}`
      : ac ? `EVSE ${fmt(si(ac.EVSENominalVoltage), 'V')} max ${fmt(si(ac.EVSEMaxCurrent), 'A')}` : 'no EVSE charge parameters';
    const tuples = asArray(res.SAScheduleList?.SAScheduleTuple).length;
    return `${String(res.EVSEProcessing)}, ${limits}${tuples ? `, ${tuples} SAScheduleTuple(s)` : ''}`;
  },
};

/**
 * The EV's charging profile within the chosen tuple: the schedule's PMax steps (at most 24, the schema's bound),
 * each capped at what the vehicle can take. SECCs check the profile against the schedule
 * (FAILED_ChargingProfileInvalid), so it never exceeds a PMax.
 */
function chargingProfile(ctx: Iso2Ctx, env: StepEnv): Iso2.ChargingProfileType | undefined {
  const evMaxW = isDc(ctx) ? env.ev.limits.maxPowerW : (ctx.evseAc?.nominalVoltageV ?? 230) * evAcMaxCurrentA(env) * acPhases(ctx);
  const entries = asArray(ctx.tuple?.PMaxSchedule.PMaxScheduleEntry)
    .filter((e) => e.RelativeTimeInterval !== undefined && si(e.PMax) !== undefined)
    .slice(0, 24)
    .map((e) => ({
      ChargingProfileEntryStart: e.RelativeTimeInterval!.start,
      ChargingProfileEntryMaxPower: pvAtMost(Math.min(si(e.PMax)!, evMaxW), 'W'),
      ...(isDc(ctx) ? {} : { ChargingProfileEntryMaxNumberOfPhasesInUse: acPhases(ctx) }),
    }));
  return entries.length ? { ProfileEntry: entries } : undefined;
}

function dcPowerDeliveryParameter(env: StepEnv): Iso2.DC_EVPowerDeliveryParameterType {
  const s = env.ev.status();
  return { DC_EVStatus: dcEvStatus(env), BulkChargingComplete: s.bulkChargingComplete ? 1 : 0, ChargingComplete: s.chargingComplete ? 1 : 0 };
}

export function powerDeliveryBody(ctx: Iso2Ctx, env: StepEnv, progress: 'Start' | 'Stop' | 'Renegotiate'): Record<string, unknown> {
  const profile = progress === 'Start' ? chargingProfile(ctx, env) : undefined;
  return {
    PowerDeliveryReq: {
      ChargeProgress: progress,
      SAScheduleTupleID: ctx.tuple?.SAScheduleTupleID ?? 1,
      ...(profile ? { ChargingProfile: profile } : {}),
      ...(isDc(ctx) ? { DC_EVPowerDeliveryParameter: dcPowerDeliveryParameter(env) } : {}),
    },
  };
}

export const powerDeliveryStart: Step<Iso2Ctx> = {
  request: 'PowerDeliveryReq',
  response: 'PowerDeliveryRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgPowerDelivery),
  before: (ctx) => {
    const effects: EffectRequest[] = [];
    if (isDc(ctx) && !ctx.contactorsClosed) {
      // DC: close the contactors BEFORE PowerDeliveryReq(Start). PreCharge brought the EVSE output to the battery
      // voltage at a current of ≤ 2 A, and the charger holds it there until this request: that is the moment the
      // contactors can close across a near-zero difference. Once the SECC answers OK it may ramp towards the
      // CurrentDemand targets, and closing then would switch under load. (Field EV controllers do the same: a
      // "wait for contactors closed" state between PreCharge and PowerDelivery.)
      ctx.contactorsClosed = true;
      effects.push({ kind: 'contactors', closed: true });
    }
    if (!isDc(ctx) && !ctx.s2Closed) {
      // AC: state C goes with the first PowerDeliveryReq(Start) (open implementations quote [V2G2-847]: no later
      // than 250 ms after sending it). The engine runs effects before a request only, so S2 closes just before:
      // the SECC sees state C together with the request, and closes its contactor only on both.
      ctx.s2Closed = true;
      effects.push({ kind: 'chargeRequest', closed: true });
      // The vehicle's own relay between inlet and on-board charger closes with state C (no load yet: the SECC
      // closes its contactor only after this request).
      if (!ctx.contactorsClosed) {
        ctx.contactorsClosed = true;
        effects.push({ kind: 'contactors', closed: true });
      }
    }
    return effects;
  },
  build: (ctx, env) => {
    ctx.energyArmed = true;
    return { body: powerDeliveryBody(ctx, env, 'Start'), summary: `Start, SAScheduleTupleID ${ctx.tuple?.SAScheduleTupleID ?? 1}${ctx.renegotiating ? ' (after renegotiation)' : ''}` };
  },
  check: checkPowerDeliveryRes,
  handle: (res, ctx, env) => {
    const stop = evseStatusStop(ctx, (res.DC_EVSEStatus ?? res.AC_EVSEStatus) as never, 'PowerDeliveryRes');
    if (stop) return stop;
    recordEnergy(ctx, env, 'start');
    ctx.renegotiating = false;
    ctx.loopStep = isDc(ctx) ? 'currentDemand' : 'chargingStatus';
    return next(ctx.loopStep, { why: 'energy transfer started' });
  },
  summarize: (res) => String(res.ResponseCode),
};

export const powerDeliveryRenegotiate: Step<Iso2Ctx> = {
  request: 'PowerDeliveryReq',
  response: 'PowerDeliveryRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgPowerDelivery),
  build: (ctx, env) => ({ body: powerDeliveryBody(ctx, env, 'Renegotiate'), summary: `Renegotiate, SAScheduleTupleID ${ctx.tuple?.SAScheduleTupleID ?? 1}` }),
  check: checkPowerDeliveryRes,
  handle: (_res, ctx) => {
    // The contactors (DC) and S2 (AC) stay closed: the charge goes on at the old limits while renegotiating.
    ctx.renegotiating = true;
    ctx.renegotiations++;
    return next('chargeParameterDiscovery', { why: 'renegotiation' });
  },
  summarize: (res) => String(res.ResponseCode),
};

/** Signed by the contract key: the SECC keeps it as the driver's receipt of the metered energy. */
export const meteringReceipt: Step<Iso2Ctx> = {
  request: 'MeteringReceiptReq',
  response: 'MeteringReceiptRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  build: (ctx) => {
    const meter = ctx.pendingReceipt!;
    const element = { MeteringReceiptReq: { Id: 'id1', SessionID: ctx.sessionId!, SAScheduleTupleID: ctx.tuple?.SAScheduleTupleID ?? 1, MeterInfo: meter } };
    return { body: element, sign: { key: 'contract', elements: [element] }, summary: `meter ${meter.MeterID}${meter.MeterReading !== undefined ? ` ${String(meter.MeterReading)} Wh` : ''}` };
  },
  handle: (r, ctx, env) => {
    ctx.receipts++;
    ctx.pendingReceipt = undefined;
    // The answer carries the EVSE status like every loop response: an emergency shutdown here stops the charge too.
    const res = r as unknown as Iso2.MeteringReceiptResType;
    const stop = evseStatusStop(ctx, res.DC_EVSEStatus ?? res.AC_EVSEStatus, 'MeteringReceiptRes');
    if (stop) return stop;
    const interval = ctx.loopStep === 'currentDemand' ? PACING.currentDemandInterval : PACING.chargingStatusInterval;
    return next(ctx.loopStep!, { afterMs: msOf(ctx, env, interval), why: 'metering receipt acknowledged' });
  },
  summarize: (res) => String(res.ResponseCode),
};

/** ReceiptRequired=1 in a loop response: PnC signs a MeteringReceipt next; EIM has no contract key and goes on. */
export function meteringReceiptIfRequired(ctx: Iso2Ctx, env: StepEnv, required: boolean, meter: Iso2.MeterInfoType | undefined): Transition | undefined {
  return required && receiptRequired(ctx, env, meter) ? next('meteringReceipt', { why: 'ReceiptRequired=1' }) : undefined;
}

function receiptRequired(ctx: Iso2Ctx, env: StepEnv, meter: Iso2.MeterInfoType | undefined): boolean {
  if (ctx.payment !== 'Contract') {
    if (ctx.receiptsSkipped++ === 0) env.note('info', 'the SECC asks for a metering receipt: EIM has no contract key to sign one, charging on');
    return false;
  }
  if (!meter) {
    env.note('warn', 'the SECC asks for a metering receipt but sends no MeterInfo: nothing to sign, charging on');
    return false;
  }
  ctx.pendingReceipt = meter;
  return true;
}
