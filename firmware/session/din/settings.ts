/**
 * Config section `session.din`: the DIN SPEC 70121 module's own settings. Defaults are the standard's values where
 * it has one (timers.ts says where each came from), else our documented choice.
 *
 * Timer overrides: `timeouts` and `pacing` are keyed by the `setting` names of DIN_TIMERS and DIN_PACING. They are
 * DIN's alone: the engine-wide `session.timeouts` (ISO-2 keys such as `powerDelivery`) never changes a DIN timer,
 * because ISO-2 and DIN give the same message different values (PowerDelivery: 5 s vs 2 s).
 */
import { z } from 'zod';
import { parseSettings } from '../../settings.ts';
import { DIN_PACING, DIN_TIMERS } from './timers.ts';

const ms = (max: number) => z.number().int().min(1).max(max);
const keys = (reg: Record<string, { setting: string }>) => Object.values(reg).map((x) => x.setting) as [string, ...string[]];
const overrides = (k: [string, ...string[]], max: number) => z.partialRecord(z.enum(k), ms(max)).default({});

/** DIN's EVRequestedEnergyTransferType values for DC (AC ones exist in the schema; DIN is DC only). */
export const DIN_DC_TRANSFER_TYPES = ['DC_extended', 'DC_core', 'DC_combo_core', 'DC_unique'] as const;

export const DinSettings = z.strictObject({
  /** Response and sequence timers (ms) for field chargers that need more than the standard gives. */
  timeouts: overrides(keys(DIN_TIMERS), 600_000),
  /** Our pacing intervals (ms). */
  pacing: overrides(keys(DIN_PACING), 60_000),
  /**
   * SessionID of SessionSetupReq (a new session: zero). The schema's sessionIDType is hexBinary of at most 8 bytes,
   * written here as lowercase hex. Eight zero bytes is what the Hyundai Ioniq sends (as ccs32clara records), and
   * what EVerest's libcbv2g and the OpenChargingCloud conformance vectors carry; one zero byte ('00') is seen in
   * other traces. Both are accepted here.
   */
  newSessionId: z.string().regex(/^(00){1,8}$/, 'one to eight zero bytes as hex').default('0000000000000000'),
  /**
   * EVRequestedEnergyTransferType in ChargeParameterDiscoveryReq. CCS vehicles (Combo 2, e.g. the Ioniq as pyPLC
   * records it) ask for DC_extended.
   */
  energyTransferType: z.enum(DIN_DC_TRANSFER_TYPES).default('DC_extended'),
  /**
   * Send EVCabinConditioning and EVRESSConditioning (both 0) in every DC_EVStatus. Optional in the schema, but a
   * Compleo charger ignores a PowerDeliveryReq without them (ccs32clara / OpenV2Gx field note).
   */
  sendConditioningFlags: z.boolean().default(true),
  /**
   * PreCharge ends when |EVSEPresentVoltage − battery voltage| ≤ this (V). Our choice, 10 V as pyPLC uses: chargers
   * answered PowerDeliveryReq with FAILED_PowerDeliveryNotApplied when the contactors were to close across ~20 V
   * (ccs32clara field note). Raise it for chargers whose voltage accuracy cannot reach this within 7 s.
   */
  preChargeToleranceV: z.number().min(1).max(50).default(10),
  /** EVTargetCurrent during PreCharge (A): only the inlet capacitance is charged; at most 2 A. */
  preChargeCurrentA: z.number().min(0).max(2).default(1),
  /**
   * WeldingDetection ends when EVSEPresentVoltage < this (V). 60 V DC is the touch-safe extra-low-voltage limit;
   * field points: ccs32clara ends at 40 V, the Ioniq already at 65 V.
   */
  weldingSafeVoltageV: z.number().min(1).max(120).default(60),
  /**
   * EVSEPresentVoltage above EVMaximumVoltageLimit + this (V) stops the session (DIN_EVSE_OVERVOLTAGE). Default 0: the
   * EV's maximum is its limit; a bench whose charger overshoots by a measurement step may allow a few volts.
   */
  overvoltageMarginV: z.number().min(0).max(20).default(0),
  /**
   * Refuse a PhysicalValue whose optional Unit contradicts the field (an 'A' in a voltage): DIN_INVALID_RESPONSE
   * naming `<field>.Unit`. Values without Unit are always accepted (DIN's Unit is optional; ISO-2 requires it).
   */
  strictUnits: z.boolean().default(true),
});
export type DinSettings = z.infer<typeof DinSettings>;
export type DinSettingsInput = z.input<typeof DinSettings>;

/** Validates `session.din` (CONFIG_INVALID naming the key otherwise). */
export function parseDinSettings(raw: unknown): DinSettings {
  return parseSettings(DinSettings, raw, 'session.din');
}
