/**
 * DIN SPEC 70121 EVCC timers as data: the same TimerSpec shape as firmware/session/timers.ts (ISO-2's registry), one
 * registry for DIN. We have no copy of the standard's text here: each value was taken from open implementations'
 * constants (read, never copied) and the source says which. Where they disagree the value of the standard's table,
 * as the implementation that cites the table gives it, is the default, and the field value is a named setting.
 *
 * Sources:
 * - Josev (EcoG-io/iso15118) `iso15118/shared/messages/din_spec/timeouts.py`, which cites DIN SPEC 70121 §9.6.2
 *   Table 75 (message timeouts) and §9.6.5.5 Table 77 (sequence timers).
 * - chargebyte's EV-side error codes as listed by a CCS EV controller front-end (SM_*_TIMEOUT: authentication and
 *   ChargeParameterDiscovery Ongoing > 60 s, CableCheck > 40 s, PreCharge > 7 s, plug-in to PowerDelivery > 150 s).
 * - ccs32clara / pyPLC (uhi22), an EV-side DIN stack used against many field chargers: its per-state timeouts are
 *   field relaxations (ChargeParameterDiscovery 5 s, PowerDelivery 6 s, CableCheck and PreCharge 30 s).
 *
 * `setting` is the key under `session.din.timeouts` (TIMERS) or `session.din.pacing` (PACING), see settings.ts.
 */
import type { TimerSpec } from '../timers.ts';

const t = <K extends string>(name: string, ms: number, source: string | undefined, setting: K): TimerSpec & { readonly setting: K } =>
  ({ name, ms, ...(source ? { source } : {}), setting });

const TABLE_75 = 'DIN SPEC 70121 §9.6.2 Table 75 (Josev din_spec/timeouts.py)';
const TABLE_77 = 'DIN SPEC 70121 §9.6.5.5 Table 77 (Josev din_spec/timeouts.py)';

/** V2G_EVCC_Msg_Timeout per message and the sequence timers of the EVCC. */
export const DIN_TIMERS = {
  /** SessionSetup, ServiceDiscovery, ServicePaymentSelection, ContractAuthentication, SessionStop. */
  msgDefault: t('V2G_EVCC_Msg_Timeout', 2_000, `${TABLE_75}; ccs32clara: 2 s per state`, 'msgDefault'),
  /** ccs32clara waits 5 s: "on some charger models ChargeParameterDiscovery needs more than a second". */
  msgChargeParameterDiscovery: t('V2G_EVCC_Msg_Timeout(ChargeParameterDiscoveryRes)', 2_000, TABLE_75, 'chargeParameterDiscovery'),
  msgCableCheck: t('V2G_EVCC_Msg_Timeout(CableCheckRes)', 2_000, TABLE_75, 'cableCheck'),
  msgPreCharge: t('V2G_EVCC_Msg_Timeout(PreChargeRes)', 2_000, TABLE_75, 'preCharge'),
  /**
   * 2 s in DIN where ISO-2 gives 5 s (PROTOCOLS.md §7). ccs32clara waits 6 s: a Compleo charger took more than 1 s,
   * and ramping down before PowerDeliveryRes(ReadyToChargeState=false) took 1.5 s there.
   */
  msgPowerDelivery: t('V2G_EVCC_Msg_Timeout(PowerDeliveryRes)', 2_000, `${TABLE_75}; ccs32clara relaxes to 6 s`, 'powerDelivery'),
  /** ccs32clara experiments with 5 s; the table's value is 250 ms (SECC performance time 25 ms). */
  msgCurrentDemand: t('V2G_EVCC_Msg_Timeout(CurrentDemandRes)', 250, TABLE_75, 'currentDemand'),
  msgWeldingDetection: t('V2G_EVCC_Msg_Timeout(WeldingDetectionRes)', 2_000, TABLE_75, 'weldingDetection'),
  /**
   * EVSEProcessing=Ongoing (ContractAuthentication, ChargeParameterDiscovery), from the first request of the series.
   * Josev bounds DIN authorisation at 60 s (it uses V2G_SECC_Sequence_Timeout for it), chargebyte's EV at 60 s for
   * authentication and for ChargeParameterDiscovery; ccs32clara allows 120 s for authentication ("the user may
   * search two minutes for the RFID card") and 60 s for ChargeParameterDiscovery. Default 60 s (ISO 15118-2's
   * V2G_EVCC_Ongoing_Timeout, Table 109, is the same); raise `ongoing` for slow RFID/app authorisation.
   */
  ongoing: t('V2G_EVCC_Ongoing_Timeout', 60_000, 'Josev din_spec_states (60 s); chargebyte EV SM_AUTHENTICATION/CPD_ONGOING_TIMEOUT', 'ongoing'),
  /**
   * Plug-in to PowerDeliveryReq(ReadyToChargeState=true). Josev's table and chargebyte's EV say 150 s; one
   * EVerest-based simulator's comment quotes 250 s for the same Table 77 entry: the two constants in code agree on
   * 150 s, which is the default. Measured from the module's `plugInAt` option (else the first SessionSetupReq).
   */
  readyToCharge: t('V2G_EVCC_ReadyToCharge_Timeout', 150_000, `${TABLE_77}; chargebyte EV SM_READYTOCHARGE_TIMEOUT`, 'readyToCharge'),
  /** From the first CableCheckReq. ccs32clara gives up after ~30–60 s (state timeout vs. request count). */
  cableCheck: t('V2G_EVCC_CableCheck_Timeout', 40_000, `${TABLE_77}; chargebyte EV SM_CABLECHECKTIMER_TIMEOUT`, 'cableCheckTotal'),
  /** From the first PreChargeReq. ccs32clara allows 30 s (field relaxation). */
  preCharge: t('V2G_EVCC_PreCharge_Timeout', 7_000, `${TABLE_77}; chargebyte EV SM_PRECHARGETIMER_TIMEOUT`, 'preChargeTotal'),
} as const;

/**
 * Our pacing choices, not timers of the standard (an EV that re-sends at once made ~3,800 round trips in 40 s
 * against one charger answering Ongoing: PROTOCOLS.md §7). Each stays far below the SECC's sequence timeout (60 s).
 */
export const DIN_PACING = {
  /** ContractAuthentication / ChargeParameterDiscovery while Ongoing (ccs32clara also re-asks about once a second). */
  ongoingRepeat: t('EVCC_Ongoing_Repeat_Interval', 1_000, undefined, 'ongoingRepeat'),
  /** CableCheck while Ongoing or the isolation is not yet valid (isolation monitoring takes seconds). */
  cableCheckRepeat: t('EVCC_CableCheck_Repeat_Interval', 500, undefined, 'cableCheckRepeat'),
  /** PreCharge while the EVSE output approaches the battery voltage (the whole of PreCharge has 7 s). */
  preChargeRepeat: t('EVCC_PreCharge_Repeat_Interval', 200, undefined, 'preChargeRepeat'),
  /** CurrentDemand loop: the next request this long after the previous response. */
  currentDemandInterval: t('EVCC_CurrentDemand_Interval', 100, undefined, 'currentDemandInterval'),
  /** WeldingDetection repetitions until the EVSE output is below the safe voltage. */
  weldingDetectionRepeat: t('EVCC_WeldingDetection_Repeat_Interval', 200, undefined, 'weldingDetectionRepeat'),
  /** How long WeldingDetection may go on before SessionStop anyway (one charger's voltage never drops: PROTOCOLS.md §7). */
  weldingDetectionTotal: t('EVCC_WeldingDetection_Total', 5_000, undefined, 'weldingDetectionTotal'),
} as const;

export type DinTimerKey = (typeof DIN_TIMERS)[keyof typeof DIN_TIMERS]['setting'];
export type DinPacingKey = (typeof DIN_PACING)[keyof typeof DIN_PACING]['setting'];
