import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../clock/virtual.ts';
import { SystemdNotifier } from './notify.ts';
import { NoServiceManager } from './types.ts';
import { MainLoopWatchdog } from './watchdog.ts';

function recorder() {
  const sent: string[][] = [];
  let release: (() => void) | undefined;
  let hold = false;
  const send = async (a: readonly string[]) => {
    sent.push([...a]);
    if (hold) await new Promise<void>((r) => (release = r));
  };
  return { sent, send, holdNext: () => (hold = true), release: () => { hold = false; release?.(); } };
}

describe('SystemdNotifier (sd_notify through systemd-notify)', () => {
  it('READY once with its status, then STATUS only; one-line status; STOPPING', async () => {
    const r = recorder();
    const n = new SystemdNotifier({ socket: '/run/x', send: r.send });
    n.ready('waiting for plug-in\non ttyACM0');
    n.ready('again');
    n.stopping('SIGTERM');
    await n.close();
    expect(r.sent).toEqual([['READY=1', 'STATUS=waiting for plug-in on ttyACM0'], ['STATUS=again'], ['STOPPING=1', 'STATUS=SIGTERM']]);
  });

  it('the watchdog period comes from WATCHDOG_USEC only when WATCHDOG_PID names this process', () => {
    expect(new SystemdNotifier({ socket: 's', watchdogUsec: '20000000', pid: 42, send: async () => {} }).watchdogMs).toBe(20_000);
    expect(new SystemdNotifier({ socket: 's', watchdogUsec: '20000000', watchdogPid: '42', pid: 42, send: async () => {} }).watchdogMs).toBe(20_000);
    expect(new SystemdNotifier({ socket: 's', watchdogUsec: '20000000', watchdogPid: '7', pid: 42, send: async () => {} }).watchdogMs).toBeUndefined();
    expect(new SystemdNotifier({ socket: 's', send: async () => {} }).watchdogMs).toBeUndefined();
  });

  it('a ping while one is pending is dropped; pings without a watchdog are not sent', async () => {
    const r = recorder();
    const n = new SystemdNotifier({ socket: 's', watchdogUsec: '1000000', send: r.send });
    r.holdNext();
    n.watchdog();
    await Promise.resolve();
    n.watchdog();
    n.watchdog();
    r.release();
    await n.close();
    expect(r.sent).toEqual([['WATCHDOG=1']]);
    n.watchdog();
    await n.close();
    expect(r.sent).toHaveLength(2);
    const quiet = recorder();
    const none = new SystemdNotifier({ socket: 's', send: quiet.send });
    none.watchdog();
    await none.close();
    expect(quiet.sent).toEqual([]);
  });

  it('from the environment: nothing without NOTIFY_SOCKET; the variables are not left for children', () => {
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '6000000', WATCHDOG_PID: String(process.pid) };
    const n = SystemdNotifier.fromEnvironment(env);
    expect(n).toBeInstanceOf(SystemdNotifier);
    expect(n.watchdogMs).toBe(6000);
    expect(env).toEqual({});
    expect(SystemdNotifier.fromEnvironment({})).toBeInstanceOf(NoServiceManager);
  });

  it('a failing sender does not break the queue', async () => {
    const sent: string[] = [];
    const n = new SystemdNotifier({ socket: 's', send: async (a) => { sent.push(a[0]!); if (a[0] === 'READY=1') throw new Error('no manager'); } });
    n.ready('x');
    n.status('y');
    await n.close();
    expect(sent).toEqual(['READY=1', 'STATUS=y']);
  });
});

describe('MainLoopWatchdog', () => {
  it('pings at half the manager period from the clock, and stops', async () => {
    const clock = new VirtualClock();
    const r = recorder();
    const n = new SystemdNotifier({ socket: 's', watchdogUsec: '4000000', send: r.send });
    const w = new MainLoopWatchdog(n, clock);
    expect(w.intervalMs).toBe(2000);
    w.start();
    for (let t = 0; t < 10; t++) {
      await n.close();
      clock.advance(1000);
    }
    await n.close();
    expect(w.sent).toBe(6); // t = 0, 2, 4, 6, 8, 10 s
    w.stop();
    clock.advance(10_000);
    expect(w.sent).toBe(6);
  });

  it('does nothing when the manager expects no pings', () => {
    const w = new MainLoopWatchdog(new NoServiceManager(), new VirtualClock());
    w.start();
    expect(w.intervalMs).toBeUndefined();
    expect(w.sent).toBe(0);
  });
});
