import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeyObjectSigner } from '../../../deploy/oem-backend/signer.ts';
import { isEvccError } from '../../../core/errors.ts';
import { testReleasePolicy } from '../../../test/support/ota-jobs.ts';
import { backendTrustFromPem, ROOTCA_CONTEXT, ROOTLIST_CONTEXT, rootCaSigningInput } from '../signing.ts';
import {
  JOB_CONTEXT, jobSigningInput, OTA_MAX_JOB_BYTES, SIGNED_JOB_FORMAT, signJob, verifyJob, type JobCheckContext, type JobDocument,
} from './job.ts';

const newSigner = () => KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
const oem = newSigner();
const other = newSigner();
const trust = backendTrustFromPem(oem.publicKeyPem);
const BUNDLE_SHA = 'ab'.repeat(32);
const NOW = new Date('2026-12-03T14:00:00Z');

const policyFor = (version: number, bundleSha = BUNDLE_SHA) => testReleasePolicy(version, bundleSha);

function doc(over: Partial<JobDocument> = {}): JobDocument {
  const version = over.version ?? 2;
  return {
    format: 'evcc-job/1', jobId: 'job-1', vehicleId: 'VIN0001', version, compatible: 'evcc-rpi4',
    bundle: { url: 'https://oem.example:8443/bundles/evcc-v2.raucb', size: 1_000_000, sha256: BUNDLE_SHA },
    policy: policyFor(version), issuedAt: '2026-12-03T13:00:00.000Z', expiresAt: '2026-12-10T13:00:00.000Z', ...over,
  };
}

const ctx: JobCheckContext = { oemJobKey: trust, vehicleId: 'VIN0001', runningVersion: 1, counterVersion: 1, compatible: 'evcc-rpi4', now: NOW };

function refusal(raw: Uint8Array | string, c: Partial<JobCheckContext> = {}): string {
  try {
    verifyJob(raw, { ...ctx, ...c });
  } catch (err) {
    if (isEvccError(err)) return err.code;
    throw err;
  }
  return 'ACCEPTED';
}

function envelope(raw: Uint8Array): { format: string; document: string; keyId: string; sig: string } {
  return JSON.parse(Buffer.from(raw).toString('utf8'));
}
const wire = (e: object) => JSON.stringify(e);

describe('update job: OEM signature independent of TLS', () => {
  it('a job signed by the OEM for this vehicle verifies and yields what the agent needs', () => {
    const j = verifyJob(signJob(doc(), oem), ctx);
    expect(j).toMatchObject({ jobId: 'job-1', vehicleId: 'VIN0001', version: 2, compatible: 'evcc-rpi4', bundle: { size: 1_000_000, sha256: BUNDLE_SHA } });
    expect((j.policy as { version: number }).version).toBe(2);
  });

  it('refuses a forged signature, a flipped document byte and another signer, each with its own code', () => {
    const good = envelope(signJob(doc(), oem));
    const forged = envelope(signJob(doc(), other));
    expect(refusal(wire({ ...good, sig: forged.sig }))).toBe('OTA_JOB_SIGNATURE_INVALID');
    const bytes = Buffer.from(good.document, 'base64');
    const i = bytes.indexOf('VIN0001') + 6;
    bytes[i] = '2'.charCodeAt(0); // VIN0002: still a well-formed document, no longer the signed one
    expect(refusal(wire({ ...good, document: bytes.toString('base64') }))).toBe('OTA_JOB_SIGNATURE_INVALID');
    expect(refusal(signJob(doc(), other))).toBe('OTA_JOB_UNTRUSTED_SIGNER');
    expect(refusal(wire({ ...forged, keyId: good.keyId }))).toBe('OTA_JOB_SIGNATURE_INVALID');
  });

  it('a root-answer signature of the same key never passes as a job signature (separate context)', () => {
    const good = envelope(signJob(doc(), oem));
    const documentBytes = Buffer.from(good.document, 'base64');
    // The backend signs root answers over their own context; the same key's signature over a root answer, or over the
    // bare document, is not a job signature.
    const rootSig = oem.sign(rootCaSigningInput({ vehicleId: 'VIN0001', requestId: '0'.repeat(32), nonce: '1'.repeat(64), status: 'ok', certDigest: '' }));
    const bareSig = oem.sign(documentBytes);
    expect(refusal(wire({ ...good, sig: Buffer.from(rootSig).toString('base64') }))).toBe('OTA_JOB_SIGNATURE_INVALID');
    expect(refusal(wire({ ...good, sig: Buffer.from(bareSig).toString('base64') }))).toBe('OTA_JOB_SIGNATURE_INVALID');
    const input = Buffer.from(jobSigningInput(documentBytes)).toString('utf8');
    expect(input.startsWith(`${JOB_CONTEXT}\n`)).toBe(true);
    for (const c of [ROOTCA_CONTEXT, ROOTLIST_CONTEXT]) expect(input.startsWith(c)).toBe(false);
  });

  it('refuses another vehicle, a downgrade, a not-newer release, another compatible, an expired job', () => {
    expect(refusal(signJob(doc({ vehicleId: 'VIN0002' }), oem))).toBe('OTA_JOB_WRONG_VEHICLE');
    // version ≥ counter: v2 against counter 3 is a downgrade even though the running release is older.
    expect(refusal(signJob(doc({ version: 2 }), oem), { counterVersion: 3, runningVersion: 1 })).toBe('OTA_JOB_DOWNGRADE');
    // version > running: v2 equal to the running v2 (counter 1) is no update.
    expect(refusal(signJob(doc({ version: 2 }), oem), { runningVersion: 2 })).toBe('OTA_JOB_NOT_NEWER');
    expect(refusal(signJob(doc({ version: 2 }), oem), { runningVersion: 3, counterVersion: 2 })).toBe('OTA_JOB_NOT_NEWER');
    expect(refusal(signJob(doc({ version: 3 }), oem), { runningVersion: 2, counterVersion: 3 })).toBe('ACCEPTED');
    expect(refusal(signJob(doc({ compatible: 'evcc-other-board' }), oem))).toBe('OTA_JOB_INCOMPATIBLE');
    expect(refusal(signJob(doc(), oem), { now: new Date('2026-12-10T13:00:00Z') })).toBe('OTA_JOB_EXPIRED');
    // Issued "in the future" of a clock that has not synced yet (no RTC on the Pi): accepted, expiry still binds.
    expect(refusal(signJob(doc(), oem), { now: new Date('2026-11-20T08:00:00Z') })).toBe('ACCEPTED');
  });

  it('refuses a policy for another release or bundle, and malformed input', () => {
    expect(refusal(signJob(doc({ policy: policyFor(3) }), oem))).toBe('OTA_JOB_POLICY_MISMATCH');
    expect(refusal(signJob(doc({ policy: policyFor(2, '00'.repeat(32)) }), oem))).toBe('OTA_JOB_POLICY_MISMATCH');
    expect(refusal(signJob(doc({ policy: { format: 'nope' } }), oem))).toBe('OTA_JOB_MALFORMED');
    expect(refusal('not json')).toBe('OTA_JOB_MALFORMED');
    expect(refusal(new Uint8Array([0xff, 0xfe]))).toBe('OTA_JOB_MALFORMED');
    expect(refusal(wire({ format: SIGNED_JOB_FORMAT, document: 'AA==', keyId: trust.keyId, sig: 'AA==', extra: 1 }))).toBe('OTA_JOB_MALFORMED');
    expect(refusal('x'.repeat(OTA_MAX_JOB_BYTES * 2 + 1))).toBe('OTA_JOB_MALFORMED');
    // The backend refuses to sign a plain-HTTP bundle URL; a document carrying one (signed by a careless tool) is refused too.
    expect(() => signJob(doc({ bundle: { url: 'http://oem.example/b.raucb', size: 1, sha256: BUNDLE_SHA } }), oem)).toThrow(/https/);
    const good = envelope(signJob(doc(), oem));
    const text = Buffer.from(good.document, 'base64').toString('utf8').replace('https://', 'http://');
    const resigned = oem.sign(jobSigningInput(new TextEncoder().encode(text)));
    expect(refusal(wire({ ...good, document: Buffer.from(text).toString('base64'), sig: Buffer.from(resigned).toString('base64') }))).toBe('OTA_JOB_MALFORMED');
  });
});
