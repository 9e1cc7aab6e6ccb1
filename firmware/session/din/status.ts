/**
 * What the charger's DC_EVSEStatus, its present voltage and the vehicle's own status mean for the session, and the
 * one place that decides what we request: never more than the EV's limits nor the EVSE's maxima.
 */
import type { Din } from '../../exi/index.ts';
import type { StepEnv, StopReason } from '../exchange.ts';
import type { DinCtx } from './context.ts';
import { dinStop } from './errors.ts';
import { fmt } from './values.ts';

/** A DC_EVSEStatus that ends the session, as a typed reason (undefined: carry on). */
export function evseStatusStop(status: Din.DC_EVSEStatusType | undefined, where: string): StopReason | undefined {
  if (!status) return undefined;
  const d = { message: where, evseStatusCode: status.EVSEStatusCode, evseNotification: status.EVSENotification, isolation: status.EVSEIsolationStatus };
  switch (status.EVSEStatusCode) {
    case 'EVSE_EmergencyShutdown':
      return dinStop('DIN_EVSE_EMERGENCY_SHUTDOWN', `${where}: EVSE_EmergencyShutdown`, d);
    case 'EVSE_Malfunction':
      return dinStop('DIN_EVSE_MALFUNCTION', `${where}: EVSE_Malfunction`, d);
    case 'EVSE_Shutdown':
      return dinStop('DIN_EVSE_SHUTDOWN', `${where}: EVSE_Shutdown (the charger ends the session)`, d);
    case 'EVSE_UtilityInterruptEvent':
      return dinStop('DIN_EVSE_UTILITY_INTERRUPT', `${where}: EVSE_UtilityInterruptEvent`, d);
    default:
      break;
  }
  if (status.EVSEIsolationStatus === 'Fault') return dinStop('DIN_ISOLATION_FAULT', `${where}: EVSEIsolationStatus=Fault`, d);
  if (status.EVSENotification === 'StopCharging') return dinStop('DIN_EVSE_STOP_CHARGING', `${where}: EVSENotification=StopCharging`, d);
  return undefined;
}

/** EVSEPresentVoltage above the EV's maximum (+ the configured margin). */
export function overvoltage(ctx: DinCtx, env: StepEnv, presentV: number, where: string): StopReason | undefined {
  const max = env.ev.limits.maxVoltageV;
  if (presentV <= max + ctx.settings.overvoltageMarginV) return undefined;
  return dinStop('DIN_EVSE_OVERVOLTAGE', `${where}: EVSEPresentVoltage ${fmt(presentV, 'V')} above EVMaximumVoltageLimit ${fmt(max, 'V')}`,
    { message: where, presentVoltageV: presentV, evMaxVoltageV: max, marginV: ctx.settings.overvoltageMarginV });
}

/**
 * The vehicle's own reasons to stop. Before energy transfer: an error or a stop request; in the loop also a full
 * battery. DIN SPEC 70121 has no pause: a pause request ends the session.
 */
export function evStop(env: StepEnv, o: { inLoop: boolean }): StopReason | undefined {
  const s = env.ev.status();
  if (s.errorCode !== 'NO_ERROR' && s.errorCode !== 'NoData') return dinStop('DIN_EV_ERROR', `the vehicle reports ${s.errorCode}`, { evErrorCode: s.errorCode });
  if (s.stopRequested) return dinStop('DIN_EV_STOP_REQUESTED', 'the vehicle asks to stop');
  if (s.pauseRequested) return dinStop('DIN_EV_STOP_REQUESTED', 'the vehicle asks to pause: DIN SPEC 70121 has no pause, the session ends', { pauseRequested: true });
  if (o.inLoop && s.chargingComplete) return dinStop('DIN_EV_CHARGING_COMPLETE', `the vehicle is full (SoC ${s.socPercent.toFixed(0)} %)`, { socPercent: s.socPercent });
  return undefined;
}

const finiteOr = (v: number | undefined, fallback: number): number => (v !== undefined && Number.isFinite(v) ? v : fallback);

/**
 * EVTargetVoltage and EVTargetCurrent of the next CurrentDemandReq: what the BMS asks for, at most the EV's and the
 * EVSE's maximum voltage and current, and a current whose power at the target voltage fits both maximum powers.
 * Never negative. (Rounding to the PhysicalValue is downward too: values.ts pvAtMost.)
 */
export function demand(ctx: DinCtx, env: StepEnv): { voltageV: number; currentA: number } {
  const l = env.ev.limits;
  const s = env.ev.status();
  const evse = ctx.evse;
  const voltageV = Math.max(0, Math.min(finiteOr(s.targetVoltageV, 0), l.maxVoltageV, finiteOr(evse?.maxVoltageV, Infinity)));
  let currentA = Math.max(0, Math.min(finiteOr(s.targetCurrentA, 0), l.maxCurrentA, finiteOr(evse?.maxCurrentA, Infinity)));
  if (voltageV > 0) {
    const maxPowerW = Math.min(l.maxPowerW, finiteOr(evse?.maxPowerW, Infinity));
    currentA = Math.min(currentA, maxPowerW / voltageV);
  }
  return { voltageV, currentA: Math.max(0, currentA) };
}

/** PreCharge target: the battery voltage, at most the EV's and the EVSE's maximum voltage. */
export function preChargeTarget(ctx: DinCtx, env: StepEnv): number {
  const s = env.ev.status();
  return Math.max(0, Math.min(finiteOr(s.batteryVoltageV, 0), env.ev.limits.maxVoltageV, finiteOr(ctx.evse?.maxVoltageV, Infinity)));
}
