/**
 * Config section `session.iso2`: the ISO 15118-2 module's own settings. Defaults are the standard's values where it
 * has one, else our documented choice (each says which).
 *
 * Timer overrides: `timeouts` and `pacing` are keyed by the `setting` names of ISO2_TIMERS and PACING
 * (firmware/session/timers.ts). Precedence for one timer: `session.timeouts.<key>` (the engine's TimerTable) over
 * `session.iso2.timeouts|pacing.<key>` over the registry value.
 */
import { z } from 'zod';
import { parseSettings } from '../../settings.ts';
import { ISO2_TIMERS, PACING } from '../timers.ts';

export const ENERGY_TRANSFER_MODES = ['DC_extended', 'DC_core', 'DC_combo_core', 'DC_unique', 'AC_three_phase_core', 'AC_single_phase_core'] as const;
export type EnergyTransferMode = (typeof ENERGY_TRANSFER_MODES)[number];
export const isDcMode = (m: EnergyTransferMode | undefined): boolean => m !== undefined && m.startsWith('DC_');

const ms = (max: number) => z.number().int().min(1).max(max);

const timeoutKeys = Object.values(ISO2_TIMERS).map((t) => t.setting!) as [string, ...string[]];
const pacingKeys = Object.values(PACING).map((t) => t.setting!) as [string, ...string[]];
const overrides = (keys: [string, ...string[]], max: number) =>
  z.partialRecord(z.enum(keys), ms(max)).default({});

export const Iso2Settings = z.strictObject({
  /** Response and sequence timers (ms) for field chargers that need more than the standard gives. */
  timeouts: overrides(timeoutKeys, 600_000),
  /** Our pacing intervals (ms). */
  pacing: overrides(pacingKeys, 60_000),
  /**
   * What the vehicle can do, most preferred first: the first one the SECC lists in SupportedEnergyTransferMode is
   * requested. Default: every mode, DC first (a CCS vehicle that charges both ways); narrow it per vehicle.
   */
  energyTransferModes: z.array(z.enum(ENERGY_TRANSFER_MODES)).min(1).default([...ENERGY_TRANSFER_MODES]),
  /**
   * PreCharge ends when |EVSEPresentVoltage − battery voltage| ≤ this (V). Our choice, 20 V: the contactors close
   * across this difference, and only the charger's output capacitance discharges through them (the charger's
   * current is held at the PreCharge current); across a pack of ~0.1–0.2 Ω that is a short pulse the charging
   * contactors tolerate. Tighter values (10 V) make chargers whose voltage accuracy is 1–2 % of a 500–1000 V range
   * run into V2G_EVCC_PreCharge_Timeout.
   */
  preChargeToleranceV: z.number().min(1).max(50).default(20),
  /** EVTargetCurrent during PreCharge (A): the charger only has to charge the inlet capacitance; ≤ 2 A. */
  preChargeCurrentA: z.number().min(0).max(2).default(2),
  /**
   * WeldingDetection ends when EVSEPresentVoltage < this (V). 60 V DC is the touch-safe extra-low-voltage limit the
   * DC charging standards use for the connector; a higher present voltage after our contactors opened means a
   * welded contactor (or a charger that does not discharge its output).
   */
  weldingSafeVoltageV: z.number().min(1).max(120).default(60),
  /** MaxEntriesSAScheduleTuple in ChargeParameterDiscoveryReq; absent: not sent (the SECC's own limit applies). */
  maxEntriesSAScheduleTuple: z.number().int().min(1).max(65_535).optional(),
  /** DepartureTime (s from now) in the charge parameters; absent: not sent. */
  departureTimeS: z.number().int().min(0).max(4_294_967_295).optional(),
  /**
   * PnC: renew the contract (CertificateUpdate) when it expires within this many days. Our choice (the standard
   * leaves the window to the EV); 30 days gives a vehicle charging once a fortnight two chances.
   */
  certificateRenewalDays: z.number().int().min(0).max(365).default(30),
});
export type Iso2Settings = z.infer<typeof Iso2Settings>;
export type Iso2SettingsInput = z.input<typeof Iso2Settings>;

/** Validates `session.iso2` (CONFIG_INVALID naming the key otherwise). */
export function parseIso2Settings(raw: unknown): Iso2Settings {
  return parseSettings(Iso2Settings, raw, 'session.iso2');
}
