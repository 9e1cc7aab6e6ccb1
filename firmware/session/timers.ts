/**
 * V2G application-layer timers as data (PROTOCOLS.md §6). One registry per protocol: this file holds the shared
 * shape, the timers common to every V2G session (SupportedAppProtocol, communication setup) and ISO 15118-2's; DIN
 * SPEC 70121's live in `din/timers.ts`. Each entry names the standard's timer, its value, the requirement or table it
 * comes from where we know it, and the setting that relaxes it for field chargers (defaults = the standard).
 *
 * Pacing intervals (how soon we repeat a request after EVSEProcessing=Ongoing, or send the next loop request) are not
 * timers of the standard: they are our choice, named and documented here, so an EV never busy-loops (one EV made
 * ~3,800 round trips in 40 s against a charger answering Ongoing: PROTOCOLS.md §7).
 */
export interface TimerSpec {
  /** The standard's name (or ours, for pacing), as it appears in logs. */
  readonly name: string;
  readonly ms: number;
  /** Requirement id or table of the standard, where known (never invented). */
  readonly source?: string;
  /** Settings key (`session.timeouts.<key>`) that overrides the value. */
  readonly setting?: string;
}

const t = (name: string, ms: number, source?: string, setting?: string): TimerSpec => ({ name, ms, ...(source ? { source } : {}), ...(setting ? { setting } : {}) });

/** Common to every V2G session, before the protocol is chosen. */
export const COMMON_TIMERS = {
  communicationSetup: t('V2G_EVCC_CommunicationSetup_Timeout', 20_000, 'ISO 15118-2 Table 109 (plug-in to SessionSetupRes, SDP and TLS included)', 'communicationSetup'),
  supportedAppProtocol: t('V2G_EVCC_Msg_Timeout(SupportedAppProtocolRes)', 2_000, 'ISO 15118-2 Table 109', 'supportedAppProtocol'),
} as const;

/**
 * ISO 15118-2 EVCC timers (ISO 15118-2:2014 §9.6, Tables 109/110 as open implementations apply them).
 * V2G_EVCC_Msg_Timeout depends on the message: 2 s for most, 5 s for ServiceDetail, PaymentDetails, PowerDelivery,
 * CertificateInstallation/Update, 250 ms for CurrentDemand.
 */
export const ISO2_TIMERS = {
  msgDefault: t('V2G_EVCC_Msg_Timeout', 2_000, 'ISO 15118-2 Table 109', 'msgDefault'),
  msgServiceDetail: t('V2G_EVCC_Msg_Timeout(ServiceDetailRes)', 5_000, 'ISO 15118-2 Table 109', 'serviceDetail'),
  msgPaymentDetails: t('V2G_EVCC_Msg_Timeout(PaymentDetailsRes)', 5_000, 'ISO 15118-2 Table 109', 'paymentDetails'),
  msgPowerDelivery: t('V2G_EVCC_Msg_Timeout(PowerDeliveryRes)', 5_000, 'ISO 15118-2 Table 109', 'powerDelivery'),
  msgCertificateInstallation: t('V2G_EVCC_Msg_Timeout(CertificateInstallationRes)', 5_000, 'ISO 15118-2 Table 109', 'certificateInstallation'),
  msgCertificateUpdate: t('V2G_EVCC_Msg_Timeout(CertificateUpdateRes)', 5_000, 'ISO 15118-2 Table 109', 'certificateUpdate'),
  // Some chargers answer ChargeParameterDiscovery in > 1 s (one open EV controller allows 5 s): setting, default 2 s.
  msgChargeParameterDiscovery: t('V2G_EVCC_Msg_Timeout(ChargeParameterDiscoveryRes)', 2_000, 'ISO 15118-2 Table 109', 'chargeParameterDiscovery'),
  msgCableCheck: t('V2G_EVCC_Msg_Timeout(CableCheckRes)', 2_000, 'ISO 15118-2 Table 109', 'cableCheck'),
  msgCurrentDemand: t('V2G_EVCC_Msg_Timeout(CurrentDemandRes)', 250, 'ISO 15118-2 Table 109', 'currentDemand'),
  sequencePerformance: t('V2G_EVCC_Sequence_Performance_Time', 40_000, 'ISO 15118-2 Table 109', 'sequencePerformance'),
  ongoing: t('V2G_EVCC_Ongoing_Timeout', 60_000, 'ISO 15118-2 Table 109 (EVSEProcessing=Ongoing)', 'ongoing'),
  cableCheck: t('V2G_EVCC_CableCheck_Timeout', 40_000, 'ISO 15118-2 Table 110', 'cableCheckTotal'),
  preCharge: t('V2G_EVCC_PreCharge_Timeout', 7_000, 'ISO 15118-2 Table 110', 'preChargeTotal'),
} as const;

/** Our pacing choices (not timers of the standard), each a setting. */
export const PACING = {
  /** Repeat after EVSEProcessing=Ongoing (Authorization, ContractAuthentication, ChargeParameterDiscovery). */
  ongoingRepeat: t('EVCC_Ongoing_Repeat_Interval', 1_000, undefined, 'ongoingRepeat'),
  /** Repeat CableCheckReq while Ongoing (isolation monitoring takes seconds; once per 500 ms is plenty). */
  cableCheckRepeat: t('EVCC_CableCheck_Repeat_Interval', 500, undefined, 'cableCheckRepeat'),
  /** Repeat PreChargeReq while the present voltage approaches the target (fast: the whole of PreCharge has 7 s). */
  preChargeRepeat: t('EVCC_PreCharge_Repeat_Interval', 100, undefined, 'preChargeRepeat'),
  /** DC CurrentDemand loop: next request this long after the previous response. */
  currentDemandInterval: t('EVCC_CurrentDemand_Interval', 100, undefined, 'currentDemandInterval'),
  /** AC ChargingStatus loop. */
  chargingStatusInterval: t('EVCC_ChargingStatus_Interval', 1_000, undefined, 'chargingStatusInterval'),
  /** WeldingDetection repetitions until the voltage is safe. */
  weldingDetectionRepeat: t('EVCC_WeldingDetection_Repeat_Interval', 200, undefined, 'weldingDetectionRepeat'),
  /** How long WeldingDetection may go on before we stop in order anyway (a charger whose voltage never drops). */
  weldingDetectionTotal: t('EVCC_WeldingDetection_Total', 5_000, undefined, 'weldingDetectionTotal'),
} as const;

/** Values the rest of the runtime imports directly (compatibility with the setup stages). */
export const V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS = COMMON_TIMERS.communicationSetup.ms;
export const V2G_EVCC_MSG_TIMEOUT_MS = {
  supportedAppProtocol: COMMON_TIMERS.supportedAppProtocol.ms,
  default: ISO2_TIMERS.msgDefault.ms,
  serviceDetail: ISO2_TIMERS.msgServiceDetail.ms,
  paymentDetails: ISO2_TIMERS.msgPaymentDetails.ms,
  powerDelivery: ISO2_TIMERS.msgPowerDelivery.ms,
  certificateInstallation: ISO2_TIMERS.msgCertificateInstallation.ms,
  certificateUpdate: ISO2_TIMERS.msgCertificateUpdate.ms,
  currentDemand: ISO2_TIMERS.msgCurrentDemand.ms,
} as const;
export const V2G_EVCC_SEQUENCE_PERFORMANCE_TIME_MS = ISO2_TIMERS.sequencePerformance.ms;
export const V2G_EVCC_ONGOING_TIMEOUT_MS = ISO2_TIMERS.ongoing.ms;
export const V2G_EVCC_CABLE_CHECK_TIMEOUT_MS = ISO2_TIMERS.cableCheck.ms;
export const V2G_EVCC_PRE_CHARGE_TIMEOUT_MS = ISO2_TIMERS.preCharge.ms;

/**
 * A timer registry with the settings applied: `resolve(spec)` gives the effective value. Overrides are validated by
 * the session settings schema (settings.ts); an override may only relax or tighten within the bounds set there.
 */
export class TimerTable {
  constructor(private readonly overrides: Readonly<Record<string, number>> = {}) {}
  ms(spec: TimerSpec): number {
    const o = spec.setting ? this.overrides[spec.setting] : undefined;
    return o ?? spec.ms;
  }
}
