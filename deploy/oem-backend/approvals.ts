import { parseCert } from '../../firmware/pki/cert.ts';
import {
  ROOT_APPROVALS_FORMAT, rootApprovalSigningInput, type RootApproval, type RootApprovalsFile,
} from '../../firmware/pki/root-approval.ts';
import type { AnswerSigner } from './signer.ts';

/**
 * The OEM side of the approved-V2G-root statement (firmware/pki/root-approval.ts): the OEM backend key signs
 * "this certificate (SHA-256) is an approved V2G root until T". The backend attaches the statement to every root it
 * serves (Solution C answer, root list), and the factory gets the same statements for the roots it installs
 * (`evcc pki roots approve` → `evcc pki roots install --approvals`). T defaults to the certificate's notAfter and is
 * never later: the OEM cannot vouch for a root beyond its own validity.
 */
export function approveRoot(signer: AnswerSigner, der: Uint8Array, o: { validUntil?: Date } = {}): RootApproval {
  const c = parseCert(der);
  const until = o.validUntil && o.validUntil < c.notAfter ? o.validUntil : c.notAfter;
  const validUntil = until.toISOString();
  const sig = signer.sign(rootApprovalSigningInput({ sha256: c.fingerprint, purpose: 'v2g-root', validUntil }));
  return { keyId: signer.keyId, purpose: 'v2g-root', validUntil, sig: Buffer.from(sig).toString('base64') };
}

/** The factory's approvals file for a set of roots. */
export function rootApprovalsFile(signer: AnswerSigner, ders: Uint8Array[], o: { validUntil?: Date } = {}): RootApprovalsFile {
  return {
    format: ROOT_APPROVALS_FORMAT,
    approvals: ders.map((der) => {
      const c = parseCert(der);
      return { sha256: c.fingerprint, subject: c.subject, ...approveRoot(signer, der, o) };
    }),
  };
}

/**
 * Statements the backend service has made, by certificate fingerprint: a statement is valid for every vehicle and
 * every answer, so one signature per root serves the whole fleet. Bounded (the pool is small; a reload that brings
 * other roots just adds entries).
 */
export class ApprovalCache {
  private readonly byFingerprint = new Map<string, RootApproval>();
  constructor(private readonly signer: AnswerSigner, private readonly max = 1024) {}

  of(der: Uint8Array): RootApproval {
    const fp = parseCert(der).fingerprint;
    let a = this.byFingerprint.get(fp);
    if (!a) {
      if (this.byFingerprint.size >= this.max) this.byFingerprint.clear();
      a = approveRoot(this.signer, der);
      this.byFingerprint.set(fp, a);
    }
    return a;
  }
}
