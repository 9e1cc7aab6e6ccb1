import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../hal/clock/virtual.ts';
import { EvccError } from '../core/errors.ts';
import { runChargingSession, type ChargingStages, type StageContext } from './evcc.ts';
import type { SessionResult } from './session/engine.ts';

const completed = (o: Partial<SessionResult> = {}): SessionResult => ({
  outcome: 'completed', reason: { code: 'SESSION_COMPLETED', message: 'done', failure: false }, orderly: true, timeline: [], requests: {}, roundTrips: {}, effectTimes: {}, durationMs: 0, ...o,
});
import { silentLogger } from '../core/logger.ts';

/** Stages that take a given virtual time each and honour the abort signal, recording the order they ran in. */
function timedStages(clock: VirtualClock, ms: Record<string, number>, calls: string[]): ChargingStages<string> {
  const take = async (name: string, ctx: StageContext) => {
    calls.push(name);
    await clock.sleep(ms[name] ?? 0, ctx.signal);
  };
  return {
    waitForPlugIn: (ctx) => take('plugin', ctx),
    slac: async (ctx) => { await take('slac', ctx); return { evseMac: '02:00:00:00:00:02', nid: '01', evses: [] }; },
    discoverSecc: async (ctx) => { await take('sdp', ctx); return { address: 'fe80::2', port: 60000, security: 'tls' }; },
    openChannel: async (_s, ctx) => { await take('tls', ctx); return { channel: 'ch', summary: { kind: 'tls', protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-SHA256' } }; },
    // SupportedAppProtocol + SessionSetup take `setup` ms, then the charge loop `loop` ms (no setup budget there).
    session: async (_c, ctx) => {
      await take('setup', ctx);
      ctx.setupComplete();
      await take('loop', ctx);
      return completed();
    },
    closeChannel: async () => { calls.push('close'); },
  };
}

async function drive<T>(clock: VirtualClock, p: Promise<T>): Promise<T> {
  let done = false;
  void p.finally(() => { done = true; });
  for (let i = 0; i < 10_000 && !done; i++) {
    await new Promise((r) => setImmediate(r));
    if (!done) clock.step();
  }
  return p;
}

describe('charging session orchestrator', () => {
  it('runs the stages in order and reports the setup time against the 20 s budget', async () => {
    const clock = new VirtualClock();
    const calls: string[] = [];
    // The charge loop runs 10 min: the 20 s window ends at SessionSetupRes, not at the end of the session.
    const report = await drive(clock, runChargingSession({ stages: timedStages(clock, { plugin: 5000, slac: 3000, sdp: 300, tls: 50, setup: 20, loop: 600_000 }, calls), clock, log: silentLogger() }));
    expect(calls).toEqual(['plugin', 'slac', 'sdp', 'tls', 'setup', 'loop', 'close']);
    expect(report.state).toBe('Ended');
    expect(report.session?.outcome).toBe('completed');
    expect(report.setupMs).toBe(3370); // from plug-in, waiting for the plug does not count
    expect(report.timeline.map((t) => t.state)).toEqual(['WaitForPlugIn', 'Matching', 'WaitForSeccDiscoveryRes', 'WaitForChannel', 'V2GSession']);
    expect(clock.pending).toBe(0);
  });

  it('aborts the running stage with EVCC_SETUP_TIMEOUT when the communication-setup window closes', async () => {
    const clock = new VirtualClock();
    const calls: string[] = [];
    const report = await drive(clock, runChargingSession({ stages: timedStages(clock, { slac: 15_000, sdp: 10_000 }, calls), clock, log: silentLogger() }));
    expect(report.state).toBe('Failed');
    expect(report.error?.code).toBe('EVCC_SETUP_TIMEOUT');
    expect(report.error?.message).toMatch(/WaitForSeccDiscoveryRes/);
    expect(calls).not.toContain('tls');
    expect(clock.pending).toBe(0);
  });

  it('surfaces a stage\'s typed error unchanged and closes the channel it opened', async () => {
    const clock = new VirtualClock();
    const calls: string[] = [];
    const stages = timedStages(clock, {}, calls);
    stages.openChannel = async () => { throw new EvccError('TLS_UNKNOWN_ROOT', 'chain ends in an unknown root'); };
    const report = await drive(clock, runChargingSession({ stages, clock, log: silentLogger() }));
    expect(report.error).toEqual({ code: 'TLS_UNKNOWN_ROOT', message: 'chain ends in an unknown root' });
    expect(report.state).toBe('Failed');
  });

  it('a SessionSetupRes later than the budget is EVCC_SETUP_TIMEOUT; a failed V2G session reports its typed reason', async () => {
    const clock = new VirtualClock();
    const late = await drive(clock, runChargingSession({ stages: timedStages(clock, { slac: 5000, setup: 16_000 }, []), clock, log: silentLogger() }));
    expect(late.error?.code).toBe('EVCC_SETUP_TIMEOUT');
    const stages = timedStages(clock, {}, []);
    stages.session = async (_c, ctx) => { ctx.setupComplete(); return completed({ outcome: 'failed', reason: { code: 'ISO2_EVSE_EMERGENCY_SHUTDOWN', message: 'EVSE_EmergencyShutdown', failure: true } }); };
    const failed = await drive(clock, runChargingSession({ stages, clock, log: silentLogger() }));
    expect(failed).toMatchObject({ state: 'Failed', error: { code: 'ISO2_EVSE_EMERGENCY_SHUTDOWN' } });
    expect(clock.pending).toBe(0);
  });

  it('pause: SessionStop(Pause), wait for the vehicle, then SDP, channel and a session with the old SessionID', async () => {
    const clock = new VirtualClock();
    const calls: string[] = [];
    const stages = timedStages(clock, {}, calls);
    const resumes: (string | undefined)[] = [];
    stages.session = async (_c, ctx) => {
      ctx.setupComplete();
      resumes.push(ctx.resume?.sessionId);
      return resumes.length === 1 ? completed({ outcome: 'paused', protocol: { protocol: 'iso2', sessionId: 'aabbccdd00112233' } }) : completed();
    };
    stages.waitForResume = (signal) => clock.sleep(60_000, signal); // the vehicle waits a minute (no setup budget then)
    const report = await drive(clock, runChargingSession({ stages, clock, log: silentLogger() }));
    expect(resumes).toEqual([undefined, 'aabbccdd00112233']);
    expect(report.state).toBe('Ended');
    expect(report.paused).toHaveLength(1);
    expect(calls.filter((c) => c === 'sdp')).toHaveLength(2);
    expect(report.timeline.map((t) => t.state)).toContain('Paused');
  });
});
