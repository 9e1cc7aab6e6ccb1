import { EvccError } from '../../core/errors.ts';
import type { TpmErrorCode } from './types.ts';

/**
 * TPM response codes (TPM 2.0 Part 2 §6.6) → stable error codes. tpm2-tools 5.4 prints the RC as
 * `(0x1C4) - tpm:parameter(1):…`; parse that, not the function name (5.4 prints e.g. `Eys_Load`, TPM.md §5).
 */
export interface DecodedRc {
  rc: number;
  /** Format-one error number (0x080 | n), format-zero error (0x100 | n) or warning (0x900 | n). */
  base: number;
  parameter?: number;
  handle?: number;
  session?: number;
}

export function decodeRc(rc: number): DecodedRc {
  if (rc & 0x080) {
    const base = 0x080 | (rc & 0x03f);
    const n = (rc >> 8) & 0xf;
    if (rc & 0x040) return { rc, base, parameter: n };
    if (n & 0x8) return { rc, base, session: n & 0x7 };
    return n ? { rc, base, handle: n } : { rc, base };
  }
  if (rc & 0x800) return { rc, base: 0x900 | (rc & 0x07f) };
  return { rc, base: 0x100 | (rc & 0x07f) };
}

const BY_BASE: Record<number, TpmErrorCode> = {
  0x08e: 'TPM_AUTH_FAIL',
  0x09d: 'TPM_POLICY_FAIL',
  0x0a2: 'TPM_BAD_AUTH',
  0x085: 'TPM_HIERARCHY_DISABLED',
  0x128: 'TPM_PCR_CHANGED',
  0x09b: 'TPM_SIGNATURE_INVALID',
  0x082: 'TPM_KEY_ATTRIBUTES',
  0x09c: 'TPM_KEY_USE',
  0x09f: 'TPM_CONTEXT_INVALID',
  0x12f: 'TPM_AUTH_UNAVAILABLE',
  0x14a: 'TPM_NV_UNINITIALIZED',
  0x921: 'TPM_LOCKOUT',
  0x902: 'TPM_OBJECT_MEMORY',
  0x903: 'TPM_SESSION_MEMORY',
};

/** Meaning depends on the command for the generic VALUE/POLICY codes. */
export function codeFor(rc: number, command: string): TpmErrorCode {
  const d = decodeRc(rc);
  if (d.base === 0x084) {
    if (command === 'tpm2_policypcr') return 'TPM_POLICY_PCR';
    if (command === 'tpm2_policyauthorize') return d.parameter === 4 ? 'TPM_TICKET_INVALID' : 'TPM_POLICY_NOT_APPROVED';
    return 'TPM_ERROR';
  }
  if (d.base === 0x126) return command === 'tpm2_policynv' ? 'TPM_POLICY_ROLLBACK' : 'TPM_ERROR';
  if (d.base === 0x09f && (command === 'tpm2_import' || command === 'tpm2_load')) return 'TPM_BLOB_INTEGRITY';
  return BY_BASE[d.base] ?? 'TPM_ERROR';
}

const MESSAGES: Record<TpmErrorCode, string> = {
  TPM_AUTH_FAIL: 'wrong authorisation value',
  TPM_AUTH_UNAVAILABLE: 'object cannot be used with this kind of authorisation',
  TPM_BAD_AUTH: 'wrong authorisation (no dictionary-attack implications)',
  TPM_HIERARCHY_DISABLED: 'hierarchy is disabled',
  TPM_POLICY_FAIL: 'policy session does not satisfy the object policy',
  TPM_POLICY_PCR: 'PCR value differs from the expected value',
  TPM_POLICY_NOT_APPROVED: 'measured state is not the one the OEM signed',
  TPM_POLICY_ROLLBACK: 'firmware version is lower than the anti-rollback counter',
  TPM_PCR_CHANGED: 'PCRs changed since the policy session was armed',
  TPM_TICKET_INVALID: 'verification ticket does not match the policy signing key',
  TPM_SIGNATURE_INVALID: 'signature does not verify',
  TPM_KEY_ATTRIBUTES: 'key attributes forbid this operation',
  TPM_KEY_USE: 'key cannot be used for this operation',
  TPM_CONTEXT_INVALID: 'saved context is no longer valid (TPM reset or restart)',
  TPM_BLOB_INTEGRITY: 'wrapped key blob is corrupted or was made for another parent key',
  TPM_NV_UNINITIALIZED: 'NV index not written yet',
  TPM_LOCKOUT: 'TPM is in dictionary-attack lockout',
  TPM_OBJECT_MEMORY: 'TPM out of object memory',
  TPM_SESSION_MEMORY: 'TPM out of session memory',
  TPM_SESSION_INVALID: 'policy session no longer valid',
  TPM_ERROR: 'TPM refused the command',
  TPM_TOOL_FAILED: 'tpm2-tools failed',
  TPM_UNREACHABLE: 'TPM not reachable',
};

const RC_RE = /\((0x[0-9A-Fa-f]+)\) - tpm:/;
/** Some tools (tpm2_nvincrement) print only ESYS's line: `Esys Finish ErrorCode (0x000009a2)`; layer 0 = the TPM's own. */
const ESYS_RC_RE = /Esys Finish ErrorCode \((0x0000[0-9A-Fa-f]{4})\)/;

/** Builds the typed error of a failed tool run (stderr as tpm2-tools 5.4 prints it). */
export function tpmErrorFromTool(command: string, exitCode: number | undefined, stderr: string): EvccError<TpmErrorCode> {
  const m = RC_RE.exec(stderr) ?? ESYS_RC_RE.exec(stderr);
  const lastLine = stderr.trim().split('\n').filter(Boolean).slice(-1)[0] ?? '';
  if (m) {
    const rc = parseInt(m[1]!, 16);
    const code = codeFor(rc, command);
    const hex = `0x${rc.toString(16).toUpperCase()}`;
    return new EvccError(code, `${command}: ${MESSAGES[code]} (TPM RC ${hex})`, { rc: hex, command, exitCode, tpm: stderr.slice(m.index, m.index + 160).split('\n')[0] });
  }
  if (/Could not load tcti|Failed to instantiate TCTI|Failed to connect to host/i.test(stderr)) {
    return new EvccError('TPM_UNREACHABLE', `${command}: ${MESSAGES.TPM_UNREACHABLE}`, { command, exitCode, stderr: lastLine });
  }
  return new EvccError('TPM_TOOL_FAILED', `${command} failed (exit ${exitCode}): ${lastLine}`, { command, exitCode, stderr: lastLine });
}
