/**
 * Error codes of the ISO 15118-2 EV-side module. Stable: bench logs, HIL reports and the OEM backend match on them.
 *
 * Raised by the session engine with this module's prefix (firmware/session/engine.ts), for every exchange:
 * - ISO2_TIMEOUT               no response within V2G_EVCC_Msg_Timeout (details: message, timer)
 * - ISO2_RESPONSE_FAILED       a FAILED* ResponseCode (details: message, responseCode)
 * - ISO2_INVALID_RESPONSE      a mandatory field the state relies on is missing or invalid (details: message, field;
 *                              the fields are those of checks.ts)
 * - ISO2_UNEXPECTED_MESSAGE    another message than the awaited response, or an unsolicited one
 * - ISO2_DECODE_FAILED         the response is not ISO-2 EXI
 * - ISO2_SESSION_ID_MISMATCH   a response carries another SessionID than the one SessionSetupRes gave
 *
 * Raised by this module (each a stop in order through the module's stop path):
 */
import { EvccError } from '../../../core/errors.ts';
import type { StopReason } from '../exchange.ts';

export const ISO2_ERRORS = {
  /** EVSEProcessing stayed Ongoing (Authorization, ChargeParameterDiscovery) longer than V2G_EVCC_Ongoing_Timeout. */
  ISO2_ONGOING_TIMEOUT: { failure: true },
  /** CableCheck did not finish with EVSEIsolationStatus Valid/Warning within V2G_EVCC_CableCheck_Timeout. */
  ISO2_CABLE_CHECK_TIMEOUT: { failure: true },
  /** The EVSE output did not come within the PreCharge tolerance of the battery voltage within V2G_EVCC_PreCharge_Timeout. */
  ISO2_PRECHARGE_TIMEOUT: { failure: true },
  /** CableCheck finished with EVSEIsolationStatus=Fault: the cable is not safe to energise. */
  ISO2_ISOLATION_FAULT: { failure: true },
  /** EVSEStatusCode=EVSE_EmergencyShutdown (contactors are opened at once, then the stop path runs). */
  ISO2_EVSE_EMERGENCY_SHUTDOWN: { failure: true },
  /** EVSEStatusCode=EVSE_Malfunction. */
  ISO2_EVSE_MALFUNCTION: { failure: true },
  /** EVSEStatusCode=EVSE_Shutdown: the charger ends the session (e.g. stop button at the charger): a normal end. */
  ISO2_EVSE_SHUTDOWN: { failure: false },
  /** EVSEStatusCode=EVSE_UtilityInterruptEvent: the grid operator interrupts: a normal end. */
  ISO2_EVSE_UTILITY_INTERRUPT: { failure: false },
  /** EVSENotification=StopCharging: the charger asks the EV to stop: a normal end. */
  ISO2_EVSE_STOP_CHARGING: { failure: false },
  /** EVSEPresentVoltage above the EV's maximum voltage (contactors opened at once). */
  ISO2_EVSE_OVERVOLTAGE: { failure: true },
  /** AC: RCD=1, the charger's residual current device tripped. */
  ISO2_EVSE_RCD: { failure: true },
  /** The vehicle reports an error (EVErrorCode other than NO_ERROR / NoData) during energy transfer. */
  ISO2_EV_ERROR: { failure: true },
  /** No payment option both sides can use (e.g. the SECC offers Contract only, and PnC is not possible here). */
  ISO2_NO_PAYMENT_OPTION: { failure: true },
  /** None of the configured energy transfer modes is among the SECC's SupportedEnergyTransferMode. */
  ISO2_ENERGY_TRANSFER_MODE_UNSUPPORTED: { failure: true },
  /** SessionSetupRes assigned no usable SessionID (absent or all-zero). */
  ISO2_SESSION_ID_INVALID: { failure: true },
  /**
   * The engine handed the step no response header (StepEnv.header: SessionID, Signature): an engine fault, never a
   * charger fault (the engine passes `{}` for a message without one, which is ISO2_SESSION_ID_INVALID).
   */
  ISO2_RESPONSE_HEADER_UNAVAILABLE: { failure: true },
} as const satisfies Record<string, { failure: boolean }>;

export type Iso2ErrorCode = keyof typeof ISO2_ERRORS
  | 'ISO2_TIMEOUT' | 'ISO2_RESPONSE_FAILED' | 'ISO2_INVALID_RESPONSE' | 'ISO2_UNEXPECTED_MESSAGE' | 'ISO2_DECODE_FAILED' | 'ISO2_SESSION_ID_MISMATCH';

export class Iso2Error extends EvccError<Iso2ErrorCode> {
  override readonly name = 'Iso2Error';
}

/** A stop reason of this module, failure flag as declared above. */
export function iso2Stop(code: keyof typeof ISO2_ERRORS, message: string, details?: Record<string, unknown>): StopReason {
  return { code, message, failure: ISO2_ERRORS[code].failure, ...(details ? { details } : {}) };
}
