import { describe, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { createLogger } from '../../core/logger.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import type { MqttLinkStatus } from '../../hal/mqtt/types.ts';
import { SECURITY_LOG_UPLOAD_INTERVAL_MS, SecurityLogUploads } from './upload-schedule.ts';

const flush = async (n = 10) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

class FakeLink {
  status: MqttLinkStatus = 'connecting';
  private readonly handlers = new Set<(s: MqttLinkStatus) => void>();
  onStatus(h: (s: MqttLinkStatus) => void): () => void {
    this.handlers.add(h);
    return () => this.handlers.delete(h);
  }
  set(s: MqttLinkStatus): void {
    this.status = s;
    for (const h of this.handlers) h(s);
  }
  get listeners(): number {
    return this.handlers.size;
  }
}

class FakeLog {
  entries: { seq: number; kind: string }[] = [{ seq: 0, kind: 'log.genesis' }];
  get head() {
    return { seq: this.entries.at(-1)!.seq };
  }
  entriesFrom(seq: number) {
    return this.entries.filter((e) => e.seq >= seq);
  }
  add(kind: string): void {
    this.entries.push({ seq: this.entries.length, kind });
  }
}

/** An upload port whose calls the test answers one by one. */
function rig(o: { intervalMs?: number; watchMs?: number } = {}) {
  const clock = new VirtualClock();
  const link = new FakeLink();
  const securityLog = new FakeLog();
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const calls: { resolve: (v: { sent: number; through: number }) => void; reject: (e: unknown) => void }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const upload = () => new Promise<{ sent: number; through: number }>((resolve, reject) => {
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    const done = <A>(f: (a: A) => void) => (a: A) => { inFlight--; f(a); };
    calls.push({ resolve: done(resolve), reject: done(reject) });
  });
  const uploads = new SecurityLogUploads({ upload, securityLog, link, clock, log }, o);
  const answer = async (v: { sent: number; through: number } | Error) => {
    const c = calls.at(-1)!;
    if (v instanceof Error) c.reject(v);
    else c.resolve(v);
    await flush();
  };
  return { clock, link, securityLog, lines, calls, uploads, answer, maxInFlight: () => maxInFlight, at: (cp: string) => lines.filter((l) => l.cp === cp) };
}

describe('SecurityLogUploads', () => {
  it('uploads when the link comes up, and again after every reconnect; not while offline', async () => {
    const r = rig();
    r.uploads.start();
    expect(r.calls).toHaveLength(0);
    r.link.set('connected');
    expect(r.calls).toHaveLength(1);
    await r.answer({ sent: 1, through: 0 });
    expect(r.at('LOG-UPLOADED')).toMatchObject([{ reason: 'connect', sent: 1, through: 0 }]);

    r.link.set('offline');
    r.securityLog.add('keys.refused');
    r.securityLog.add('log.checkpoint');
    r.clock.advance(10_000); // the checkpoint is seen while offline: nothing is asked of a link that is down
    expect(r.calls).toHaveLength(1);
    r.link.set('connected');
    expect(r.calls).toHaveLength(2);
    await r.answer({ sent: 2, through: 2 });
    await r.uploads.stop();
  });

  it('a link already up at start uploads at once', async () => {
    const r = rig();
    r.link.status = 'connected';
    r.uploads.start();
    expect(r.calls).toHaveLength(1);
    await r.answer({ sent: 0, through: 0 });
    expect(r.at('LOG-UPLOADED')).toHaveLength(0); // nothing new: a debug line only
    await r.uploads.stop();
  });

  it('uploads after a checkpoint (not after a plain entry) and every interval', async () => {
    const r = rig({ watchMs: 1_000 });
    r.link.status = 'connected';
    r.uploads.start();
    await r.answer({ sent: 1, through: 0 });

    r.securityLog.add('attestation.answer');
    r.clock.advance(1_000);
    expect(r.calls).toHaveLength(1);
    r.securityLog.add('log.checkpoint');
    r.clock.advance(1_000);
    expect(r.calls).toHaveLength(2);
    await r.answer({ sent: 2, through: 2 });
    expect(r.at('LOG-UPLOADED').at(-1)).toMatchObject({ reason: 'checkpoint', sent: 2 });
    r.clock.advance(5_000); // the same checkpoint does not trigger twice
    expect(r.calls).toHaveLength(2);

    r.clock.advance(SECURITY_LOG_UPLOAD_INTERVAL_MS - 7_000 - 1);
    expect(r.calls).toHaveLength(2);
    r.clock.advance(1);
    expect(r.calls).toHaveLength(3);
    await r.answer({ sent: 0, through: 2 });
    r.clock.advance(SECURITY_LOG_UPLOAD_INTERVAL_MS);
    expect(r.calls).toHaveLength(4);
    await r.answer({ sent: 0, through: 2 });
    await r.uploads.stop();
  });

  it('never two uploads at once: triggers during an upload make exactly one more after it', async () => {
    const r = rig({ watchMs: 1_000 });
    r.link.status = 'connected';
    r.uploads.start();
    expect(r.uploads.busy).toBe(true);
    r.securityLog.add('log.checkpoint');
    r.clock.advance(1_000);
    r.link.set('connected');
    r.clock.advance(SECURITY_LOG_UPLOAD_INTERVAL_MS);
    expect(r.calls).toHaveLength(1);
    await r.answer({ sent: 2, through: 1 });
    expect(r.calls).toHaveLength(2);
    await r.answer({ sent: 0, through: 1 });
    expect(r.calls).toHaveLength(2);
    expect(r.uploads.busy).toBe(false);
    expect(r.maxInFlight()).toBe(1);
    await r.uploads.stop();
  });

  it('failures are logged once per distinct code until an upload works again, and retried at the next trigger only', async () => {
    const r = rig({ watchMs: 1_000 });
    r.link.status = 'connected';
    r.uploads.start();
    const silent = () => new EvccError('OTA_BACKEND_SILENT', 'no valid answer from the OEM backend within 10000 ms');
    await r.answer(silent());
    expect(r.calls).toHaveLength(1);
    r.clock.advance(60_000); // no retry of its own
    expect(r.calls).toHaveLength(1);

    r.link.set('offline');
    r.link.set('connected');
    await r.answer(silent());
    r.securityLog.add('log.checkpoint');
    r.clock.advance(1_000);
    await r.answer(new EvccError('LOG_CHAIN_BROKEN', 'the OEM backend holds this vehicle\'s security log through seq 9, which this log does not contain', { seq: 9 }));
    r.link.set('connected');
    await r.answer(new EvccError('LOG_CHAIN_BROKEN', 'again', { seq: 9 }));
    r.link.set('connected');
    await r.answer(new EvccError('LOG_UPLOAD_REFUSED', 'refused', { cause: 'LOG_CHECKPOINT_INVALID' }));
    expect(r.calls).toHaveLength(5);
    expect(r.at('LOG-UPLOAD-FAILED')).toMatchObject([
      { level: 'warn', code: 'OTA_BACKEND_SILENT', reason: 'connect', failedTries: 1 },
      { level: 'warn', code: 'LOG_CHAIN_BROKEN', reason: 'checkpoint', failedTries: 3 },
      { level: 'warn', code: 'LOG_UPLOAD_REFUSED', cause: 'LOG_CHECKPOINT_INVALID', failedTries: 5 },
    ]);
    expect(r.lines.filter((l) => l.level === 'debug' && typeof l.msg === 'string' && l.msg.includes('failed again'))).toHaveLength(2);

    r.link.set('connected');
    await r.answer({ sent: 3, through: 4 });
    expect(r.at('LOG-UPLOAD-RESUMED')).toMatchObject([{ failedTries: 5, sent: 3 }]);
    // a good upload resets the rate limit: the same cause later is worth a warning again
    r.link.set('connected');
    await r.answer(silent());
    expect(r.at('LOG-UPLOAD-FAILED')).toHaveLength(4);
    await r.uploads.stop();
  });

  it('stop() cancels the timers and the link listener, and waits for an upload under way', async () => {
    const r = rig();
    r.link.status = 'connected';
    r.uploads.start();
    expect(r.clock.pending).toBe(2);
    expect(r.link.listeners).toBe(1);
    let stopped = false;
    const stopping = r.uploads.stop().then(() => (stopped = true));
    await flush();
    expect(stopped).toBe(false);
    await r.answer({ sent: 1, through: 0 });
    await stopping;
    expect(r.clock.pending).toBe(0);
    expect(r.link.listeners).toBe(0);
    r.link.set('connected');
    r.securityLog.add('log.checkpoint');
    r.clock.advance(SECURITY_LOG_UPLOAD_INTERVAL_MS * 2);
    r.uploads.trigger('connect');
    expect(r.calls).toHaveLength(1);
  });

  it('flush at stop: one more upload (after a running one), waited for at most its budget', async () => {
    const r = rig();
    r.uploads.start();
    r.link.set('connected');
    expect(r.calls).toHaveLength(1); // the connect upload still runs
    let done = false;
    const flushed = r.uploads.flush(3_000).then(() => (done = true));
    await flush();
    expect(done).toBe(false);
    await r.answer({ sent: 2, through: 1 }); // the connect upload ends: the stop upload follows it
    expect(r.calls).toHaveLength(2);
    await r.answer({ sent: 1, through: 2 });
    await flushed;
    expect(r.at('LOG-UPLOADED').map((l) => l.reason)).toEqual(['connect', 'stop']);

    // A silent backend: the stop goes on after the budget, the upload is left to the next start.
    let settled = false;
    const silent = r.uploads.flush(3_000).then(() => (settled = true));
    await flush();
    expect(r.calls).toHaveLength(3);
    r.clock.advance(2_999);
    await flush();
    expect(settled).toBe(false);
    r.clock.advance(1);
    await silent;
    expect(settled).toBe(true);
    await r.answer(new EvccError('OTA_BACKEND_SILENT', 'no answer')); // (so stop() need not wait for it)
    await r.uploads.stop();
  });
});
