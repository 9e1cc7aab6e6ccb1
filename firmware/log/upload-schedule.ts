import { isEvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { Clock, TimerId } from '../../hal/clock/types.ts';
import type { MqttLinkStatus } from '../../hal/mqtt/types.ts';

/**
 * When the running vehicle uploads its security log (firmware/log/upload.ts does one upload): once whenever the OEM
 * link comes up (at start and after every reconnect), after each checkpoint, and every `intervalMs`. One upload at a
 * time; a trigger during an upload runs one more after it (so a checkpoint written meanwhile is not left for the
 * next interval). A failed upload is retried at the next trigger only: each upload starts from the head the backend
 * answers, so a retry never duplicates what an earlier, half-answered one stored.
 *
 * Sans-I/O apart from its ports: the upload, the link's status, the log's head (polled in memory to notice
 * checkpoints, because SecurityLog has no append listener), the clock and the logger.
 */
export const SECURITY_LOG_UPLOAD_INTERVAL_MS = 15 * 60_000;
/** How often the log's head is looked at for a new checkpoint (an in-memory comparison). */
export const SECURITY_LOG_WATCH_MS = 2_000;

/** What the schedule reads of the log (SecurityLog fits). */
export interface WatchedLog {
  readonly head: { seq: number };
  entriesFrom(seq: number): readonly { seq: number; kind: string }[];
}

/** The OEM link's session state (the link's MqttClient fits). */
export interface LinkStatusSource {
  readonly status: MqttLinkStatus;
  onStatus(handler: (status: MqttLinkStatus) => void): () => void;
}

export type UploadTrigger = 'connect' | 'checkpoint' | 'interval' | 'stop';

export interface SecurityLogUploadsDeps {
  /** One upload of what the backend lacks (uploadSecurityLog bound to the log and the backend port). */
  upload: () => Promise<{ sent: number; through: number }>;
  securityLog: WatchedLog;
  link: LinkStatusSource;
  clock: Clock;
  log: Logger;
}

export interface SecurityLogUploadsOptions {
  intervalMs?: number;
  watchMs?: number;
}

export class SecurityLogUploads {
  private readonly intervalMs: number;
  private readonly watchMs: number;
  private running: Promise<void> | undefined;
  private again: UploadTrigger | undefined;
  private detach: (() => void) | undefined;
  private intervalTimer: TimerId | undefined;
  private watchTimer: TimerId | undefined;
  private seen = -1;
  private stopped = false;
  /** Codes already logged since the last good upload: a link that stays bad is one warning per cause, not per try. */
  private readonly failures = new Set<string>();
  private failedTries = 0;

  constructor(private readonly d: SecurityLogUploadsDeps, o: SecurityLogUploadsOptions = {}) {
    this.intervalMs = o.intervalMs ?? SECURITY_LOG_UPLOAD_INTERVAL_MS;
    this.watchMs = o.watchMs ?? SECURITY_LOG_WATCH_MS;
  }

  start(): void {
    if (this.detach || this.stopped) return;
    this.seen = this.d.securityLog.head.seq;
    this.detach = this.d.link.onStatus((status) => {
      if (status === 'connected') this.trigger('connect');
    });
    this.armInterval();
    this.armWatch();
    if (this.d.link.status === 'connected') this.trigger('connect');
  }

  /** Cancels the timers and the link listener; resolves once an upload already under way has settled. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.again = undefined;
    this.detach?.();
    this.detach = undefined;
    if (this.intervalTimer !== undefined) this.d.clock.clearTimer(this.intervalTimer);
    if (this.watchTimer !== undefined) this.d.clock.clearTimer(this.watchTimer);
    this.intervalTimer = this.watchTimer = undefined;
    await this.running;
  }

  /**
   * One last upload before the service stops (its stop checkpoint included), waited for at most `budgetMs` through
   * the clock: a stop never hangs on a silent backend, and what did not go now goes at the next connect.
   */
  async flush(budgetMs: number): Promise<void> {
    if (this.stopped) return;
    this.trigger('stop');
    const drained = (async () => {
      while (this.running) await this.running;
    })();
    const budget = new AbortController();
    await Promise.race([drained, this.d.clock.sleep(budgetMs, budget.signal).catch(() => undefined)]);
    budget.abort();
  }

  /** True while an upload runs. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Asks for an upload now (what the timers and the link listener call). */
  trigger(reason: UploadTrigger): void {
    if (this.stopped) return;
    // Offline, the request would only wait out its budget: the reconnect triggers the upload instead.
    if (this.d.link.status !== 'connected') return;
    if (this.running) {
      this.again ??= reason;
      return;
    }
    this.running = this.run(reason).finally(() => {
      this.running = undefined;
      const next = this.again;
      this.again = undefined;
      if (next) this.trigger(next);
    });
  }

  private async run(reason: UploadTrigger): Promise<void> {
    try {
      const r = await this.d.upload();
      if (this.failedTries > 0) {
        this.d.log.info({ cp: 'LOG-UPLOAD-RESUMED', reason, failedTries: this.failedTries, sent: r.sent, through: r.through }, `security log upload works again after ${this.failedTries} failed attempt(s)`);
      }
      this.failures.clear();
      this.failedTries = 0;
      if (r.sent > 0) this.d.log.info({ cp: 'LOG-UPLOADED', reason, sent: r.sent, through: r.through }, `security log: ${r.sent} entries uploaded, the OEM backend holds it through seq ${r.through}`);
      else this.d.log.debug({ reason, through: r.through }, 'security log: nothing new to upload');
    } catch (err) {
      this.failedTries++;
      const code = isEvccError(err) ? err.code : 'INTERNAL';
      const cause = isEvccError(err) && typeof err.details.cause === 'string' ? err.details.cause : undefined;
      const key = cause ? `${code}/${cause}` : code;
      const fields = { code, ...(cause ? { cause } : {}), reason, failedTries: this.failedTries };
      if (this.failures.has(key)) {
        this.d.log.debug(fields, `security log upload failed again: ${(err as Error).message}`);
      } else {
        this.failures.add(key);
        this.d.log.warn({ ...fields, cp: 'LOG-UPLOAD-FAILED' }, `security log upload failed, retried at the next connect, checkpoint or interval: ${(err as Error).message}`);
      }
    }
  }

  private armInterval(): void {
    this.intervalTimer = this.d.clock.setTimer(() => {
      if (this.stopped) return;
      this.armInterval();
      this.trigger('interval');
    }, this.intervalMs);
  }

  private armWatch(): void {
    this.watchTimer = this.d.clock.setTimer(() => {
      if (this.stopped) return;
      this.armWatch();
      const head = this.d.securityLog.head.seq;
      if (head === this.seen) return;
      const checkpointed = this.d.securityLog.entriesFrom(this.seen + 1).some((e) => e.kind === 'log.checkpoint');
      this.seen = head;
      if (checkpointed) this.trigger('checkpoint');
    }, this.watchMs);
  }
}
