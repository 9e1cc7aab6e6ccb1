import { ERROR_CODES, isRegisteredCode } from './error-codes.ts';

/**
 * Typed errors with stable codes. Every failure that crosses a module boundary is an EvccError whose
 * `code` never changes once published (bench logs, HIL reports and the OEM backend match on it).
 * Every code is declared once in the closed registry core/error-codes.ts (ERROR_CODES: code → one line of meaning);
 * core/error-codes.test.ts fails on a code raised anywhere that the registry lacks, and on a registered code that
 * nothing raises. Subsystems keep their own code unions (e.g. `firmware/slac/errors.ts`) for typing; each member is
 * a registry entry.
 */
export class EvccError<Code extends string = string> extends Error {
  override readonly name: string = 'EvccError';
  readonly code: Code;
  /** Machine-readable context; never secrets. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: Code, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isEvccError(err: unknown, code?: string): err is EvccError {
  return err instanceof EvccError && (code === undefined || err.code === code);
}

/** Codes that belong to no single protocol. */
export type CommonErrorCode =
  | 'CONFIG_INVALID'
  | 'IO_FAILED'
  | 'STORE_CORRUPT'
  | 'PREREQUISITE_MISSING'
  | 'ABORTED';

/** The registry's one line of meaning for a code, or undefined for a code that is not registered. */
export function describeCode(code: string): string | undefined {
  return isRegisteredCode(code) ? ERROR_CODES[code] : undefined;
}
