/**
 * AC: (ChargeParameterDiscovery, PowerDelivery(Start): charge.ts) → ChargingStatus loop [MeteringReceipt].
 */
import type { Iso2 } from '../../exi/index.ts';
import { next, repeat, type Step } from '../exchange.ts';
import { ISO2_TIMERS, PACING } from '../timers.ts';
import { acPhases, evAcMaxCurrentA, meteringReceiptIfRequired } from './charge.ts';
import { checkChargingStatusRes } from './checks.ts';
import { msOf, recordEnergy, reportEvseOutput, timer, type Iso2Ctx } from './context.ts';
import { evLoopDecision, evseStatusStop, renegotiationAsked } from './status.ts';
import { fmtPv, si } from './values.ts';

function meterWh(m: Iso2.MeterInfoType | undefined): number | undefined {
  if (m?.MeterReading === undefined) return undefined;
  return Number(m.MeterReading);
}

export const chargingStatus: Step<Iso2Ctx> = {
  request: 'ChargingStatusReq',
  response: 'ChargingStatusRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  build: (_ctx, env) => ({ body: { ChargingStatusReq: {} }, summary: `SoC ${env.ev.status().socPercent.toFixed(0)} %` }),
  check: checkChargingStatusRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Iso2.ChargingStatusResType;
    const max = si(res.EVSEMaxCurrent);
    if (max !== undefined && ctx.evseAc) ctx.evseAc = { ...ctx.evseAc, maxCurrentA: max };
    const wh = meterWh(res.MeterInfo);
    if (wh !== undefined) {
      ctx.meterStartWh ??= wh;
      ctx.meterLastWh = wh;
    }
    // AC: the SECC reports no present current; the on-board charger draws what both sides allow per phase at the
    // nominal voltage — that is what the vehicle's battery sees (the EV port integrates it).
    if (ctx.evseAc) {
      const perPhaseA = Math.min(ctx.evseAc.maxCurrentA, evAcMaxCurrentA(env));
      const wanted = env.ev.status().targetCurrentA > 0;
      reportEvseOutput(ctx, env, { presentVoltageV: ctx.evseAc.nominalVoltageV, presentCurrentA: wanted ? perPhaseA * acPhases(ctx) : 0 });
    }
    recordEnergy(ctx, env, 'now');
    const stop = evseStatusStop(ctx, res.AC_EVSEStatus, 'ChargingStatusRes');
    if (stop) return stop;
    if (renegotiationAsked(res.AC_EVSEStatus)) return next('powerDeliveryRenegotiate', { why: 'EVSENotification=ReNegotiation' });
    const ev = evLoopDecision(ctx, env);
    if (ev) return ev;
    return meteringReceiptIfRequired(ctx, env, res.ReceiptRequired === 1, res.MeterInfo) ?? repeat(msOf(ctx, env, PACING.chargingStatusInterval));
  },
  summarize: (r) => {
    const res = r as unknown as Partial<Iso2.ChargingStatusResType>;
    const parts = [
      res.EVSEMaxCurrent ? `EVSE max ${fmtPv(res.EVSEMaxCurrent, 'A')}` : '',
      res.MeterInfo?.MeterReading !== undefined ? `meter ${String(res.MeterInfo.MeterReading)} Wh` : '',
      res.ReceiptRequired === 1 ? 'receipt required' : '',
      res.AC_EVSEStatus && res.AC_EVSEStatus.EVSENotification !== 'None' ? res.AC_EVSEStatus.EVSENotification : '',
    ].filter(Boolean);
    return parts.join(', ') || String(res.ResponseCode);
  },
};
