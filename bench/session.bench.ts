import { performance } from 'node:perf_hooks';
import { VirtualClock } from '../hal/clock/virtual.ts';
import { SimEv } from '../hal/ev/sim.ts';
import { silentLogger } from '../core/logger.ts';
import { SessionEngine, type SessionInput } from '../firmware/session/engine.ts';
import { runIso2, ScriptedSecc } from '../firmware/session/iso2/test-secc.ts';
import type { BenchReport } from './run.ts';
import { summarize } from './stats.ts';

/**
 * The EV's processing time per CurrentDemand cycle — decode the CurrentDemandRes, the module's checks and logic,
 * build and encode the next CurrentDemandReq — measured around the sans-I/O engine's step() (no sockets, so it is
 * the EVCC's own share of the 250 ms V2G_EVCC_Msg_Timeout), over a whole DC EIM session against a scripted SECC with
 * the battery model charging 20 → 80 % in virtual time. Median and p99, and the ratio to the budget.
 */
const SESSIONS = 5;

function p99(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
}

export async function run(): Promise<BenchReport> {
  const perCycle: number[] = [];
  const original = SessionEngine.prototype.step;
  let pending = 0;
  // Wrap step(): a cycle is the CurrentDemandRes input plus the paced timer input that builds the next request.
  SessionEngine.prototype.step = function step(this: SessionEngine, input: SessionInput) {
    const inLoop = this.currentState === 'WaitForCurrentDemandRes';
    const t = performance.now();
    const out = original.call(this, input);
    const ms = performance.now() - t;
    if (inLoop && input.kind === 'payload') pending = ms;
    else if (inLoop && input.kind === 'timer' && out.send) {
      perCycle.push(pending + ms);
      pending = 0;
    }
    return out;
  };
  let cycles = 0;
  try {
    for (let i = 0; i < SESSIONS; i++) {
      const clock = new VirtualClock();
      const ev = new SimEv({ clock, log: silentLogger() }, { timeScale: 20, contactorDelayMs: 0 });
      const r = await runIso2({ secc: new ScriptedSecc(), ev, clock, module: { evccId: '02e7cc000001', channel: 'tcp', pnc: false }, maxMs: 24 * 3_600_000 });
      if (r.result.outcome !== 'completed') throw new Error(`session ${r.result.outcome}: ${r.result.reason.code}`);
      cycles += r.result.requests.CurrentDemandReq ?? 0;
    }
  } finally {
    SessionEngine.prototype.step = original;
  }
  const s = summarize(perCycle);
  return {
    title: `V2G session engine: EV processing per DC CurrentDemand cycle (${SESSIONS} sessions 20 → 80 %, ${cycles} cycles, virtual time)`,
    rows: [
      { name: 'decode CurrentDemandRes + logic + encode next CurrentDemandReq', ...s, unit: 'ms' },
      { name: 'same, p99', median: p99(perCycle), unit: 'ms' },
      { name: 'p99 / V2G_EVCC_Msg_Timeout(CurrentDemandRes) 250 ms', median: p99(perCycle) / 250, unit: 'x' },
    ],
  };
}
