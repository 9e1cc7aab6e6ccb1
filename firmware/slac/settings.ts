import { z } from 'zod';
import { parseSettings } from '../settings.ts';
import { SLAC_TIMING as T } from './constants.ts';

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
    /** TT_match_join: how long to wait for the link after the key is set. */
    matchJoinTimeoutMs: ms(120_000).default(T.TT_match_join.value),
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
