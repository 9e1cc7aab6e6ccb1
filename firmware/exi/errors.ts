import { EvccError } from '../../core/errors.ts';

/** Stable error codes of the EXI codec. */
export type ExiErrorCode =
  | 'EXI_TRUNCATED' // the stream ended inside an event or value
  | 'EXI_HEADER' // not an EXI header this profile accepts (0x80: no cookie, no options, version 1)
  | 'EXI_INVALID' // an event code or value the grammar does not allow
  | 'EXI_UNSUPPORTED' // a valid but unsupported construct (undeclared SE(*)/AT(*)/CH, xsi:type, wildcard content)
  | 'EXI_LIMIT' // a length, count or depth over the decoder's bounds
  | 'EXI_ENCODE_INVALID' // a message that does not fit the schema (missing/unknown field, value out of range)
  | 'EXI_UNKNOWN_SCHEMA'; // no such schema or element

export class ExiError extends EvccError<ExiErrorCode> {
  override readonly name = 'ExiError';
}

export function exiError(code: ExiErrorCode, message: string, details: Record<string, unknown> = {}): ExiError {
  return new ExiError(code, message, details);
}
