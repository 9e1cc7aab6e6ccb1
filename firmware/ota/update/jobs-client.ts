import { z } from 'zod';
import { EvccError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/logger.ts';
import type { Clock } from '../../../hal/clock/types.ts';
import type { MqttClient, MqttMessage } from '../../../hal/mqtt/types.ts';
import { JOB_ID_PATTERN, jobTopics, OTA_MAX_JOB_BYTES, type JobReportStatus } from './job.ts';

/**
 * The vehicle side of the job topics (job.ts jobTopics), over the existing OEM link's MQTT session (link.ts). The
 * backend keeps a retained `jobs/notify` with the vehicle's pending jobs, so a vehicle that was offline when the
 * campaign started learns of it at its next connect. `next()` asks for the first pending job's signed document;
 * the document is only bytes here: verifyJob (job.ts) decides whether it is to be trusted. `report()` publishes
 * state changes in order (one at a time, each acknowledged by the backend before the next goes out), so the
 * backend's record follows the vehicle's steps exactly.
 */
export interface JobsClient {
  /** The first pending job (queued or in progress) with its signed document, or undefined when there is none. */
  next(): Promise<{ jobId: string; document: Uint8Array } | undefined>;
  report(jobId: string, status: JobReportStatus, detail?: JobReportDetail): Promise<void>;
}

export interface JobReportDetail {
  /** 0 … 100. */
  progress?: number;
  reason?: string;
  /** The typed error code behind a failed / rejected report. */
  code?: string;
}

export type JobsClientErrorCode =
  /** The backend did not answer a get or an update within the budget. */
  | 'OTA_JOB_BACKEND_SILENT'
  /** The backend refused a state report (unknown job, or a transition its state machine forbids). */
  | 'OTA_JOB_REPORT_REJECTED';

/** Wire messages of the job topics (UTF-8 JSON, size-capped before parsing). */
const JobId = z.string().regex(JOB_ID_PATTERN);
const Token = z.string().regex(/^[0-9a-z-]{1,64}$/);
const PendingStatus = z.enum(['queued', 'in_progress']);
export const JobsNotify = z.strictObject({
  v: z.literal(1),
  type: z.literal('jobs.notify'),
  jobs: z.array(z.strictObject({ jobId: JobId, status: PendingStatus, version: z.number().int().positive() })).max(16),
});
export const JobGet = z.strictObject({ v: z.literal(1), type: z.literal('job.get'), token: Token });
export const JobDocumentAnswer = z.strictObject({
  v: z.literal(1),
  type: z.literal('job.doc'),
  jobId: JobId,
  token: Token,
  status: z.enum(['queued', 'in_progress', 'succeeded', 'failed', 'rejected']),
  /** The signed job (job.ts wire form), base64. */
  document: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/).max(OTA_MAX_JOB_BYTES * 3),
});
export const JobUpdate = z.strictObject({
  v: z.literal(1),
  type: z.literal('job.update'),
  /** Correlates the backend's answer; a re-published report carries the same token and is recorded once. */
  token: Token,
  status: z.enum(['in_progress', 'succeeded', 'failed', 'rejected']),
  progress: z.number().min(0).max(100).optional(),
  reason: z.string().max(1024).optional(),
  code: z.string().regex(/^[A-Z0-9_]{1,64}$/).optional(),
});
export const JobUpdateAnswer = z.strictObject({
  v: z.literal(1),
  type: z.enum(['job.update.accepted', 'job.update.rejected']),
  token: Token,
  status: z.enum(['queued', 'in_progress', 'succeeded', 'failed', 'rejected']).optional(),
  reason: z.string().max(1024).optional(),
});
export type JobsNotify = z.infer<typeof JobsNotify>;
export type JobUpdate = z.infer<typeof JobUpdate>;

/** Parses one job-topic message: undefined for anything oversized or malformed (logged by the caller). */
export function decodeJobMessage<T>(schema: z.ZodType<T>, payload: Uint8Array, maxBytes = OTA_MAX_JOB_BYTES * 4): T | undefined {
  if (payload.byteLength > maxBytes) return undefined;
  try {
    const r = schema.safeParse(JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload)));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export interface MqttJobsClientOptions {
  client: MqttClient;
  vehicleId: string;
  clock: Clock;
  log: Logger;
  /** Budget of one get or update round trip (default 10 s). */
  timeoutMs?: number;
  /** How long next() waits for the retained notify after subscribing (default 3 s). */
  notifyWaitMs?: number;
  /** Re-publish interval of an unanswered get/update (default 2 s): a message the backend missed is sent again. */
  republishMs?: number;
  /** Random bytes (injectable for deterministic tests). */
  random?: (n: number) => Uint8Array;
}

interface Waiter {
  topics: string[];
  accept(m: MqttMessage): boolean;
}

export class MqttJobsClient implements JobsClient {
  private readonly topics;
  private notify: JobsNotify | undefined;
  private notifyWaiters: (() => void)[] = [];
  private readonly pendingListeners = new Set<(jobs: JobsNotify['jobs']) => void>();
  private readonly waiters = new Set<Waiter>();
  private subscribed: Promise<void> | undefined;
  private readonly random: (n: number) => Uint8Array;
  private readonly detach: () => void;
  /** Reports go out one at a time, in call order. */
  private reportChain: Promise<void> = Promise.resolve();

  constructor(private readonly o: MqttJobsClientOptions) {
    this.topics = jobTopics(o.vehicleId);
    this.detach = o.client.onMessage((m) => this.onMessage(m));
    this.random = o.random ?? ((n) => globalThis.crypto.getRandomValues(new Uint8Array(n)));
  }

  private token(): string {
    return Buffer.from(this.random(12)).toString('hex');
  }

  /** Subscribes to the vehicle's job topics now (next() and report() do it on first use); the retained notify follows. */
  start(): Promise<void> {
    return this.subscribe();
  }

  private subscribe(): Promise<void> {
    this.subscribed ??= this.o.client.subscribe([this.topics.vehicleFilter], 1).then((granted) => {
      if (granted.some((g) => g >= 0x80)) {
        this.subscribed = undefined;
        throw new EvccError('OTA_BROKER_REFUSED', `broker refused the subscription to ${this.topics.vehicleFilter}`, { granted });
      }
    });
    return this.subscribed;
  }

  private onMessage(m: MqttMessage): void {
    if (!m.topic.startsWith(`${this.topics.base}/`)) return;
    if (m.topic === this.topics.notify) {
      const n = decodeJobMessage(JobsNotify, m.payload);
      if (!n) {
        this.o.log.warn({ topic: m.topic, bytes: m.payload.byteLength }, 'jobs: notify dropped (malformed)');
        return;
      }
      this.notify = n;
      for (const w of this.notifyWaiters.splice(0)) w();
      if (n.jobs.length) for (const l of this.pendingListeners) l(n.jobs);
      return;
    }
    for (const w of this.waiters) if (w.topics.includes(m.topic) && w.accept(m)) this.waiters.delete(w);
  }

  /** Publishes `payload` until a message on `answerTopic` passes `accept` (re-publishing) or the budget runs out. */
  private request<T>(topic: string, payload: object, answerTopics: string[], accept: (m: MqttMessage) => T | undefined, what: string): Promise<T> {
    const timeoutMs = this.o.timeoutMs ?? 10_000;
    const republishMs = this.o.republishMs ?? 2_000;
    const body = JSON.stringify(payload);
    return new Promise<T>((resolve, reject) => {
      const clock = this.o.clock;
      let repub: ReturnType<Clock['setTimer']> | undefined;
      const send = () => {
        this.o.client.publish(topic, body, { qos: 1 }).catch(() => undefined);
        if (republishMs > 0) repub = clock.setTimer(send, republishMs);
      };
      const finish = () => {
        clock.clearTimer(deadline);
        if (repub !== undefined) clock.clearTimer(repub);
        this.waiters.delete(waiter);
      };
      const waiter: Waiter = {
        topics: answerTopics,
        accept: (m) => {
          const r = accept(m);
          if (r === undefined) return false;
          finish();
          resolve(r);
          return true;
        },
      };
      const deadline = clock.setTimer(() => {
        finish();
        reject(new EvccError('OTA_JOB_BACKEND_SILENT', `jobs: no answer to ${what} within ${timeoutMs} ms`, { topic, timeoutMs }));
      }, timeoutMs);
      this.waiters.add(waiter);
      send();
    });
  }

  private async waitNotify(): Promise<void> {
    if (this.notify) return;
    const ms = this.o.notifyWaitMs ?? 3_000;
    await new Promise<void>((resolve) => {
      const t = this.o.clock.setTimer(() => {
        this.notifyWaiters = this.notifyWaiters.filter((w) => w !== done);
        resolve();
      }, ms);
      const done = () => {
        this.o.clock.clearTimer(t);
        resolve();
      };
      this.notifyWaiters.push(done);
    });
  }

  /** Called with the pending jobs whenever the backend's notify names one (the update service's trigger). */
  onPending(listener: (jobs: JobsNotify['jobs']) => void): () => void {
    this.pendingListeners.add(listener);
    return () => this.pendingListeners.delete(listener);
  }

  /** The pending jobs the backend announced last (undefined before the first notify). */
  get pending(): JobsNotify['jobs'] | undefined {
    return this.notify?.jobs;
  }

  async next(): Promise<{ jobId: string; document: Uint8Array } | undefined> {
    await this.subscribe();
    await this.waitNotify();
    const job = this.notify?.jobs[0];
    if (!job) return undefined;
    const token = this.token();
    const answer = await this.request(
      this.topics.get(job.jobId),
      { v: 1, type: 'job.get', token },
      [this.topics.getAccepted(job.jobId)],
      (m) => {
        const a = decodeJobMessage(JobDocumentAnswer, m.payload);
        return a && a.token === token && a.jobId === job.jobId ? a : undefined;
      },
      `get ${job.jobId}`,
    );
    if (answer.status !== 'queued' && answer.status !== 'in_progress') {
      // The notify was older than the job's end (a report of ours raced it): nothing left to do for this job.
      this.o.log.info({ jobId: job.jobId, status: answer.status }, 'jobs: announced job is already finished');
      this.notify = { ...this.notify!, jobs: this.notify!.jobs.filter((j) => j.jobId !== job.jobId) };
      return undefined;
    }
    this.o.log.info({ jobId: job.jobId, status: answer.status, version: job.version }, 'jobs: job document received');
    return { jobId: job.jobId, document: new Uint8Array(Buffer.from(answer.document, 'base64')) };
  }

  report(jobId: string, status: JobReportStatus, detail: JobReportDetail = {}): Promise<void> {
    const run = this.reportChain.then(() => this.sendReport(jobId, status, detail));
    this.reportChain = run.catch(() => undefined);
    return run;
  }

  private async sendReport(jobId: string, status: JobReportStatus, detail: JobReportDetail): Promise<void> {
    if (!JOB_ID_PATTERN.test(jobId)) throw new EvccError('CONFIG_INVALID', `job id ${JSON.stringify(jobId)} not allowed in topics`);
    await this.subscribe();
    const token = this.token();
    const update: JobUpdate = {
      v: 1, type: 'job.update', token, status,
      ...(detail.progress !== undefined ? { progress: Math.round(detail.progress * 10) / 10 } : {}),
      ...(detail.reason !== undefined ? { reason: detail.reason.slice(0, 1024) } : {}),
      ...(detail.code !== undefined ? { code: detail.code } : {}),
    };
    const answer = await this.request(
      this.topics.update(jobId),
      update,
      [this.topics.updateAccepted(jobId), this.topics.updateRejected(jobId)],
      (m) => {
        const a = decodeJobMessage(JobUpdateAnswer, m.payload);
        return a && a.token === token ? a : undefined;
      },
      `update ${jobId} ${status}`,
    );
    if (answer.type === 'job.update.rejected') {
      throw new EvccError('OTA_JOB_REPORT_REJECTED', `jobs: backend refused the ${status} report of ${jobId}: ${answer.reason ?? 'no reason'}`, { jobId, status, reason: answer.reason });
    }
    this.o.log.info({ jobId, status, ...detail }, `jobs: ${status} reported`);
  }

  close(): void {
    this.detach();
    this.waiters.clear();
    this.pendingListeners.clear();
  }
}
