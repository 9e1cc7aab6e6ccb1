import { isEvccError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/logger.ts';
import type { Clock, TimerId } from '../../../hal/clock/types.ts';
import type { RebootHook } from '../../../hal/rauc/types.ts';
import type { AgentOutcome } from './agent.ts';

/**
 * The update agent as a part of the running service (`evcc run`, issue #10): when passes of runUpdateAgent run, and
 * when the machine may reboot.
 *
 *  - A pass at start: it finishes the update a previous boot left (health check, Mark good, counter, report)
 *    before anything else asks for the TPM, then takes the next job.
 *  - A pass on every trigger (the backend's retained `jobs/notify` naming a pending job) and every pollIntervalMs.
 *  - After a pass that found and ended a job (reported or rejected), at once again: a campaign may have queued more
 *    (at most MAX_BACK_TO_BACK in a row, then the poll interval, so a backend that re-queues forever cannot spin us).
 *  - After a pass that failed on the way (backend silent, connection lost, RAUC away), again after retryDelayMs,
 *    doubling up to pollIntervalMs; the agent resumes where it stopped (download's partial file, update record).
 *  - Never two passes at once; a trigger during a pass runs one more pass after it.
 *
 * Charging comes first (the vehicle's reason to be on the charger): a pass starts only while no session runs, and a
 * reboot the agent asks for waits until the running session has ended (ChargingGate). A pass that is already
 * running when a plug-in comes goes on (RAUC cannot be cancelled), but its reboot waits.
 */
export const MAX_BACK_TO_BACK = 8;

/** Whether a charging session runs; the service's sessions report their start and end. */
export class ChargingGate {
  private sessions = 0;
  private waiters: (() => void)[] = [];

  get charging(): boolean {
    return this.sessions > 0;
  }

  /** Marks a session running until the returned function is called (once). */
  sessionStarted(): () => void {
    this.sessions++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.sessions--;
      if (this.sessions === 0) for (const w of this.waiters.splice(0)) w();
    };
  }

  /** Resolves when no session runs (at once if none does). */
  whenIdle(): Promise<void> {
    if (!this.charging) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** The reboot hook, held back while a session charges (the update is installed; the reboot can wait). */
export function rebootWhenIdle(hook: RebootHook, gate: ChargingGate, log: Logger): RebootHook {
  return {
    async reboot(reason) {
      if (gate.charging) {
        log.info({ cp: 'OTA-REBOOT-DEFERRED', reason }, `reboot deferred until the charging session ends (${reason})`);
        await gate.whenIdle();
      }
      await hook.reboot(reason);
    },
  };
}

export interface UpdateServiceOptions {
  /** One pass of the agent (runUpdateAgent bound to the vehicle's parts). */
  pass(): Promise<AgentOutcome>;
  gate: ChargingGate;
  clock: Clock;
  log: Logger;
  pollIntervalMs: number;
  retryDelayMs: number;
  /** Every pass's outcome or error, in order (status and tests). */
  onPass?(result: { outcome?: AgentOutcome; error?: { code: string; message: string } }): void;
}

export type UpdateServiceState = 'stopped' | 'waiting' | 'running';

export class UpdateService {
  private state: UpdateServiceState = 'stopped';
  private timer: TimerId | undefined;
  private again = false;
  private backToBack = 0;
  private retryMs: number;
  private running: Promise<void> | undefined;
  private heldBySession = false;

  constructor(private readonly o: UpdateServiceOptions) {
    this.retryMs = o.retryDelayMs;
  }

  get status(): UpdateServiceState {
    return this.state;
  }

  /** The first pass at once. */
  start(): void {
    if (this.state !== 'stopped') return;
    this.state = 'waiting';
    this.o.log.info({ cp: 'OTA-UPDATES-ON', pollMs: this.o.pollIntervalMs }, `OTA updates on: a pass now, on every jobs notify and every ${Math.round(this.o.pollIntervalMs / 60_000)} min`);
    this.schedule(0);
  }

  /** A pass soon (e.g. the backend announced a pending job); after the running one, if one runs. */
  trigger(reason: string): void {
    if (this.state === 'stopped') return;
    if (this.state === 'running') {
      this.again = true;
      return;
    }
    this.o.log.debug({ cp: 'OTA-UPDATES-TRIGGER', reason }, `update pass: ${reason}`);
    this.schedule(0);
  }

  /**
   * No further passes. A running pass is not waited for (a download or an install can take minutes, longer than a
   * service stop may): its parts close under it and it ends with an error; every step resumes at the next start.
   */
  stop(): void {
    this.state = 'stopped';
    if (this.timer !== undefined) this.o.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  /** Settles when the pass running now (if any) has (tests). */
  async settled(): Promise<void> {
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.timer !== undefined) this.o.clock.clearTimer(this.timer);
    this.timer = this.o.clock.setTimer(() => {
      this.timer = undefined;
      this.running = this.runPass();
    }, ms);
  }

  private async runPass(): Promise<void> {
    if (this.state !== 'waiting') return;
    if (this.o.gate.charging) {
      if (this.heldBySession) return; // a pass already waits for the session's end
      this.heldBySession = true;
      this.o.log.debug({ cp: 'OTA-UPDATES-WAIT-SESSION' }, 'update pass waits for the charging session to end');
      await this.o.gate.whenIdle();
      this.heldBySession = false;
      if (this.state !== 'waiting') return;
    }
    this.state = 'running';
    this.again = false;
    let next: number;
    try {
      const outcome = await this.o.pass();
      this.o.onPass?.({ outcome });
      this.retryMs = this.o.retryDelayMs;
      const endedJob = outcome.status === 'reported' || outcome.status === 'rejected';
      this.backToBack = endedJob ? this.backToBack + 1 : 0;
      next = (endedJob && this.backToBack < MAX_BACK_TO_BACK) || this.again ? 0 : this.o.pollIntervalMs;
      if (outcome.status === 'rebooting') next = this.o.pollIntervalMs; // alive long after the request: ask again then
    } catch (err) {
      const code = isEvccError(err) ? err.code : 'UNKNOWN';
      const message = err instanceof Error ? err.message : String(err);
      this.o.onPass?.({ error: { code, message } });
      // A trigger during the failed pass (typically the notify once the link came up) is worth a prompt retry.
      next = this.again ? Math.min(this.retryMs, 5_000) : this.retryMs;
      this.o.log.warn({ cp: 'OTA-UPDATES-PASS-FAILED', code, retryMs: next }, `update pass failed (${code}): ${message}; again in ${Math.round(next / 1000)} s`);
      this.retryMs = Math.min(this.o.pollIntervalMs, this.retryMs * 2);
    }
    if ((this.state as UpdateServiceState) === 'stopped') return; // stop() came during the pass
    this.state = 'waiting';
    this.schedule(next);
  }
}
