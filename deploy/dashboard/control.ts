/**
 * Start and Stop of the dashboard (Kilic, Fig. 11/12): one session at a time. Start runs the composition root's
 * session function; Stop first asks for an orderly end (the vehicle requests SessionStop, as a driver would), and
 * aborts the session (typed ABORTED) if it has not ended after a grace period or is still setting up.
 *
 * Nothing here touches keys, roots or policies: the only actions are "run the configured session" and "end it".
 */
import { EvccError } from '../../core/errors.ts';

export interface SessionRunner {
  /** Runs one session to its end; must settle (the report carries a failure, it does not throw for one). */
  run(signal: AbortSignal): Promise<void>;
  /** Asks the running session to end in order (EV stop request); false: not possible now (abort instead). */
  requestOrderlyStop?(): boolean;
}

export type ControlAnswer = { ok: true; state: 'started' | 'stopping' } | { ok: false; reason: string };

/** How long an orderly stop may take before the session is aborted, ms. */
export const STOP_GRACE_MS = 5_000;

export class SessionControl {
  private running: { abort: AbortController; done: Promise<void>; graceTimer?: NodeJS.Timeout } | undefined;
  private external: { stop: () => void } | undefined;

  constructor(private readonly runner: SessionRunner, private readonly o: { startable: boolean; whyNotStartable?: string; graceMs?: number } = { startable: true }) {}

  get busy(): boolean {
    return this.running !== undefined;
  }

  start(): ControlAnswer {
    if (!this.o.startable) return { ok: false, reason: this.o.whyNotStartable ?? 'sessions start on plug-in here' };
    if (this.running || this.external) return { ok: false, reason: 'a session is running' };
    const abort = new AbortController();
    const done = this.runner.run(abort.signal).catch(() => undefined).finally(() => {
      if (this.running?.graceTimer) clearTimeout(this.running.graceTimer);
      this.running = undefined;
    });
    this.running = { abort, done };
    return { ok: true, state: 'started' };
  }

  /**
   * A session the composition root started itself (on plug-in): Stop ends it with `stop`, Start is refused while
   * it runs. Returns the function to call when that session has ended.
   */
  attachExternal(stop: () => void): () => void {
    const entry = { stop };
    this.external = entry;
    return () => {
      if (this.external === entry) this.external = undefined;
    };
  }

  stop(): ControlAnswer {
    const r = this.running;
    if (!r && this.external) {
      this.external.stop();
      return { ok: true, state: 'stopping' };
    }
    if (!r) return { ok: false, reason: 'no session is running' };
    if (r.graceTimer) return { ok: true, state: 'stopping' };
    const abortNow = () => r.abort.abort(new EvccError('ABORTED', 'stopped from the dashboard'));
    if (this.runner.requestOrderlyStop?.()) {
      r.graceTimer = setTimeout(abortNow, this.o.graceMs ?? STOP_GRACE_MS);
      r.graceTimer.unref();
    } else {
      abortNow();
    }
    return { ok: true, state: 'stopping' };
  }

  /** Ends a running session (service shutdown) and waits for it. */
  async close(): Promise<void> {
    const r = this.running;
    if (!r) return;
    r.abort.abort(new EvccError('ABORTED', 'dashboard closing'));
    await r.done;
  }
}
