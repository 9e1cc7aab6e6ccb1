import { EvccError } from '../../core/errors.ts';

/**
 * Typed errors of the OEM backend link and the root-CA fetch (Solution C). Codes are stable: bench logs, the
 * orchestrator's fallback policy and the OEM backend's dashboards match on them.
 */
export type OtaErrorCode =
  /** No MQTT session to the broker came up within the budget. */
  | 'OTA_BROKER_UNREACHABLE'
  /** The session was up but no valid answer arrived within the budget. */
  | 'OTA_BACKEND_SILENT'
  /** Signed answer: the Root Certificate Pool has no root for that issuer / key id. */
  | 'OTA_ROOT_NOT_FOUND'
  /** Signed answer: the backend refused the request (unknown or unauthorised vehicle). */
  | 'OTA_REQUEST_DENIED'
  /** The broker refused our subscribe or publish (ACL: the link identity does not own the topic). */
  | 'OTA_BROKER_REFUSED'
  | 'OTA_ANSWER_OVERSIZED'
  | 'OTA_ANSWER_MALFORMED'
  /** The answer's request id is none of ours. */
  | 'OTA_ANSWER_UNKNOWN_REQUEST'
  /** The answer repeats a request already completed, or carries a nonce other than the one we sent. */
  | 'OTA_ANSWER_REPLAYED'
  /** The answer names a signing key other than the OEM backend key installed at production. */
  | 'OTA_ANSWER_UNTRUSTED_SIGNER'
  | 'OTA_ANSWER_SIGNATURE_INVALID'
  /** The certificate is not a CA certificate (basicConstraints cA missing or false). */
  | 'OTA_ROOT_NOT_CA'
  /** The certificate is not self-signed (issuer ≠ subject or its own key does not verify it). */
  | 'OTA_ROOT_NOT_SELF_SIGNED'
  /** Other V2G root profile violations: algorithm, key usage, validity period, key identifier. */
  | 'OTA_ROOT_PROFILE'
  /** A valid root, but not the anchor of the chain the SECC presented. */
  | 'OTA_ROOT_DOES_NOT_ANCHOR'
  /** No OEM backend verification key installed at production: nothing from the backend can be trusted. */
  | 'OTA_BACKEND_KEY_MISSING'
  /** The unknown-root path gave up (cause attached); the session falls back as configured, never to plain TCP. */
  | 'OTA_ROOT_UNAVAILABLE';

export class OtaError extends EvccError<OtaErrorCode> {
  override readonly name = 'OtaError';
}

export function otaError(code: OtaErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown): OtaError {
  return new OtaError(code, message, details, cause === undefined ? undefined : { cause });
}
