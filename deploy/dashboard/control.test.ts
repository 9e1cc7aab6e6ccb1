import { describe, expect, it } from 'vitest';
import { SessionControl } from './control.ts';

describe('SessionControl', () => {
  it('a session the service started on plug-in: Start is refused while it runs, Stop ends it', () => {
    const c = new SessionControl({ run: async () => undefined }, { startable: true });
    let stopped = 0;
    const ended = c.attachExternal(() => stopped++);
    expect(c.start()).toEqual({ ok: false, reason: 'a session is running' });
    expect(c.stop()).toEqual({ ok: true, state: 'stopping' });
    expect(stopped).toBe(1);
    ended();
    expect(c.stop()).toEqual({ ok: false, reason: 'no session is running' });
  });

  it('without an orderly stop the session is aborted at once; with one, after the grace period', async () => {
    const signals: AbortSignal[] = [];
    const run = (signal: AbortSignal) => new Promise<void>((resolve) => {
      signals.push(signal);
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    const hard = new SessionControl({ run }, { startable: true });
    hard.start();
    hard.stop();
    expect(signals[0]!.aborted).toBe(true);
    expect((signals[0]!.reason as { code: string }).code).toBe('ABORTED');

    let asked = 0;
    const soft = new SessionControl({ run, requestOrderlyStop: () => ++asked > 0 }, { startable: true, graceMs: 30 });
    soft.start();
    soft.stop();
    expect(asked).toBe(1);
    expect(signals[1]!.aborted).toBe(false); // the vehicle is asked first
    await new Promise((r) => setTimeout(r, 60));
    expect(signals[1]!.aborted).toBe(true); // it did not end in time: aborted
  });
});
