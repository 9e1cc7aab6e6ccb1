import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ChargeRig, lines, storeKeyEnv } from '../test/integration/charge-rig.ts';
import { until } from '../test/support/until.ts';
import { PtyPilotBoard } from '../test/integration/pilot-pty.ts';
import type { BenchReport, BenchRow } from './run.ts';
import { summarize } from './stats.ts';

const PLUG_INS = 15;
const SOLUTION_C_RUNS = 6;

interface SessionRecord { msg: string; setupMs?: number; recoveryMs?: number; timeline?: { state: string; ms: number }[] }

/**
 * Communication setup on real links (veth pair, charger + SECC + OEM backend simulators, charge-rig.ts), measured
 * by the product itself (orchestrator: plug-in → SupportedAppProtocolRes, V2G_EVCC_CommunicationSetup_Timeout 20 s):
 *   - `evcc run` with a pty pilot board, repeated plug-ins, root already known (proactive sync);
 *   - `evcc charge` on a fresh vehicle that knows root A only: Solution C (fetch, verify, install, retry) on the way.
 * Needs root (namespaces). Medians; the SLAC share is the simulated charger's timing, not a real modem's.
 */
export async function run(): Promise<BenchReport> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  const cr = await ChargeRig.start();
  const board = new PtyPilotBoard();
  try {
    // evcc run, plug-in after plug-in.
    const { config } = await cr.vehicle('bench-run', { pilot: { serialPath: board.path } });
    const jsonLog = join(cr.dir, 'run.jsonl');
    const svc = cr.spawnIn(cr.rig.pair.ev, ['--config', config, '--log-json', jsonLog, 'run', '--store-key-env', 'EVCC_STORE_KEY'], storeKeyEnv());
    const io = lines(svc);
    const count = (re: RegExp) => io.err.filter((l) => re.test(l)).length;
    await until(() => count(/OTA: V2G root list synced/) === 1, 30_000, 'service start and root sync');
    for (let i = 1; i <= PLUG_INS; i++) {
      board.plugIn(5);
      await until(() => count(/EVCC: session established/) === i, 30_000, `session ${i}`);
      board.unplug();
      await until(() => count(/PILOT: unplugged \(state A\)/) === i, 10_000, `unplug ${i}`);
    }
    svc.kill('SIGTERM');
    await new Promise((r) => svc.once('exit', r));
    const records = (await readFile(jsonLog, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as SessionRecord)
      .filter((r) => r.msg.startsWith('session established'));
    const known = records.map((r) => r.setupMs!);
    const stage = (name: string, rs: SessionRecord[]) => rs.map((r) => r.timeline!.find((t) => t.state === name)!.ms);

    // evcc charge with Solution C on the way.
    const fetched: SessionRecord[] = [];
    for (let i = 0; i < SOLUTION_C_RUNS; i++) {
      const v = await cr.vehicle(`bench-charge-${i}`);
      const ev = cr.spawnIn(cr.rig.pair.ev, ['--config', v.config, '--log-level', 'warn', 'charge', '--store-key-env', 'EVCC_STORE_KEY', '--json'], storeKeyEnv());
      const eio = lines(ev);
      const code = await new Promise<number | null>((r) => ev.once('exit', (c) => r(c)));
      await new Promise((r) => setTimeout(r, 20));
      if (code !== 0) throw new Error(`evcc charge failed: ${eio.err.join('\n')}`);
      const rep = JSON.parse(eio.out.join('\n')) as { setupMs: number; timeline: { state: string; ms: number }[]; channel: { recoveryMs: number } };
      fetched.push({ msg: 'charge', setupMs: rep.setupMs, timeline: rep.timeline, recoveryMs: rep.channel.recoveryMs });
    }
    const unknown = fetched.map((r) => r.setupMs!);
    const rows: BenchRow[] = [
      { name: 'setup, root known (evcc run, pilot plug-in → SupportedAppProtocolRes)', unit: 'ms', ...summarize(known) },
      { name: '  of which SLAC (Matching)', unit: 'ms', ...summarize(stage('Matching', records)) },
      { name: '  of which SDP', unit: 'ms', ...summarize(stage('WaitForSeccDiscoveryRes', records)) },
      { name: '  of which TLS', unit: 'ms', ...summarize(stage('WaitForTlsEstablished', records)) },
      { name: '  of which SupportedAppProtocol', unit: 'ms', ...summarize(stage('WaitForSupportedAppProtocolRes', records)) },
      { name: 'setup, unknown root (evcc charge, Solution C on the way)', unit: 'ms', ...summarize(unknown) },
      { name: '  of which TLS incl. fetch + install + retry', unit: 'ms', ...summarize(stage('WaitForTlsEstablished', fetched)) },
      { name: '  recovery (first TLS failure → retry established)', unit: 'ms', ...summarize(fetched.map((r) => r.recoveryMs!)) },
      { name: 'ratio unknown / known root setup (medians)', unit: 'x', median: summarize(unknown).median / summarize(known).median },
      { name: 'share of the 20 s setup budget used, unknown root (median)', unit: '%', median: (100 * summarize(unknown).median) / 20_000 },
    ];
    return {
      title: 'Communication setup on veth (evcc run / evcc charge, simulated charger, mosquitto + OEM backend)',
      rows,
      notes: ['SLAC time is the simulated charger\'s (TT_EVSE_match_MNBC sounding window), not a real QCA7000 link; TLS 1.2 ISO-2 profile; EIM-only vehicle (no TPM)'],
    };
  } finally {
    board.close();
    await cr.destroy();
  }
}
