import { describe, expect, it } from 'vitest';
import { EvccError } from '../../../core/errors.ts';
import { silentLogger } from '../../../core/logger.ts';
import { VirtualClock } from '../../../hal/clock/virtual.ts';
import type { AgentOutcome } from './agent.ts';
import { ChargingGate, MAX_BACK_TO_BACK, rebootWhenIdle, UpdateService } from './service.ts';

const MIN = 60_000;
const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

/** A service whose passes return (or throw) the scripted results in order, then idle. */
function rig(script: (AgentOutcome | Error)[] = [], gate = new ChargingGate()) {
  const clock = new VirtualClock();
  const passesAt: number[] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const service = new UpdateService({
    gate, clock, log: silentLogger(), pollIntervalMs: 60 * MIN, retryDelayMs: MIN,
    pass: async () => {
      passesAt.push(clock.now());
      if (hold) await new Promise<void>((r) => (release = r));
      const next = script.shift() ?? { status: 'idle' };
      if (next instanceof Error) throw next;
      return next;
    },
  });
  const advance = async (ms: number) => {
    clock.advance(ms);
    await flush();
  };
  return { clock, service, passesAt, gate, advance, holdPasses: () => (hold = true), releasePass: () => { hold = false; release?.(); } };
}

describe('UpdateService: when the agent runs', () => {
  it('a pass at start, then every poll interval while idle', async () => {
    const r = rig();
    r.service.start();
    await r.advance(0);
    expect(r.passesAt).toEqual([0]);
    await r.advance(59 * MIN);
    expect(r.passesAt).toEqual([0]);
    await r.advance(MIN);
    expect(r.passesAt).toEqual([0, 60 * MIN]);
    r.service.stop();
    await r.advance(120 * MIN);
    expect(r.passesAt).toHaveLength(2);
  });

  it('a job that ended (reported, rejected) is followed by another pass at once, at most MAX_BACK_TO_BACK in a row', async () => {
    const ended: AgentOutcome = { status: 'rejected', jobId: 'j', code: 'OTA_JOB_DOWNGRADE', reason: 'old' };
    const r = rig(Array.from({ length: 20 }, () => ended));
    r.service.start();
    await r.advance(0);
    for (let i = 0; i < 20; i++) await r.advance(0);
    expect(r.passesAt).toEqual(Array.from({ length: MAX_BACK_TO_BACK }, () => 0));
    await r.advance(60 * MIN);
    expect(r.passesAt.length).toBe(MAX_BACK_TO_BACK + 1);
  });

  it('a failed pass is retried after retryDelayMs, doubling up to the poll interval, and reset by a good pass', async () => {
    const silent = new EvccError('OTA_JOB_BACKEND_SILENT', 'no answer');
    const r = rig([silent, silent, silent, { status: 'idle' }, silent]);
    r.service.start();
    await r.advance(0);
    await r.advance(MIN);
    await r.advance(2 * MIN);
    await r.advance(4 * MIN);
    expect(r.passesAt).toEqual([0, MIN, 3 * MIN, 7 * MIN]); // the 4th pass is the good one
    await r.advance(60 * MIN); // after it: the poll interval; this pass fails
    expect(r.passesAt.at(-1)).toBe(67 * MIN);
    await r.advance(MIN); // its retry comes after the first delay again, not the doubled one
    expect(r.passesAt).toEqual([0, MIN, 3 * MIN, 7 * MIN, 67 * MIN, 68 * MIN]);
  });

  it('a trigger runs a pass now; a trigger during a pass runs one more after it, never two at once', async () => {
    const r = rig();
    r.service.start();
    await r.advance(0);
    expect(r.passesAt).toEqual([0]);
    await r.advance(10 * MIN);
    r.holdPasses();
    r.service.trigger('jobs notify: j1');
    await r.advance(0);
    expect(r.passesAt).toEqual([0, 10 * MIN]);
    expect(r.service.status).toBe('running');
    r.service.trigger('jobs notify: j1 again');
    r.service.trigger('jobs notify: j2');
    await r.advance(0);
    expect(r.passesAt).toHaveLength(2); // still the one running
    r.releasePass();
    await r.advance(0);
    await r.advance(0);
    expect(r.passesAt).toEqual([0, 10 * MIN, 10 * MIN]);
    await r.advance(30 * MIN);
    expect(r.passesAt).toHaveLength(3);
  });

  it('no pass starts while a session charges; the held pass runs once the session ends', async () => {
    const gate = new ChargingGate();
    const r = rig([], gate);
    const ended = gate.sessionStarted();
    r.service.start();
    await r.advance(0);
    r.service.trigger('notify');
    await r.advance(0);
    await r.advance(120 * MIN);
    expect(r.passesAt).toEqual([]);
    r.clock.advance(5 * MIN);
    ended();
    await flush();
    expect(r.passesAt).toEqual([125 * MIN]);
  });
});

describe('rebootWhenIdle', () => {
  it('reboots at once when nothing charges, and only after the last session ended otherwise', async () => {
    const gate = new ChargingGate();
    const reasons: string[] = [];
    const hook = rebootWhenIdle({ reboot: async (why) => void reasons.push(why) }, gate, silentLogger());
    await hook.reboot('first');
    expect(reasons).toEqual(['first']);
    const a = gate.sessionStarted();
    const b = gate.sessionStarted();
    let done = false;
    const p = hook.reboot('second').then(() => (done = true));
    await flush();
    expect(done).toBe(false);
    a();
    a(); // a second call of the same end changes nothing
    await flush();
    expect(done).toBe(false);
    b();
    await p;
    expect(reasons).toEqual(['first', 'second']);
  });

  it('a failing reboot command reaches the agent (its record stays rebooting: asked again at the next pass)', async () => {
    const hook = rebootWhenIdle({ reboot: async () => { throw new EvccError('SYSTEM_REBOOT_FAILED', 'exit 1'); } }, new ChargingGate(), silentLogger());
    await expect(hook.reboot('x')).rejects.toMatchObject({ code: 'SYSTEM_REBOOT_FAILED' });
  });
});
