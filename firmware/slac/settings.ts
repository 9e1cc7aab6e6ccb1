import { z } from 'zod';
import { parseSettings } from '../settings.ts';
import { HOST_ACTION, SLAC_TIMING as T } from './constants.ts';

/**
 * SLAC settings (config section `slac`). Every relaxation of the standard is a named setting whose default is the
 * standard's value (constants.ts); a bench can loosen one for a quirky charger without touching the engine.
 */
const ms = (max: number) => z.number().int().min(0).max(max);

export const SlacSettings = z
  .object({
    /** Retries of CM_SLAC_PARM.REQ (C_EV_match_retry). Field code retries far more (e.g. 100): raise it here. */
    parmReqRetries: z.number().int().min(0).max(1000).default(T.C_EV_match_retry.value),
    /** Wait for CM_SLAC_PARM.CNF after each request (TT_match_response). */
    parmCnfTimeoutMs: ms(60_000).default(T.TT_match_response.value),
    /**
     * Time from the first CM_SLAC_PARM.CNF to the first START_ATTEN_CHAR.IND (TP_match_sequence allows 0–100 ms).
     * Further chargers' CNFs are still collected during sounding (the sounding is broadcast).
     */
    matchSequenceDelayMs: ms(T.TP_match_sequence.value).default(0),
    startAttenCharInds: z.number().int().min(1).max(10).default(T.C_EV_start_atten_char_inds.value),
    sounds: z.number().int().min(1).max(255).default(T.C_EV_match_MNBC.value),
    /** TP_EV_batch_msg_interval: 20–50 ms in the standard; the setting allows 0–1000 for benches. */
    batchMsgIntervalMs: ms(1000).default(T.TP_EV_batch_msg_interval.value),
    /** TIME_OUT sent in START_ATTEN_CHAR.IND, in 100 ms units (TT_EVSE_match_MNBC = 600 ms → 6). */
    evseMatchMnbcTimeOut: z.number().int().min(1).max(255).default(T.TT_EVSE_match_MNBC.value / 100),
    /** TT_EV_atten_results: collection window for CM_ATTEN_CHAR.IND from the first START_ATTEN_CHAR.IND. */
    attenResultsTimeoutMs: ms(60_000).default(T.TT_EV_atten_results.value),
    /**
     * Stop collecting as soon as every charger that sent PARM.CNF has reported its attenuation (true), or always
     * wait the whole TT_EV_atten_results window (false: catches chargers whose PARM.CNF got lost).
     */
    attenResultsEarlyDecision: z.boolean().default(true),
    /**
     * Reject chargers whose average attenuation is above this (dB). Not an ISO 15118-3 value: the default is the
     * threshold of Qualcomm's reference PEV (`pev.ini`: attenuation threshold = 40).
     */
    maxAverageAttenuationDb: z.number().min(0).max(255).default(40),
    /**
     * Chargers tracked per run. The RunID is broadcast, so anyone on the segment can answer with it: beyond this
     * many distinct stations further answers are dropped (bounded memory) and logged.
     */
    maxChargers: z.number().int().min(1).max(256).default(16),
    /** Retries of CM_SLAC_MATCH.REQ (C_EV_match_retry), each waiting TT_match_response. */
    matchReqRetries: z.number().int().min(0).max(100).default(T.C_EV_match_retry.value),
    matchCnfTimeoutMs: ms(60_000).default(T.TT_match_response.value),
    /** Wait for the local modem's CM_SET_KEY.CNF, and how often to re-ask. */
    setKeyCnfTimeoutMs: ms(60_000).default(T.CM_SET_KEY_cnf_wait.value),
    setKeyRetries: z.number().int().min(0).max(100).default(2),
    /**
     * CM_SET_KEY.CNF Result values read as success. QCA firmware answers 0x01 (HomePlug AV 1.0 convention), the
     * Green PHY text and Wireshark read 0x00 as success: both by default.
     */
    setKeySuccessResults: z.array(z.number().int().min(0).max(255)).min(1).default([0x00, 0x01]),
    /** TT_match_join: how long to wait for the modem to join the charger's AVLN after the key is set. */
    matchJoinTimeoutMs: ms(120_000).default(T.TT_match_join.value),
    /**
     * How the EV decides the PLC link is up after CM_SET_KEY.CNF (PROTOCOLS.md §9):
     * - `vendor-indication-or-nw-info` (default): the first of the modem's VS_HST_ACTION.IND with a joined action
     *   code, or a VS_NW_INFO.CNF that lists the charger's NID with a member station (polled every
     *   nwInfoPollIntervalMs). Either is proof from the modem itself; polling also covers firmware that sends no
     *   indication, or one sent before we listened. A QCA7000 needs seconds here; SDP before the join is wasted.
     * - `vendor-indication`: only VS_HST_ACTION.IND (what the seed testbench's EV waits for).
     * - `nw-info`: only polling VS_NW_INFO.
     * - `immediate`: ready as soon as the key is confirmed — only for links without a QCA modem (a cable to the
     *   charger's controller, a bench without AVLN), never a silent fallback.
     * All but `immediate` end in SLAC_LINK_NOT_JOINED when TT_match_join passes without proof.
     */
    linkUp: z.enum(['vendor-indication-or-nw-info', 'vendor-indication', 'nw-info', 'immediate']).default('vendor-indication-or-nw-info'),
    /** VS_HST_ACTION.IND action codes that mean "joined" (seed testbench: 0x09 then 0x0a; 0x0a is the join). */
    joinedHostActions: z.array(z.number().int().min(0).max(255)).min(1).max(16).default([HOST_ACTION.JOINED]),
    /** Interval of VS_NW_INFO.REQ polls while waiting for the join (not an ISO 15118-3 timer). */
    nwInfoPollIntervalMs: z.number().int().min(50).max(10_000).default(500),
    /** The local modem's management address (QCA: 00:B0:52:00:00:01). */
    localModemMac: z.string().regex(/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/).default('00:b0:52:00:00:01'),
    /** PEV_ID / SenderID (17 bytes, e.g. the VIN as ASCII); empty = zeros. */
    pevId: z.string().max(17).default(''),
  })
  .strict();
export type SlacSettings = z.infer<typeof SlacSettings>;

export function slacSettings(raw: unknown = {}): SlacSettings {
  return parseSettings(SlacSettings, raw, 'slac');
}
