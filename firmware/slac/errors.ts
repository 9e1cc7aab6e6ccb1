import { EvccError } from '../../core/errors.ts';

/** Stable SLAC error codes (bench logs and HIL reports match on them). */
export type SlacErrorCode =
  | 'SLAC_DECODE_TRUNCATED'
  | 'SLAC_DECODE_NOT_HOMEPLUG'
  | 'SLAC_DECODE_BAD_MMV'
  | 'SLAC_DECODE_UNKNOWN_MMTYPE'
  | 'SLAC_DECODE_BAD_FIELD'
  | 'SLAC_TIMEOUT_PARM_CNF'
  | 'SLAC_TIMEOUT_ATTEN_CHAR'
  | 'SLAC_NO_SUITABLE_EVSE'
  | 'SLAC_TIMEOUT_MATCH'
  | 'SLAC_TIMEOUT_SET_KEY'
  | 'SLAC_SET_KEY_REJECTED'
  | 'SLAC_LINK_NOT_JOINED'
  | 'SLAC_LINK_FAILED'
  | 'SLAC_ABORTED';

export class SlacError extends EvccError<SlacErrorCode> {
  override readonly name = 'SlacError';
}
