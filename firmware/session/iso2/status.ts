/**
 * What the EVSE status of a response means for the session (DC_EVSEStatus / AC_EVSEStatus), and the charge-loop
 * decisions both loops share (EV stop, pause, EV errors). Safety first: an emergency shutdown or a malfunction
 * opens the contactors at once (not awaited), then the stop path runs in order.
 */
import type { Iso2 } from '../../exi/index.ts';
import { next, stopWith, type StepEnv, type Transition } from '../exchange.ts';
import { openContactors, type Iso2Ctx } from './context.ts';
import { iso2Stop } from './errors.ts';

type AnyStatus = Partial<Iso2.DC_EVSEStatusType> & Partial<Iso2.AC_EVSEStatusType>;

/** A stop the status demands, or undefined. ReNegotiation is the loops' business (see `renegotiationAsked`). */
export function evseStatusStop(ctx: Iso2Ctx, status: AnyStatus | undefined, where: string): Transition | undefined {
  if (!status) return undefined;
  switch (status.EVSEStatusCode) {
    case 'EVSE_EmergencyShutdown':
      return stopWith(iso2Stop('ISO2_EVSE_EMERGENCY_SHUTDOWN', `${where}: EVSE_EmergencyShutdown`), openContactors(ctx));
    case 'EVSE_Malfunction':
      return stopWith(iso2Stop('ISO2_EVSE_MALFUNCTION', `${where}: EVSE_Malfunction`), openContactors(ctx));
    case 'EVSE_Shutdown':
      return stopWith(iso2Stop('ISO2_EVSE_SHUTDOWN', `${where}: EVSE_Shutdown (the charger ends the session)`));
    case 'EVSE_UtilityInterruptEvent':
      return stopWith(iso2Stop('ISO2_EVSE_UTILITY_INTERRUPT', `${where}: EVSE_UtilityInterruptEvent`));
    default:
      break;
  }
  if (status.RCD === 1) return stopWith(iso2Stop('ISO2_EVSE_RCD', `${where}: RCD=1 (residual current detected by the charger)`), openContactors(ctx));
  if (status.EVSENotification === 'StopCharging') {
    return stopWith(iso2Stop('ISO2_EVSE_STOP_CHARGING', `${where}: EVSENotification=StopCharging`, { notificationMaxDelayS: status.NotificationMaxDelay }));
  }
  return undefined;
}

export const renegotiationAsked = (status: AnyStatus | undefined): boolean => status?.EVSENotification === 'ReNegotiation';

/** The EV's own reasons to leave the charge loop: an error (stop), full or the driver's stop (normal end), a pause. */
export function evLoopDecision(ctx: Iso2Ctx, env: StepEnv): Transition | undefined {
  const s = env.ev.status();
  if (s.errorCode !== 'NO_ERROR' && s.errorCode !== 'NoData') {
    return stopWith(iso2Stop('ISO2_EV_ERROR', `the vehicle reports ${s.errorCode}`, { evErrorCode: s.errorCode }), openContactors(ctx));
  }
  // A normal end is the standard's regular sequence (PowerDelivery(Stop) …), not an abnormal stop.
  if (s.chargingComplete) return endTransfer(ctx, 'ev-complete', `the vehicle is full (SoC ${s.socPercent.toFixed(0)} %)`);
  if (s.stopRequested) return endTransfer(ctx, 'ev-stop', 'the driver stops the charge');
  if (s.pauseRequested) {
    ctx.pausing = true;
    return endTransfer(ctx, 'ev-pause', 'the vehicle pauses the session');
  }
  return undefined;
}

function endTransfer(ctx: Iso2Ctx, endedBy: string, why: string): Transition {
  ctx.endedBy = endedBy;
  return next('powerDeliveryStop', { why });
}
