import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../hal/clock/virtual.ts';
import { EvccError } from '../core/errors.ts';
import { runChargingSession, type ChargingStages, type StageContext } from './evcc.ts';
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
    openChannel: async (_s, ctx) => { await take('tls', ctx); return { channel: 'ch', summary: { protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-SHA256' } }; },
    appHandshake: async (_c, ctx) => { await take('sap', ctx); return { namespace: 'urn:iso:15118:2:2013:MsgDef', schemaId: 1, responseCode: 'OK_SuccessfulNegotiation' }; },
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
    const report = await drive(clock, runChargingSession({ stages: timedStages(clock, { plugin: 5000, slac: 3000, sdp: 300, tls: 50, sap: 20 }, calls), clock, log: silentLogger() }));
    expect(calls).toEqual(['plugin', 'slac', 'sdp', 'tls', 'sap', 'close']);
    expect(report.state).toBe('Established');
    expect(report.setupMs).toBe(3370); // from plug-in, waiting for the plug does not count
    expect(report.timeline.map((t) => t.state)).toEqual(['WaitForPlugIn', 'Matching', 'WaitForSeccDiscoveryRes', 'WaitForTlsEstablished', 'WaitForSupportedAppProtocolRes']);
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
    stages.appHandshake = async () => { throw new EvccError('APPHAND_NO_COMMON_PROTOCOL', 'SECC supports none of ours'); };
    const report = await drive(clock, runChargingSession({ stages, clock, log: silentLogger() }));
    expect(report.error).toEqual({ code: 'APPHAND_NO_COMMON_PROTOCOL', message: 'SECC supports none of ours' });
    expect(calls.at(-1)).toBe('close');
  });
});
