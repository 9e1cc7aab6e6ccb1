import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { runBenchSession } from '../bin/commands/bench-session.ts';
import { SessionFolder } from '../hal/capture/session-folder.ts';
import { TcpCaptureRelay } from '../hal/capture/sim-taps.ts';
import { macFromString } from '../hal/plc/sim.ts';
import type { BenchReport } from './run.ts';
import { summarize } from './stats.ts';

/**
 * What the per-session capture (issue #11) costs a session: the main job (in-process, logs silent, no TPM — the
 * capture does not touch it) with and without its session folder, alternating: plug-in → SessionSetupRes, the
 * CurrentDemand round trip and the median round trip over all messages, the whole run; plus the capture's own setup
 * (folder, files, pcapng header, TCP relay) and what a session leaves on disk.
 */
const N = 4;

async function folderBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of ['session.pcapng', 'keys.log', 'messages.jsonl', 'bench.jsonl', 'report.json', 'session.json']) n += (await stat(join(dir, f)).catch(() => ({ size: 0 }))).size;
  return n;
}

export async function run(): Promise<BenchReport> {
  const parent = await mkdtemp(join(tmpdir(), 'evcc-bench-capture-'));
  const m = { on: { whole: [] as number[], setup: [] as number[], cd: [] as number[], all: [] as number[] }, off: { whole: [] as number[], setup: [] as number[], cd: [] as number[], all: [] as number[] } };
  const bytes: number[] = [];
  const packets: number[] = [];
  const open: number[] = [];
  try {
    for (let i = 0; i < N; i++) {
      for (const capture of [false, true]) {
        const t = performance.now();
        const r = await runBenchSession({ logLevel: 'silent' }, { tls: '1.2', chargerPki: 'b', protocol: 'iso2', ota: true, tpm: false, timeScale: 600, capture, captureDir: parent });
        const ms = performance.now() - t;
        if (!r.ok) throw new Error(`bench session failed: ${r.endReason.code}: ${r.endReason.message}`);
        const into = capture ? m.on : m.off;
        into.whole.push(ms);
        into.setup.push(r.setupMs ?? Number.NaN);
        const s = r.session!;
        into.cd.push(s.roundTrips.CurrentDemandRes?.medianMs ?? Number.NaN);
        const rtts = Object.values(s.roundTrips).map((x) => x.medianMs);
        into.all.push(summarize(rtts).median);
        if (capture && r.capture) {
          bytes.push((await folderBytes(r.capture.dir)) / 1024);
          packets.push(r.capture.packets);
        }
      }
    }
    // The capture's own setup, alone: session folder with its files and pcapng header, and the loopback TCP relay.
    const addressing = { evMac: macFromString('02:e7:cc:00:00:01'), peerMac: macFromString('02:5e:cc:00:00:01'), evAddress: 'fe80::e7:1' };
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      const f = await SessionFolder.create({ parent: join(parent, 'setup'), keyLog: true });
      const relay = await TcpCaptureRelay.start(f.openInterface('sim-ev-ipv6', 'bench'), addressing);
      open.push(performance.now() - t);
      await relay.close();
      await f.close();
    }
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
  const ratio = (a: number[], b: number[]) => summarize(a).median / summarize(b).median;
  return {
    title: `Per-session capture: the main job (in-process, ISO-2 DC over TLS 1.2, no TPM, time scale 600) with and without its session folder (${N} runs each, alternating; logs silent)`,
    rows: [
      { name: 'plug-in → SessionSetupRes, without capture', ...summarize(m.off.setup), unit: 'ms' },
      { name: 'plug-in → SessionSetupRes, with capture', ...summarize(m.on.setup), unit: 'ms' },
      { name: 'CurrentDemand round trip, without capture', ...summarize(m.off.cd), unit: 'ms' },
      { name: 'CurrentDemand round trip, with capture (via the TCP relay)', ...summarize(m.on.cd), unit: 'ms', note: 'V2G_EVCC_Msg_Timeout 250 ms' },
      { name: 'median round trip over all messages, without capture', ...summarize(m.off.all), unit: 'ms' },
      { name: 'median round trip over all messages, with capture', ...summarize(m.on.all), unit: 'ms' },
      { name: 'whole run, without capture', ...summarize(m.off.whole), unit: 'ms' },
      { name: 'whole run, with capture', ...summarize(m.on.whole), unit: 'ms' },
      { name: 'capture setup alone (folder, files, pcapng header, TCP relay)', ...summarize(open), unit: 'ms' },
      { name: 'session folder on disk', ...summarize(bytes), unit: 'KiB' },
      { name: 'packets in the pcapng', ...summarize(packets), unit: '' },
      { name: 'setup with / without capture (ratio of medians)', median: ratio(m.on.setup, m.off.setup), unit: 'x' },
      { name: 'CurrentDemand round trip with / without (ratio of medians)', median: ratio(m.on.cd, m.off.cd), unit: 'x' },
      { name: 'all-message round trip with / without (ratio of medians)', median: ratio(m.on.all, m.off.all), unit: 'x' },
      { name: 'whole run with / without (ratio of medians)', median: ratio(m.on.whole, m.off.whole), unit: 'x' },
    ],
    notes: ['On the bench the capture adds a loopback relay hop to every V2G message (the IPv6 reconstruction); on a vehicle the AF_PACKET tap adds none to the path.'],
  };
}
