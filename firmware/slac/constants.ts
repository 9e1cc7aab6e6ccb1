/**
 * ISO 15118-3 SLAC constants (EV side), named as in the standard. One registry: the engine reads timers only from
 * here (or from a setting whose default is the value here). References point at the timing/constant table of
 * ISO 15118-3:2015 Annex A (exact requirement ids not available to us: the table is cited, not guessed); values as
 * open implementations (EVerest, Josev, Qualcomm's pev) apply them.
 */
export interface SlacConstant {
  readonly value: number;
  readonly unit: 'ms' | 'count';
  readonly ref: string;
  readonly note?: string;
}

export const SLAC_TIMING = {
  /** Number of CM_START_ATTEN_CHAR.IND the EV sends before sounding. */
  C_EV_start_atten_char_inds: { value: 3, unit: 'count', ref: 'ISO 15118-3 Annex A, SLAC constants' },
  /** Retries of CM_SLAC_PARM.REQ / CM_SLAC_MATCH.REQ when no confirmation arrives within TT_match_response. */
  C_EV_match_retry: { value: 2, unit: 'count', ref: 'ISO 15118-3 Annex A, SLAC timing' },
  /** Number of M-Sounds (CM_MNBC_SOUND.IND). */
  C_EV_match_MNBC: { value: 10, unit: 'count', ref: 'ISO 15118-3 Annex A, SLAC timing' },
  /** Interval between consecutive START_ATTEN_CHAR / MNBC_SOUND messages: 20–50 ms. */
  TP_EV_batch_msg_interval: { value: 40, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing', note: 'range 20–50 ms, 40 typical' },
  /** Time from CM_SLAC_PARM.CNF to the first START_ATTEN_CHAR.IND: 0–100 ms. */
  TP_match_sequence: { value: 100, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing', note: 'upper bound; some chargers stop answering if later' },
  /** The EV collects CM_ATTEN_CHAR.IND for at most this long after the first START_ATTEN_CHAR.IND. */
  TT_EV_atten_results: { value: 1200, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing' },
  /** Sounding window the EVSE applies; sent as TIME_OUT in units of 100 ms (6). */
  TT_EVSE_match_MNBC: { value: 600, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing' },
  /** Time a side waits for the next request of the sequence. */
  TT_match_sequence: { value: 400, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing' },
  /** Time the EV waits for a confirmation (PARM.CNF, MATCH.CNF). */
  TT_match_response: { value: 200, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing' },
  /** EVSE gives up the matching session after this long. */
  TT_EVSE_match_session: { value: 10_000, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing' },
  /** EVSE waits this long (20–50 s) for CM_SLAC_PARM.REQ after state B: the EV must start SLAC well inside it. */
  TT_EVSE_SLAC_init: { value: 20_000, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing', note: 'range 20–50 s' },
  /** Time for the EV's modem to join the charger's AVLN after the match. */
  TT_match_join: { value: 12_000, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing', note: 'one charger needs ~7 s after MATCH.CNF' },
  /** Minimum time in state E/F between matching attempts. */
  T_step_EF: { value: 4_000, unit: 'ms', ref: 'ISO 15118-3 Annex A, SLAC timing' },
  /**
   * Not an ISO 15118-3 timer: how long the host waits for its local modem's CM_SET_KEY.CNF (HomePlug Green PHY
   * host interface; QCA firmware answers within a few ms, 500 ms is the customary wait).
   */
  CM_SET_KEY_cnf_wait: { value: 500, unit: 'ms', ref: 'HomePlug Green PHY CM_SET_KEY host exchange; not an ISO 15118-3 timer' },
} as const satisfies Record<string, SlacConstant>;

/** TIME_OUT field of CM_SLAC_PARM.CNF / CM_START_ATTEN_CHAR.IND, in units of 100 ms. */
export const TIME_OUT_UNITS_MS = 100;

/** MMTYPE bases (HomePlug AV / Green PHY), low two bits select REQ/CNF/IND/RSP. */
export const MMTYPE = {
  CM_SET_KEY_REQ: 0x6008,
  CM_SET_KEY_CNF: 0x6009,
  CM_SLAC_PARM_REQ: 0x6064,
  CM_SLAC_PARM_CNF: 0x6065,
  CM_START_ATTEN_CHAR_IND: 0x606a,
  CM_ATTEN_CHAR_IND: 0x606e,
  CM_ATTEN_CHAR_RSP: 0x606f,
  CM_MNBC_SOUND_IND: 0x6076,
  CM_SLAC_MATCH_REQ: 0x607c,
  CM_SLAC_MATCH_CNF: 0x607d,
  CM_ATTEN_PROFILE_IND: 0x6086,
} as const;

export const ETHERTYPE_HOMEPLUG = 0x88e1;
/** MME version for HomePlug AV 1.1 / Green PHY (header with FMSN/FMID). */
export const MMV_AV11 = 0x01;
/** The local modem answers management messages sent to this address (Qualcomm "local management address"). */
export const LOCAL_MODEM_MAC = Uint8Array.of(0x00, 0xb0, 0x52, 0x00, 0x00, 0x01);
export const BROADCAST_MAC = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
/** APPLICATION_TYPE 0: PEV–EVSE association. SECURITY_TYPE 0: no security. */
export const APPLICATION_TYPE_PEV_EVSE = 0x00;
export const SECURITY_TYPE_NONE = 0x00;
/** Number of attenuation groups (carrier groups) Green PHY reports. */
export const ATTEN_GROUPS = 58;
/** CM_SET_KEY.REQ fields for setting an NMK as HLE (HomePlug Green PHY, as ISO 15118-3 uses it). */
export const SET_KEY = { KEY_TYPE_NMK: 0x01, PID_HLE: 0x04, NEW_EKS_NMK: 0x01 } as const;
/** MVFLength of CM_SLAC_MATCH.REQ / .CNF. */
export const MATCH_MVF_LENGTH = { REQ: 0x3e, CNF: 0x56 } as const;

/**
 * Qualcomm vendor-specific MMEs (open-plc-utils mme/qualcomm.h: VS_NW_INFO 0xA038, VS_HOST_ACTION 0xA060; +1 CNF,
 * +2 IND, +3 RSP). Every vendor MME carries Qualcomm's OUI after the MME header.
 */
export const VS_MMTYPE = {
  VS_NW_INFO_REQ: 0xa038,
  VS_NW_INFO_CNF: 0xa039,
  VS_HST_ACTION_IND: 0xa062,
  VS_HST_ACTION_RSP: 0xa063,
} as const;
export const QCA_OUI = Uint8Array.of(0x00, 0xb0, 0x52);
/**
 * VS_HST_ACTION.IND action codes after CM_SET_KEY as the seed testbench's EV logs them (`actionType: 09`, then `0a`,
 * then "SLAC matching process successful"): 0x0a is the one it takes as joined. Qualcomm's public headers name only
 * the boot-time codes 0x00–0x05 (open-plc-utils plc/EmulateHost.c), so the meaning of these two is field evidence,
 * and the code taken as "joined" is a setting (slac.joinedHostActions).
 */
export const HOST_ACTION = { FIRST_AFTER_SET_KEY: 0x09, JOINED: 0x0a } as const;
