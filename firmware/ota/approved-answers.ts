import { z } from 'zod';
import { RootApproval, RootApprovalVerifier } from '../pki/root-approval.ts';
import { OTA_MAX_ROOTS_PER_LIST } from './constants.ts';
import { otaError } from './errors.ts';
import { RootCaAnswer, RootListAnswer } from './messages.ts';
import type { BackendTrust } from './signing.ts';

/**
 * The v1 answers with the OEM's approved-V2G-root statements (firmware/pki/root-approval.ts) the vehicle stores
 * with each root, so the root stays verifiable without the TPM-derived store key (degraded mode). Additive and
 * optional: an answer from an older backend has none, and its roots are then trusted in full mode only.
 *   rootca.resp  + `approval`  — the statement for `cert`;
 *   roots.resp   + `approvals` — one statement per entry of `certs`, same order.
 * The statement carries its own OEM signature (not covered by the answer's `sig`); the vehicle verifies it with
 * the same OEM backend key as the answer.
 */
export const ApprovedRootCaAnswer = RootCaAnswer.extend({ approval: RootApproval.optional() });
export type ApprovedRootCaAnswer = z.infer<typeof ApprovedRootCaAnswer>;

export const ApprovedRootListAnswer = RootListAnswer.extend({ approvals: z.array(RootApproval).max(OTA_MAX_ROOTS_PER_LIST).optional() });
export type ApprovedRootListAnswer = z.infer<typeof ApprovedRootListAnswer>;

/** Bytes one statement adds to an answer (JSON with key id, purpose, time and a DER signature in base64). */
export const ROOT_APPROVAL_WIRE_BYTES = 300;

/**
 * Verifies the statement that came with a root in an answer, with the answer's own key; a refusal is an OtaError
 * like every other hostile-answer check: OTA_ANSWER_UNTRUSTED_SIGNER (another key), else
 * OTA_ANSWER_SIGNATURE_INVALID (bad signature, another root's statement, wrong purpose, expired), with the reason.
 */
export function assertAnswerApproval(trust: BackendTrust, der: Uint8Array, approval: RootApproval, now: Date, subject: string): void {
  const check = new RootApprovalVerifier([{ ...trust, origin: 'oem-backend' }]).check(der, approval, now);
  if (check.ok) return;
  const untrusted = check.kind === 'unknown-key';
  throw otaError(untrusted ? 'OTA_ANSWER_UNTRUSTED_SIGNER' : 'OTA_ANSWER_SIGNATURE_INVALID', `OEM approval of "${subject}" refused: ${check.reason}`,
    { subject, reason: check.reason, ...(untrusted ? { keyId: approval.keyId } : {}) });
}
