/**
 * Error codes of the DIN SPEC 70121 EV-side module. Stable: bench logs, HIL reports and the OEM backend match on them.
 *
 * Raised by the session engine with this module's prefix (firmware/session/engine.ts), for every exchange:
 * - DIN_TIMEOUT               no response within V2G_EVCC_Msg_Timeout (details: message, timer)
 * - DIN_RESPONSE_FAILED       a FAILED* ResponseCode (details: message, responseCode)
 * - DIN_INVALID_RESPONSE      a field the state relies on is missing or invalid (details: message, field — the path
 *                             checks.ts names, e.g. `DC_EVSEChargeParameter.EVSEMaximumVoltageLimit`)
 * - DIN_UNEXPECTED_MESSAGE    another message than the awaited response, or an unsolicited one
 * - DIN_DECODE_FAILED         the response is not DIN EXI
 * - DIN_SESSION_ID_MISMATCH   a response carries another SessionID than the one SessionSetupRes gave
 * The engine's own: SESSION_CHANNEL_CLOSED (TCP reset / FIN, never in order), SESSION_STOP_REQUESTED,
 * SESSION_EFFECT_TIMEOUT / SESSION_EFFECT_UNAVAILABLE (S2, contactors), SESSION_ENCODE_FAILED.
 *
 * Raised by this module, each a stop in order (PowerDelivery(false) → WeldingDetection → SessionStop once
 * PowerDeliveryReq(ReadyToChargeState=true) went out, else SessionStop): the table below.
 */
import { EvccError } from '../../../core/errors.ts';
import type { StopReason } from '../exchange.ts';

export const DIN_ERRORS = {
  /** SessionSetupRes assigned no usable SessionID (header absent, not hex, or all-zero). */
  DIN_SESSION_ID_INVALID: { failure: true },
  /** EVSEProcessing stayed Ongoing (ContractAuthentication, ChargeParameterDiscovery) beyond V2G_EVCC_Ongoing_Timeout. */
  DIN_ONGOING_TIMEOUT: { failure: true },
  /** Plug-in to PowerDeliveryReq(ReadyToChargeState=true) took longer than V2G_EVCC_ReadyToCharge_Timeout. */
  DIN_READY_TO_CHARGE_TIMEOUT: { failure: true },
  /** CableCheck did not finish (Finished, isolation not Invalid) within V2G_EVCC_CableCheck_Timeout. */
  DIN_CABLE_CHECK_TIMEOUT: { failure: true },
  /** The EVSE output did not come within the tolerance of the battery voltage within V2G_EVCC_PreCharge_Timeout. */
  DIN_PRECHARGE_TIMEOUT: { failure: true },
  /** EVSEIsolationStatus=Fault: the cable is not safe to energise. */
  DIN_ISOLATION_FAULT: { failure: true },
  /** EVSEStatusCode=EVSE_EmergencyShutdown. */
  DIN_EVSE_EMERGENCY_SHUTDOWN: { failure: true },
  /** EVSEStatusCode=EVSE_Malfunction (ccs32clara: seen when a voltage limit was hit). */
  DIN_EVSE_MALFUNCTION: { failure: true },
  /** EVSEStatusCode=EVSE_Shutdown: the charger ends the session (stop button at a Compleo charger): a normal end. */
  DIN_EVSE_SHUTDOWN: { failure: false },
  /** EVSEStatusCode=EVSE_UtilityInterruptEvent: the grid operator interrupts: a normal end. */
  DIN_EVSE_UTILITY_INTERRUPT: { failure: false },
  /** EVSENotification=StopCharging: the charger asks the EV to stop: a normal end. */
  DIN_EVSE_STOP_CHARGING: { failure: false },
  /** EVSEPresentVoltage above the EV's maximum voltage (+ `overvoltageMarginV`). */
  DIN_EVSE_OVERVOLTAGE: { failure: true },
  /** The vehicle reports an error (EVErrorCode other than NO_ERROR / NoData). */
  DIN_EV_ERROR: { failure: true },
  /** The driver or the vehicle asks to stop (a pause request too: DIN SPEC 70121 has no pause): a normal end. */
  DIN_EV_STOP_REQUESTED: { failure: false },
  /** The vehicle is full (ChargingComplete): a normal end. */
  DIN_EV_CHARGING_COMPLETE: { failure: false },
} as const satisfies Record<string, { failure: boolean }>;

export type DinStopCode = keyof typeof DIN_ERRORS;
export type DinErrorCode = DinStopCode
  | 'DIN_TIMEOUT' | 'DIN_RESPONSE_FAILED' | 'DIN_INVALID_RESPONSE' | 'DIN_UNEXPECTED_MESSAGE' | 'DIN_DECODE_FAILED' | 'DIN_SESSION_ID_MISMATCH';

export class DinError extends EvccError<DinErrorCode> {
  override readonly name = 'DinError';
}

/** A stop reason of this module, with the failure flag declared above. */
export function dinStop(code: DinStopCode, message: string, details?: Record<string, unknown>): StopReason {
  return { code, message, failure: DIN_ERRORS[code].failure, ...(details ? { details } : {}) };
}
