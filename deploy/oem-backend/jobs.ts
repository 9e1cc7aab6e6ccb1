import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { EvccError, isEvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { toHex } from '../../firmware/keys/policy.ts';
import { parseSignedPolicy } from '../../firmware/keys/signed-policy.ts';
import { VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';
import { JOB_DOCUMENT_FORMAT, jobTopics, signJob, type JobDocument, type JobSigner, type JobStatus } from '../../firmware/ota/update/job.ts';
import { decodeJobMessage, JobGet, JobUpdate, type JobsNotify } from '../../firmware/ota/update/jobs-client.ts';
import type { MqttClient, MqttMessage } from '../../hal/mqtt/types.ts';
import { sha256File } from '../../hal/store/hash.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import type { FileStore } from '../../hal/store/types.ts';
import { RecordLocks } from './record-lock.ts';

/**
 * Update campaigns of the OEM backend (issue #10): a campaign rolls one release out to one vehicle or a set; each
 * vehicle gets its own job document, signed by the OEM (firmware/ota/update/job.ts: vehicle id, version, compatible,
 * bundle URL/size/SHA-256, the release's signed state policy, validity window). Job topics are AWS-IoT-Jobs-like
 * under the vehicle's prefix (jobTopics): the backend keeps a retained `jobs/notify` with the vehicle's pending
 * jobs, answers `jobs/<id>/get` with the signed document and records `jobs/<id>/update` reports:
 *
 *   queued → in_progress (progress, repeated) → succeeded | failed | rejected (with reason and code)
 *
 * A report the state machine forbids (anything after a terminal state other than a repeat of it) is answered on
 * `…/update/rejected`; a re-published report (same token) is recorded once and acknowledged again. State is
 * persisted (FileStore, atomic replace): `campaigns/<id>.json`, `jobs/<id>.json` with the report history, and
 * `vehicles/<id>.json` (the vehicle's job ids), so a restarted backend — or `evcc oem-backend campaign show` —
 * reads what the vehicles reported. Every read-modify-write of a job or vehicle record holds that record's lock
 * (record-lock.ts), which also holds across instances sharing the store directory. The broker ACL (`evcc.acl`) confines each vehicle to `evcc/v1/<id>/#`; the
 * backend additionally takes the vehicle id from the topic and refuses reports about another vehicle's job.
 */
export interface ReleaseSpec {
  version: number;
  compatible: string;
  bundle: { url: string; size: number; sha256: string };
  /** The release's OEM-signed state policy (deploy/oem/release.ts createSignedPolicy). */
  policy: unknown;
}

export interface CampaignSpec {
  release: ReleaseSpec;
  vehicles: string[];
  /** How long each job stays valid (default 14 days). */
  validityMs?: number;
  campaignId?: string;
}

export interface JobHistoryEntry {
  status: JobStatus;
  at: string;
  progress?: number;
  reason?: string;
  code?: string;
}

export interface JobRecord {
  format: 'evcc-backend-job/1';
  jobId: string;
  campaignId: string;
  vehicleId: string;
  version: number;
  status: JobStatus;
  progress?: number;
  reason?: string;
  code?: string;
  /** The signed job (job.ts wire form), base64. */
  document: string;
  createdAt: string;
  updatedAt: string;
  history: JobHistoryEntry[];
  /** Tokens of the last reports recorded (a re-published report is acknowledged, not recorded twice). */
  tokens: string[];
}

export interface CampaignRecord {
  format: 'evcc-backend-campaign/1';
  campaignId: string;
  version: number;
  compatible: string;
  bundle: { url: string; size: number; sha256: string };
  createdAt: string;
  jobs: { vehicleId: string; jobId: string }[];
}

export interface JobServiceOptions {
  store: FileStore;
  signer: JobSigner;
  log: Logger;
  now?: () => Date;
  random?: (n: number) => Uint8Array;
  /** Record locks (default: across processes in `store.root/locks` for an FsStore, in-process for any other store). */
  locks?: RecordLocks;
}

const TERMINAL: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'rejected']);
const REMEMBERED_TOKENS = 32;
const MAX_HISTORY = 512;
export const DEFAULT_JOB_VALIDITY_MS = 14 * 86_400_000;
const CAMPAIGN_ID = /^[A-Za-z0-9_-]{1,40}$/;

export class JobService {
  private client: MqttClient | undefined;
  private readonly now: () => Date;
  private readonly random: (n: number) => Uint8Array;
  /** Per-record serialisation of read-modify-write, in this process and across instances on the same store. */
  private readonly locks: RecordLocks;
  readonly stats = { gets: 0, updates: 0, rejected: 0, dropped: 0 };

  constructor(private readonly o: JobServiceOptions) {
    this.now = o.now ?? (() => new Date());
    this.random = o.random ?? ((n) => globalThis.crypto.getRandomValues(new Uint8Array(n)));
    this.locks = o.locks ?? new RecordLocks(o.store instanceof FsStore ? o.store.root : undefined, { log: o.log });
  }

  private id(prefix: string, bytes: number): string {
    return `${prefix}${toHex(this.random(bytes))}`;
  }

  private async readJson<T>(path: string): Promise<T | undefined> {
    const b = await this.o.store.read(path);
    if (!b) return undefined;
    try {
      return JSON.parse(Buffer.from(b).toString('utf8')) as T;
    } catch (err) {
      throw new EvccError('STORE_CORRUPT', `${path} is not JSON`, { path }, { cause: err });
    }
  }

  private write(path: string, v: unknown): Promise<void> {
    return this.o.store.writeAtomic(path, `${JSON.stringify(v, null, 1)}\n`, { mode: 0o600 });
  }

  private locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(key, fn);
  }

  /** Creates a campaign: one signed job per vehicle, queued, and each vehicle notified when connected. */
  async createCampaign(spec: CampaignSpec): Promise<CampaignRecord> {
    const r = spec.release;
    const vehicles = [...new Set(spec.vehicles)];
    if (vehicles.length === 0) throw new EvccError('CONFIG_INVALID', 'a campaign needs at least one vehicle');
    for (const v of vehicles) if (!VEHICLE_ID_PATTERN.test(v)) throw new EvccError('CONFIG_INVALID', `vehicle id not allowed: ${JSON.stringify(v)}`);
    const campaignId = spec.campaignId ?? this.id('c', 6);
    if (!CAMPAIGN_ID.test(campaignId)) throw new EvccError('CONFIG_INVALID', `campaign id not allowed: ${JSON.stringify(campaignId)}`);
    if (await this.o.store.exists(`campaigns/${campaignId}.json`)) throw new EvccError('CONFIG_INVALID', `campaign ${campaignId} exists already`);
    const policy = parseSignedPolicy(r.policy);
    if (policy.version !== r.version || policy.bundle.sha256 !== r.bundle.sha256) {
      throw new EvccError('OTA_JOB_POLICY_MISMATCH', `the signed policy is for v${policy.version} / bundle ${policy.bundle.sha256.slice(0, 16)}…, the release is v${r.version} / ${r.bundle.sha256.slice(0, 16)}…`, { policyVersion: policy.version, version: r.version });
    }
    const issued = this.now();
    const expires = new Date(issued.getTime() + (spec.validityMs ?? DEFAULT_JOB_VALIDITY_MS));
    const campaign: CampaignRecord = {
      format: 'evcc-backend-campaign/1', campaignId, version: r.version, compatible: r.compatible, bundle: { ...r.bundle }, createdAt: issued.toISOString(), jobs: [],
    };
    for (const vehicleId of vehicles) {
      const jobId = this.id('j', 8);
      const doc: JobDocument = {
        format: JOB_DOCUMENT_FORMAT, jobId, vehicleId, version: r.version, compatible: r.compatible, bundle: { ...r.bundle }, policy,
        issuedAt: issued.toISOString(), expiresAt: expires.toISOString(),
      };
      const signed = signJob(doc, this.o.signer);
      const job: JobRecord = {
        format: 'evcc-backend-job/1', jobId, campaignId, vehicleId, version: r.version, status: 'queued', document: Buffer.from(signed).toString('base64'),
        createdAt: issued.toISOString(), updatedAt: issued.toISOString(), history: [{ status: 'queued', at: issued.toISOString() }], tokens: [],
      };
      await this.write(`jobs/${jobId}.json`, job);
      await this.locked(`vehicle:${vehicleId}`, async () => {
        const idx = (await this.readJson<{ jobs: string[] }>(`vehicles/${vehicleId}.json`)) ?? { jobs: [] };
        idx.jobs.push(jobId);
        await this.write(`vehicles/${vehicleId}.json`, idx);
      });
      campaign.jobs.push({ vehicleId, jobId });
    }
    await this.write(`campaigns/${campaignId}.json`, campaign);
    this.o.log.info({ campaignId, version: r.version, vehicles: vehicles.length, compatible: r.compatible }, `jobs: campaign ${campaignId} created (v${r.version}, ${vehicles.length} vehicle(s))`);
    if (this.client) for (const v of vehicles) await this.notify(v);
    return campaign;
  }

  job(jobId: string): Promise<JobRecord | undefined> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(jobId)) return Promise.resolve(undefined);
    return this.readJson<JobRecord>(`jobs/${jobId}.json`);
  }

  campaign(campaignId: string): Promise<CampaignRecord | undefined> {
    if (!CAMPAIGN_ID.test(campaignId)) return Promise.resolve(undefined);
    return this.readJson<CampaignRecord>(`campaigns/${campaignId}.json`);
  }

  async campaigns(): Promise<string[]> {
    return (await this.o.store.list('campaigns')).filter((f) => f.endsWith('.json')).map((f) => basename(f, '.json')).sort();
  }

  async jobsOf(vehicleId: string): Promise<JobRecord[]> {
    const idx = await this.readJson<{ jobs: string[] }>(`vehicles/${vehicleId}.json`);
    const out: JobRecord[] = [];
    for (const id of idx?.jobs ?? []) {
      const j = await this.job(id);
      if (j) out.push(j);
    }
    return out;
  }

  /** Publishes the vehicle's pending jobs, retained (an empty list clears what the vehicle would act on). */
  async notify(vehicleId: string, via: MqttClient | undefined = this.client): Promise<void> {
    if (!via) return;
    const pending = (await this.jobsOf(vehicleId)).filter((j) => !TERMINAL.has(j.status));
    const body: JobsNotify = { v: 1, type: 'jobs.notify', jobs: pending.slice(0, 16).map((j) => ({ jobId: j.jobId, status: j.status as 'queued' | 'in_progress', version: j.version })) };
    await via.publish(jobTopics(vehicleId).notify, JSON.stringify(body), { qos: 1, retain: true });
  }

  /** Takes the backend's MQTT client (service.ts subscribes the filters) and notifies every vehicle with a pending job. */
  async attach(client: MqttClient): Promise<void> {
    this.client = client;
    for (const file of await this.o.store.list('vehicles')) {
      if (!file.endsWith('.json')) continue;
      await this.notify(basename(file, '.json')).catch((err: unknown) => this.o.log.warn({ error: String(err) }, 'jobs: notify failed'));
    }
  }

  detach(): void {
    this.client = undefined;
  }

  /** Routes a message of `evcc/v1/<vehicle>/jobs/…`; returns false for anything else. */
  onMessage(vehicleId: string, rest: string, m: MqttMessage): boolean {
    const match = /^jobs\/([A-Za-z0-9_-]{1,64})\/(get|update)$/.exec(rest);
    if (!match) return rest.startsWith('jobs/');
    if (m.retain) return true;
    const jobId = match[1]!;
    const op = match[2]!;
    const run = op === 'get' ? this.serveGet(vehicleId, jobId, m.payload) : this.recordUpdate(vehicleId, jobId, m.payload);
    run.catch((err: unknown) => this.o.log.error({ vehicleId, jobId, op, code: isEvccError(err) ? err.code : 'INTERNAL', error: (err as Error).message }, 'jobs: request failed'));
    return true;
  }

  private async serveGet(vehicleId: string, jobId: string, payload: Uint8Array): Promise<void> {
    this.stats.gets++;
    const req = decodeJobMessage(JobGet, payload);
    const job = req ? await this.job(jobId) : undefined;
    if (!req || !job || job.vehicleId !== vehicleId) {
      this.stats.dropped++;
      this.o.log.warn({ vehicleId, jobId, reason: !req ? 'malformed' : !job ? 'unknown job' : 'another vehicle\'s job' }, 'jobs: get dropped');
      return;
    }
    const answer = { v: 1, type: 'job.doc', jobId, token: req.token, status: job.status, document: job.document };
    await this.client?.publish(jobTopics(vehicleId).getAccepted(jobId), JSON.stringify(answer), { qos: 1 });
    this.o.log.info({ vehicleId, jobId, status: job.status }, 'jobs: job document sent');
  }

  private async recordUpdate(vehicleId: string, jobId: string, payload: Uint8Array): Promise<void> {
    this.stats.updates++;
    const u = decodeJobMessage(JobUpdate, payload);
    if (!u) {
      this.stats.dropped++;
      this.o.log.warn({ vehicleId, jobId }, 'jobs: update dropped (malformed)');
      return;
    }
    const topics = jobTopics(vehicleId);
    const outcome = await this.locked(`job:${jobId}`, async (): Promise<{ ok: boolean; status?: JobStatus; reason?: string; changed?: boolean }> => {
      const job = await this.job(jobId);
      if (!job || job.vehicleId !== vehicleId) return { ok: false, reason: job ? 'job of another vehicle' : 'unknown job' };
      if (job.tokens.includes(u.token)) return { ok: true, status: job.status };
      if (TERMINAL.has(job.status)) {
        if (u.status === job.status) return { ok: true, status: job.status };
        return { ok: false, status: job.status, reason: `job is ${job.status} already` };
      }
      const at = this.now().toISOString();
      const entry: JobHistoryEntry = { status: u.status, at, ...pick(u) };
      const previous = job.status;
      job.status = u.status;
      job.updatedAt = at;
      if (u.progress !== undefined) job.progress = u.progress;
      if (u.reason !== undefined) job.reason = u.reason;
      if (u.code !== undefined) job.code = u.code;
      job.history.push(entry);
      if (job.history.length > MAX_HISTORY) job.history.splice(1, job.history.length - MAX_HISTORY);
      job.tokens = [...job.tokens, u.token].slice(-REMEMBERED_TOKENS);
      await this.write(`jobs/${jobId}.json`, job);
      return { ok: true, status: job.status, changed: previous !== job.status };
    });
    if (!outcome.ok) {
      this.stats.rejected++;
      await this.client?.publish(topics.updateRejected(jobId), JSON.stringify({ v: 1, type: 'job.update.rejected', token: u.token, ...(outcome.status ? { status: outcome.status } : {}), reason: outcome.reason }), { qos: 1 });
      this.o.log.warn({ vehicleId, jobId, status: u.status, reason: outcome.reason }, 'jobs: report rejected');
      return;
    }
    await this.client?.publish(topics.updateAccepted(jobId), JSON.stringify({ v: 1, type: 'job.update.accepted', token: u.token, status: outcome.status }), { qos: 1 });
    const line = { vehicleId, jobId, status: u.status, ...pick(u) };
    if (u.status === 'in_progress' && !outcome.changed) this.o.log.debug(line, 'jobs: progress');
    else this.o.log[u.status === 'succeeded' || u.status === 'in_progress' ? 'info' : 'warn'](line, `jobs: ${jobId} ${u.status}`);
    if (outcome.changed) await this.notify(vehicleId);
  }
}

function pick(u: JobUpdate): { progress?: number; reason?: string; code?: string } {
  return { ...(u.progress !== undefined ? { progress: u.progress } : {}), ...(u.reason !== undefined ? { reason: u.reason } : {}), ...(u.code !== undefined ? { code: u.code } : {}) };
}

/** A release as the campaign CLI names it: the bundle file (size, SHA-256), its URL on the bundle server, its policy. */
export async function releaseFromFiles(o: { bundlePath: string; url: string; compatible: string; policy: unknown }): Promise<ReleaseSpec> {
  const policy = parseSignedPolicy(o.policy);
  let size: number;
  try {
    size = (await stat(o.bundlePath)).size;
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', `cannot read bundle ${o.bundlePath}`, { path: o.bundlePath }, { cause: err });
  }
  return { version: policy.version, compatible: o.compatible, bundle: { url: o.url, size, sha256: toHex(await sha256File(o.bundlePath)) }, policy };
}
