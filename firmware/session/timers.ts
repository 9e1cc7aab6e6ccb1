/**
 * ISO 15118-2 application-layer timers (PROTOCOLS.md §6). Field chargers exceed several of these: the session layer
 * takes each as a named setting whose default is the value here.
 */
/** V2G_EVCC_Msg_Timeout: how long the EVCC waits for the response to each request. */
export const V2G_EVCC_MSG_TIMEOUT_MS = {
  supportedAppProtocol: 2_000,
  default: 2_000,
  serviceDetail: 5_000,
  paymentDetails: 5_000,
  powerDelivery: 5_000,
  certificateInstallation: 5_000,
  certificateUpdate: 5_000,
  currentDemand: 250,
} as const;
/** V2G_EVCC_CommunicationSetup_Timeout: plug-in to SessionSetupRes, SDP and TLS included. */
export const V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS = 20_000;
/** V2G_EVCC_Sequence_Performance_Time. */
export const V2G_EVCC_SEQUENCE_PERFORMANCE_TIME_MS = 40_000;
/** V2G_EVCC_Ongoing_Timeout (EVSEProcessing = Ongoing). */
export const V2G_EVCC_ONGOING_TIMEOUT_MS = 60_000;
/** V2G_EVCC_CableCheck_Timeout / V2G_EVCC_PreCharge_Timeout (DC). */
export const V2G_EVCC_CABLE_CHECK_TIMEOUT_MS = 40_000;
export const V2G_EVCC_PRE_CHARGE_TIMEOUT_MS = 7_000;
