/**
 * The OEM's "approved V2G root" statement: a signature by the OEM backend key over a root certificate's SHA-256,
 * its purpose and the last instant the OEM vouches for it. Every V2G root entry in the vehicle's certificate store
 * carries the statement it arrived with (factory bundle, Solution C answer, root-list sync), so the store can be
 * verified entry by entry with a public key alone — also when the TPM refuses the state-bound store key (degraded
 * mode, firmware/pki/README.md).
 *
 * The statement is fleet-wide on purpose: it names no vehicle, request or nonce (those bind the Solution C *answer*,
 * firmware/ota/signing.ts), so the same statement is valid in a factory bundle, in every answer and after any
 * restart. Replaying it is harmless: it only says what the OEM approved for every vehicle. A context string keeps it
 * apart from the answer signatures made with the same key. ECDSA P-256 / SHA-256, DER signature, base64.
 */
import { createHash, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';

export const ROOT_APPROVAL_CONTEXT = 'evcc/v1 pki/v2g-root-approval';

/** What the OEM approves a certificate for; only V2G roots today (a new purpose gets a new value, never a reuse). */
export type RootApprovalPurpose = 'v2g-root';

/**
 * Codes of the approval checks (listed here until firmware/pki/errors.ts carries them):
 * PKI_ROOT_APPROVAL_INVALID — a statement that does not verify (unknown key, bad signature, wrong purpose, expired);
 * PKI_ROOT_UNAPPROVED — a root without a statement where one is required (degraded mode, `requireApproval`).
 */
export type RootApprovalErrorCode = 'PKI_ROOT_APPROVAL_INVALID' | 'PKI_ROOT_UNAPPROVED';

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** The statement as it is stored with a root entry and carried in the OEM backend's answers. */
export const RootApproval = z.strictObject({
  /** SHA-256 of the signer's SubjectPublicKeyInfo (hex): which OEM backend key signed. */
  keyId: Hex64,
  purpose: z.literal('v2g-root'),
  /** ISO 8601 UTC (`…Z`): after it the OEM no longer vouches for the root (the OEM's way to retire it fleet-wide). */
  validUntil: z.iso.datetime(),
  /** ECDSA-P256-SHA256 (DER) over rootApprovalSigningInput(), base64. */
  sig: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/).min(8).max(200),
});
export type RootApproval = z.infer<typeof RootApproval>;

export interface RootApprovalFields {
  /** SHA-256 of the certificate DER (hex): the store's identity of the root. */
  sha256: string;
  purpose: RootApprovalPurpose;
  validUntil: string;
}

export function rootApprovalSigningInput(f: RootApprovalFields): Uint8Array {
  return new TextEncoder().encode([ROOT_APPROVAL_CONTEXT, f.purpose, f.sha256, f.validUntil].join('\n'));
}

/** A public key trusted to sign approvals, with where the vehicle got it (for the log: 'release', 'tpm-tagged', …). */
export interface ApprovalKey {
  publicKey: KeyObject;
  /** SHA-256 of the SPKI DER, hex (as BackendTrust.keyId). */
  keyId: string;
  origin: string;
}

/** Why a statement was refused: `unknown-key` is a key this verifier does not hold (another OEM key, a rotated one). */
export type RootApprovalRefusal = 'malformed' | 'unknown-key' | 'bad-signature' | 'expired';

export type RootApprovalCheck = { ok: true; key: ApprovalKey } | { ok: false; kind: RootApprovalRefusal; reason: string };

/**
 * Checks approvals against a fixed set of trusted OEM backend keys (usually one; two during a key rotation).
 * Total: `check` never throws, whatever the (possibly attacker-written) input.
 */
export class RootApprovalVerifier {
  private readonly keys: ReadonlyMap<string, ApprovalKey>;

  constructor(keys: readonly ApprovalKey[]) {
    this.keys = new Map(keys.map((k) => [k.keyId, k]));
  }

  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  get size(): number {
    return this.keys.size;
  }

  check(der: Uint8Array, approval: unknown, now: Date): RootApprovalCheck {
    const parsed = RootApproval.safeParse(approval);
    if (!parsed.success) return { ok: false, kind: 'malformed', reason: 'malformed approval statement' };
    const a = parsed.data;
    const key = this.keys.get(a.keyId);
    if (!key) return { ok: false, kind: 'unknown-key', reason: `signed by key ${a.keyId.slice(0, 16)}…, not a trusted OEM backend key` };
    const sha256 = createHash('sha256').update(der).digest('hex');
    const input = rootApprovalSigningInput({ sha256, purpose: a.purpose, validUntil: a.validUntil });
    let good = false;
    try {
      good = cryptoVerify('sha256', input, { key: key.publicKey, dsaEncoding: 'der' }, Buffer.from(a.sig, 'base64'));
    } catch {
      good = false;
    }
    if (!good) return { ok: false, kind: 'bad-signature', reason: 'OEM signature does not verify' };
    if (now.getTime() > Date.parse(a.validUntil)) return { ok: false, kind: 'expired', reason: `OEM approval expired at ${a.validUntil}` };
    return { ok: true, key };
  }

  /** `check`, throwing PKI_ROOT_APPROVAL_INVALID with the reason. */
  assert(der: Uint8Array, approval: unknown, now: Date, subject?: string): ApprovalKey {
    const r = this.check(der, approval, now);
    if (!r.ok) {
      throw new EvccError<RootApprovalErrorCode>('PKI_ROOT_APPROVAL_INVALID', `OEM approval of ${subject ? `"${subject}"` : 'the root'} refused: ${r.reason}`,
        { ...(subject ? { subject } : {}), reason: r.reason });
    }
    return r.key;
  }
}

/**
 * The factory's approvals file (`evcc pki roots approve` writes it, `evcc pki roots install --approvals` reads it):
 * one statement per root, by the root's SHA-256.
 */
export const ROOT_APPROVALS_FORMAT = 'evcc-v2g-root-approvals/1';

export const RootApprovalsFile = z.strictObject({
  format: z.literal(ROOT_APPROVALS_FORMAT),
  approvals: z.array(RootApproval.extend({ sha256: Hex64, subject: z.string().max(1024).optional() })).max(256),
});
export type RootApprovalsFile = z.infer<typeof RootApprovalsFile>;

/** Parses an approvals file into statements by certificate SHA-256; CONFIG_INVALID when it is not one. */
export function parseRootApprovalsFile(bytes: Uint8Array | string): Map<string, RootApproval> {
  let value: unknown;
  try {
    value = JSON.parse(typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', 'root approvals file is not JSON', {}, { cause: err });
  }
  const r = RootApprovalsFile.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new EvccError('CONFIG_INVALID', `root approvals file does not match ${ROOT_APPROVALS_FORMAT}: ${issues.join('; ')}`, { issues });
  }
  return new Map(r.data.approvals.map(({ sha256, subject: _subject, ...approval }) => [sha256, approval]));
}
