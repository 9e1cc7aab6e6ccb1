import { z } from 'zod';
import { EvccError } from '../../../core/errors.ts';
import { parseSignedPolicy } from '../../keys/signed-policy.ts';
import { OTA_TOPIC_PREFIX, VEHICLE_ID_PATTERN } from '../constants.ts';
import { signInput, verifyInput, type BackendTrust } from '../signing.ts';

/**
 * The OEM's signed update job (issue #10, ARCHITECTURE.md §4): one document per vehicle and release, naming what to
 * fetch (bundle URL, size, SHA-256), for which vehicle and hardware (`compatible`, RAUC's compatible string), the
 * release's OEM-signed state policy (so the contract key follows the update without any key change), and its
 * validity window. It is signed by the OEM backend independently of TLS and of the broker: whoever can write into
 * the vehicle's topics still cannot make it install anything.
 *
 * Wire form: `{ format: 'evcc-signed-job/1', document: base64(document bytes), keyId, sig: base64(DER ECDSA) }`.
 * The signature covers `JOB_CONTEXT + '\n' + document bytes` exactly as sent (no re-serialisation on the vehicle),
 * and the context string differs from both root-answer contexts (signing.ts), so no signature the backend makes
 * over a root answer can ever pass as a job signature, nor the other way round, even when one key signs both.
 */
export const JOB_CONTEXT = 'evcc/v1 ota/job';
export const SIGNED_JOB_FORMAT = 'evcc-signed-job/1';
export const JOB_DOCUMENT_FORMAT = 'evcc-job/1';
/** A job is a few hundred bytes plus the signed policy (~1.5 KiB); anything much bigger is hostile. */
export const OTA_MAX_JOB_BYTES = 16 * 1024;
/** Job ids appear in topics (`jobs/<id>/get`): no wildcards, no separators. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export type JobErrorCode =
  /** Not a signed job document of the expected shape (or over OTA_MAX_JOB_BYTES). */
  | 'OTA_JOB_MALFORMED'
  /** Signed with a key other than the OEM job key installed at production. */
  | 'OTA_JOB_UNTRUSTED_SIGNER'
  | 'OTA_JOB_SIGNATURE_INVALID'
  | 'OTA_JOB_WRONG_VEHICLE'
  /** The job's version is below the NV anti-rollback counter. */
  | 'OTA_JOB_DOWNGRADE'
  /** The job's version is not newer than the running release. */
  | 'OTA_JOB_NOT_NEWER'
  | 'OTA_JOB_INCOMPATIBLE'
  /** Past its expiry. */
  | 'OTA_JOB_EXPIRED'
  /** The release's signed policy is for another version or another bundle than the job names. */
  | 'OTA_JOB_POLICY_MISMATCH';

export class JobError extends EvccError<JobErrorCode> {
  override readonly name = 'JobError';
}

const hex32 = z.string().regex(/^[0-9a-f]{64}$/);
const b64 = (max: number) => z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/).max(max);

export const JobDocument = z.strictObject({
  format: z.literal(JOB_DOCUMENT_FORMAT),
  jobId: z.string().regex(JOB_ID_PATTERN),
  vehicleId: z.string().regex(VEHICLE_ID_PATTERN),
  /** Release (firmware security) version N. */
  version: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  compatible: z.string().min(1).max(256),
  bundle: z.strictObject({
    url: z.string().url().max(2048).refine((u) => u.startsWith('https://'), 'bundle URL must be https'),
    size: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    sha256: hex32,
  }),
  /** The release's OEM-signed state policy (firmware/keys/signed-policy.ts), as installReleasePolicy takes it. */
  policy: z.unknown(),
  issuedAt: z.string().datetime(),
  expiresAt: z.string().datetime(),
});
export type JobDocument = z.infer<typeof JobDocument>;

const SignedJob = z.strictObject({
  format: z.literal(SIGNED_JOB_FORMAT),
  document: b64(OTA_MAX_JOB_BYTES * 2),
  keyId: z.string().regex(/^[0-9a-f]{64}$/),
  sig: b64(200),
});

export interface VerifiedJob {
  jobId: string;
  vehicleId: string;
  version: number;
  compatible: string;
  bundle: { url: string; size: number; sha256: string };
  /** The release's OEM-signed state policy, as boot/measured-boot.ts installReleasePolicy takes it. */
  policy: unknown;
  issuedAt: string;
  expiresAt: string;
}

export interface JobCheckContext {
  /** The OEM backend's verification key as installed at production (firmware/ota/backend-key.ts). */
  oemJobKey: BackendTrust;
  vehicleId: string;
  /** The release running now. */
  runningVersion: number;
  /** The NV anti-rollback counter (the oldest release the TPM still lets use the keys). */
  counterVersion: number;
  /** RAUC compatible string of this vehicle's system (system.conf). */
  compatible: string;
  /** Time of the check (the caller's clock port: firmware reads no ambient time). */
  now: Date;
}

function jobError(code: JobErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown): JobError {
  return new JobError(code, message, details, cause === undefined ? undefined : { cause });
}

export function jobSigningInput(documentBytes: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(`${JOB_CONTEXT}\n`);
  const out = new Uint8Array(head.byteLength + documentBytes.byteLength);
  out.set(head, 0);
  out.set(documentBytes, head.byteLength);
  return out;
}

/** What signs jobs on the backend side (deploy/oem-backend/signer.ts AnswerSigner has this shape). */
export interface JobSigner {
  readonly keyId: string;
  sign(input: Uint8Array): Uint8Array;
}

/** Backend side: the wire form of a signed job (UTF-8 JSON bytes). The document is validated before signing. */
export function signJob(doc: JobDocument, signer: JobSigner): Uint8Array {
  const checked = JobDocument.safeParse(doc);
  if (!checked.success) throw jobError('OTA_JOB_MALFORMED', `job document malformed: ${issues(checked.error)}`);
  const documentBytes = new TextEncoder().encode(JSON.stringify(checked.data));
  const sig = signer.sign(jobSigningInput(documentBytes));
  const wire = { format: SIGNED_JOB_FORMAT, document: Buffer.from(documentBytes).toString('base64'), keyId: signer.keyId, sig: Buffer.from(sig).toString('base64') };
  return new TextEncoder().encode(JSON.stringify(wire));
}

/** Convenience for tests and tools that hold a private key directly. */
export function signJobWithKey(doc: JobDocument, key: { keyId: string; privateKey: import('node:crypto').KeyObject }): Uint8Array {
  return signJob(doc, { keyId: key.keyId, sign: (input) => signInput(key.privateKey, input) });
}

function issues(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** UTF-8 JSON of the given shape, or OTA_JOB_MALFORMED naming `what`. */
function parseJobJson<T extends z.ZodTypeAny>(schema: T, bytes: Uint8Array, what: string): { data: z.infer<T> } {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw jobError('OTA_JOB_MALFORMED', `${what} is not UTF-8 JSON`, {}, err);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw jobError('OTA_JOB_MALFORMED', `${what} malformed: ${issues(parsed.error)}`);
  return { data: parsed.data };
}

/**
 * The vehicle's checks, in order, each refusal with its own code: shape and size, signer, signature, vehicle id,
 * validity window, compatible string, anti-rollback (version ≥ NV counter), newer than running, and the signed
 * policy's shape, version and bundle digest against the job. The bundle's own RAUC signature and SHA-256 are
 * checked after the download (download.ts, hal/rauc/bundle.ts verifyBundle).
 */
export function verifyJob(raw: Uint8Array | string, ctx: JobCheckContext): VerifiedJob {
  const bytes = typeof raw === 'string' ? new TextEncoder().encode(raw) : raw;
  if (bytes.byteLength > OTA_MAX_JOB_BYTES * 2) {
    throw jobError('OTA_JOB_MALFORMED', `signed job of ${bytes.byteLength} bytes exceeds the cap`, { bytes: bytes.byteLength });
  }
  const envelope = parseJobJson(SignedJob, bytes, 'signed job');
  const documentBytes = new Uint8Array(Buffer.from(envelope.data.document, 'base64'));
  if (documentBytes.byteLength > OTA_MAX_JOB_BYTES) {
    throw jobError('OTA_JOB_MALFORMED', `job document of ${documentBytes.byteLength} bytes exceeds the cap`, { bytes: documentBytes.byteLength });
  }
  if (envelope.data.keyId !== ctx.oemJobKey.keyId) {
    throw jobError('OTA_JOB_UNTRUSTED_SIGNER', 'job signed by a key other than the OEM job key', { keyId: envelope.data.keyId, expected: ctx.oemJobKey.keyId });
  }
  const sig = new Uint8Array(Buffer.from(envelope.data.sig, 'base64'));
  if (!verifyInput(ctx.oemJobKey.publicKey, jobSigningInput(documentBytes), sig)) {
    throw jobError('OTA_JOB_SIGNATURE_INVALID', 'job signature does not verify with the OEM job key', { keyId: envelope.data.keyId });
  }
  const doc = parseJobJson(JobDocument, documentBytes, 'job document').data;
  const ids = { jobId: doc.jobId, version: doc.version };
  if (doc.vehicleId !== ctx.vehicleId) {
    throw jobError('OTA_JOB_WRONG_VEHICLE', `job ${doc.jobId} is for vehicle ${doc.vehicleId}, not ${ctx.vehicleId}`, { ...ids, for: doc.vehicleId, vehicleId: ctx.vehicleId });
  }
  // Only the end of the window is enforced: a Pi has no RTC, and before NTP its clock (fake-hwclock: the last
  // shutdown) lies in the past, so a job issued while the vehicle was off would look "not yet valid" and be
  // rejected for good. A clock behind only makes an expired job look valid longer; its signature still binds it.
  if (ctx.now.getTime() >= Date.parse(doc.expiresAt)) {
    throw jobError('OTA_JOB_EXPIRED', `job ${doc.jobId} expired at ${doc.expiresAt} (now ${ctx.now.toISOString()})`, { ...ids, issuedAt: doc.issuedAt, expiresAt: doc.expiresAt });
  }
  if (doc.compatible !== ctx.compatible) {
    throw jobError('OTA_JOB_INCOMPATIBLE', `job ${doc.jobId} is for "${doc.compatible}", this system is "${ctx.compatible}"`, { ...ids, compatible: doc.compatible, expected: ctx.compatible });
  }
  if (doc.version < ctx.counterVersion) {
    throw jobError('OTA_JOB_DOWNGRADE', `job ${doc.jobId}: release v${doc.version} is below the anti-rollback counter ${ctx.counterVersion}`, { ...ids, counter: ctx.counterVersion });
  }
  if (doc.version <= ctx.runningVersion) {
    throw jobError('OTA_JOB_NOT_NEWER', `job ${doc.jobId}: release v${doc.version} is not newer than the running v${ctx.runningVersion}`, { ...ids, running: ctx.runningVersion });
  }
  let policy;
  try {
    policy = parseSignedPolicy(doc.policy);
  } catch (err) {
    throw jobError('OTA_JOB_MALFORMED', `job ${doc.jobId}: the release's signed policy is malformed`, ids, err);
  }
  if (policy.version !== doc.version || policy.bundle.sha256 !== doc.bundle.sha256) {
    throw jobError('OTA_JOB_POLICY_MISMATCH', `job ${doc.jobId}: the signed policy is for v${policy.version} / bundle ${policy.bundle.sha256.slice(0, 16)}…`, { ...ids, policyVersion: policy.version, policyBundle: policy.bundle.sha256, bundle: doc.bundle.sha256 });
  }
  return { jobId: doc.jobId, vehicleId: doc.vehicleId, version: doc.version, compatible: doc.compatible, bundle: { ...doc.bundle }, policy: doc.policy, issuedAt: doc.issuedAt, expiresAt: doc.expiresAt };
}

/**
 * Job topics under the vehicle's prefix (AWS-IoT-Jobs-like; the broker ACL `evcc/v1/%u/#` confines the vehicle):
 *   jobs/notify                 backend → vehicle, retained: the vehicle's pending jobs
 *   jobs/<id>/get               vehicle → backend: send me the signed document
 *   jobs/<id>/get/accepted      backend → vehicle: the signed document and the job's state
 *   jobs/<id>/update            vehicle → backend: state report (in_progress with progress, succeeded, failed, rejected)
 *   jobs/<id>/update/accepted   backend → vehicle: report recorded (or …/rejected with the reason)
 */
export function jobTopics(vehicleId: string) {
  const base = `${OTA_TOPIC_PREFIX}/${vehicleId}/jobs`;
  return {
    base,
    notify: `${base}/notify`,
    get: (jobId: string) => `${base}/${jobId}/get`,
    getAccepted: (jobId: string) => `${base}/${jobId}/get/accepted`,
    update: (jobId: string) => `${base}/${jobId}/update`,
    updateAccepted: (jobId: string) => `${base}/${jobId}/update/accepted`,
    updateRejected: (jobId: string) => `${base}/${jobId}/update/rejected`,
    /** What the vehicle subscribes to (everything the backend sends it about jobs). */
    vehicleFilter: `${base}/#`,
  };
}

/** Filters the backend subscribes to: every vehicle's get requests and updates. */
export const BACKEND_JOB_FILTERS = {
  get: `${OTA_TOPIC_PREFIX}/+/jobs/+/get`,
  update: `${OTA_TOPIC_PREFIX}/+/jobs/+/update`,
};

export const JOB_STATUSES = ['queued', 'in_progress', 'succeeded', 'failed', 'rejected'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export type JobReportStatus = Exclude<JobStatus, 'queued'>;
