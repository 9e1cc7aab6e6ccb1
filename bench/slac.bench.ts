import { afPacketAvailable } from '../hal/plc/af-packet.ts';
import { missing, root, tool } from '../test/support/prereq.ts';
import { SlacRig, type TsharkPacket } from '../test/integration/slac-rig.ts';
import type { BenchReport, BenchRow } from './run.ts';
import { summarize } from './stats.ts';

/**
 * SLAC match time of our EV vs Debian's `pev` against the same Debian `evse` behind the same modem simulators on
 * one veth link, runs interleaved. Measured on the wire by tshark (first CM_SLAC_PARM.REQ → CM_SLAC_MATCH.CNF), so
 * process start-up (Node vs C) is not counted and both are timed by the same independent clock.
 *
 * Both pace at 40 ms (our TP_EV_batch_msg_interval default; pev's "msound pause"). Note what differs by design:
 * our EV sends C_EV_start_atten_char_inds = 3 CM_START_ATTEN_CHAR.IND as ISO 15118-3 asks, each a batch interval
 * apart, where pev sends one; a third row runs our EV with `startAttenCharInds: 1` to compare like with like.
 */
const RUNS = Number(process.env.SLAC_BENCH_RUNS ?? 7);
const PAUSE_MS = 40;

const colon = (hex: string) => hex.match(/../g)!.join(':');
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface MatchRun {
  runId: string;
  ms: number;
}

/**
 * Match times from the capture, run by run in wire order: a run opens at the EV's first CM_SLAC_PARM.REQ and closes
 * at the CM_SLAC_MATCH.CNF addressed to it with the same RunID (pev reuses one RunID for every run).
 */
function matchTimes(packets: TsharkPacket[], evMac: string): MatchRun[] {
  const runs: MatchRun[] = [];
  let open: { runId: string; t0: number } | undefined;
  for (const p of packets) {
    if (p.mmtype === 0x6064 && p.src === evMac) {
      const id = p.fields['homeplug_av.gp.cm_slac_parm.runid']!;
      if (!open || open.runId !== id) open = { runId: id, t0: p.time };
    } else if (p.mmtype === 0x607d && p.dst === evMac && open && p.fields['homeplug_av.gp.cm_slac_match.runid'] === open.runId) {
      runs.push({ runId: open.runId, ms: p.time - open.t0 });
      open = undefined;
    }
  }
  return runs;
}

export async function run(): Promise<BenchReport> {
  const absent = missing([root, tool('ip'), tool('evse'), tool('pev'), tool('tshark'), tool('stdbuf'),
    { name: 'AF_PACKET addon', present: afPacketAvailable }]);
  if (absent.length) throw new Error(`SLAC bench needs ${absent.join(', ')}`);
  const rig = await SlacRig.start({ capture: true });
  const ours: string[] = [];
  const oursOneStart: string[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const a = await rig.runOurEv(['--interval', String(PAUSE_MS)]);
      if (a.code !== 0) throw new Error(`our EV failed: ${a.stderr.slice(-400)}`);
      ours.push(colon(JSON.parse(a.stdout.trim().split('\n').pop()!).runId));
      await pause(300);
      const p = await rig.runPev(PAUSE_MS);
      if (p.code !== 0) throw new Error(`pev failed: ${p.stdout.slice(-400)}`);
      await pause(300);
      const c = await rig.runOurEv(['--interval', String(PAUSE_MS), '--start-atten-char-inds', '1']);
      if (c.code !== 0) throw new Error(`our EV (1 START_ATTEN_CHAR) failed: ${c.stderr.slice(-400)}`);
      oursOneStart.push(colon(JSON.parse(c.stdout.trim().split('\n').pop()!).runId));
      await pause(300);
    }
    const packets = await rig.stopCapture();
    const runs = matchTimes(packets, rig.evMac);
    const oursMs = runs.filter((r) => ours.includes(r.runId)).map((r) => r.ms);
    const oneMs = runs.filter((r) => oursOneStart.includes(r.runId)).map((r) => r.ms);
    const pevMs = runs.filter((r) => !ours.includes(r.runId) && !oursOneStart.includes(r.runId)).map((r) => r.ms);
    if (!oursMs.length || !pevMs.length) throw new Error('no complete match found in the capture');
    const a = summarize(oursMs);
    const p = summarize(pevMs);
    const c = oneMs.length ? summarize(oneMs) : undefined;
    const rows: BenchRow[] = [
      { name: 'SLAC match, our EV (3 START_ATTEN_CHAR, ISO 15118-3)', unit: 'ms', ...a },
      { name: "SLAC match, Debian pev (1 START_ATTEN_CHAR)", unit: 'ms', ...p },
      { name: 'ratio our EV / pev (target <= 1.05)', unit: 'x', median: a.median / p.median },
    ];
    if (c) {
      rows.push({ name: 'SLAC match, our EV with startAttenCharInds=1 (like pev)', unit: 'ms', ...c });
      rows.push({ name: 'ratio our EV (1 START_ATTEN_CHAR) / pev', unit: 'x', median: c.median / p.median });
    }
    return {
      title: 'SLAC (ISO 15118-3) on veth against Debian evse + modem simulators, timed by tshark',
      rows,
      notes: [
        `pacing ${PAUSE_MS} ms for both (TP_EV_batch_msg_interval / pev "msound pause"); ${RUNS} runs each, interleaved`,
        'the standard costs our EV 2 extra batch intervals (2 more START_ATTEN_CHAR.IND) that pev skips',
      ],
    };
  } finally {
    await rig.destroy();
  }
}
