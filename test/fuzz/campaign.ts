/**
 * One family's campaign: generate input i, run it, classify, measure. Used by the workers of `npm run fuzz` (run.ts)
 * and in-process by the short CI campaign (campaign.test.ts).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { failureSignature, inputRng, isTyped, type CaseFile, type Outcome, type Target } from './core.ts';

/** An input slower than this is re-measured alone; slow twice, it is reported (and saved). */
export const SLOW_MS = 100;
/** Failures kept (saved) per distinct signature, and distinct signatures kept per family. */
const KEEP_PER_SIGNATURE = 1;
const MAX_SIGNATURES = 50;
const WARMUP_INPUTS = 2_000;

export interface Failure {
  kind: 'crash' | 'slow' | 'hang';
  index: number;
  signature: string;
  message: string;
  file: CaseFile;
  ms?: number;
}

export interface FamilyReport {
  family: string;
  inputs: number;
  ok: number;
  rejected: number;
  seconds: number;
  inputsPerSecond: number;
  crashes: number;
  slow: number;
  hangs: number;
  /** Slowest input, ms (for one above SLOW_MS: its re-measurement, the lower of wall and CPU time). */
  maxMs: number;
  heapStartMb: number;
  heapEndMb: number;
  failures: Failure[];
  /** Set when the time budget ended the run before `inputs` were done. */
  stoppedByBudget?: boolean;
}

export interface CampaignOptions {
  seed: number;
  inputs: number;
  /** First input index (a restarted worker goes on after a hang). */
  start?: number;
  /** Stop after this many seconds even if `inputs` are not done. */
  timeBudgetS?: number;
  /** Each kept failure as soon as it is found (a worker posts it at once: a later hang must not lose it). */
  onFailure?: (f: Failure) => void;
  /**
   * Shared cells for the watchdog (run.ts), updated at every input: [index of the input now running, inputs done,
   * ok, rejected, crashes, slow]. So a terminated worker's counts up to the hung input are still known.
   */
  current?: Int32Array;
}

let gcFn: (() => void) | undefined;
/** A full GC, for honest heap figures (without --expose-gc: V8's flag set at run time). */
export function fullGc(): void {
  if (!gcFn) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) gcFn = g;
    else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    }
  }
  gcFn();
  gcFn();
}

const heapMb = (): number => Math.round((process.memoryUsage().heapUsed / 2 ** 20) * 10) / 10;

function isThenable(x: unknown): x is Promise<Outcome> {
  return typeof (x as { then?: unknown } | undefined)?.then === 'function';
}

/** Wall time, and the process's CPU time (what a loaded, shared machine does not inflate). */
async function timed<I>(t: Target<I>, input: I, cpu = false): Promise<{ ms: number; cpuMs: number; outcome?: Outcome; error?: unknown }> {
  const t0 = performance.now();
  // CPU time only where it decides (a re-measurement): getrusage per input would cost the fast decoders ~10 %.
  const c0 = cpu ? process.cpuUsage() : undefined;
  const took = () => {
    const c = c0 && process.cpuUsage(c0);
    return { ms: performance.now() - t0, cpuMs: c ? (c.user + c.system) / 1000 : NaN };
  };
  try {
    let r = t.run(input);
    if (isThenable(r)) r = await r;
    return { ...took(), outcome: r };
  } catch (error) {
    // A typed error escaping the target is a rejection; anything else (an oracle violation too) is a crash.
    if (isTyped(error)) return { ...took(), outcome: 'rejected' };
    return { ...took(), error };
  }
}

/** Input `index` of a family's campaign (run.ts regenerates a hung one from its index). */
export function inputAt<I>(t: Target<I>, seeds: readonly I[], seed: number, index: number): I {
  return index < seeds.length ? seeds[index]! : t.generate(inputRng(t.name, seed, index), seeds);
}

export async function runCampaign<I>(t: Target<I>, o: CampaignOptions, seeds: readonly I[] = t.seeds()): Promise<FamilyReport> {
  if (seeds.length === 0) throw new Error(`${t.name}: no seeds`);
  const report: FamilyReport = {
    family: t.name, inputs: 0, ok: 0, rejected: 0, seconds: 0, inputsPerSecond: 0, crashes: 0, slow: 0, hangs: 0, maxMs: 0,
    heapStartMb: 0, heapEndMb: 0, failures: [],
  };
  // Heap at the start is taken after a warm-up (the seeds and WARMUP_INPUTS more): what the first messages build
  // lazily and keep (compiled EXI codecs, the bounded certificate parse cache) is not growth.
  const warmupEnd = (o.start ?? 0) + Math.min(o.inputs, seeds.length + WARMUP_INPUTS);
  const kept = new Map<string, number>();
  const keep = (f: Failure) => {
    const n = kept.get(f.signature) ?? 0;
    if (n >= KEEP_PER_SIGNATURE || (n === 0 && kept.size >= MAX_SIGNATURES)) return;
    kept.set(f.signature, n + 1);
    report.failures.push(f);
    o.onFailure?.(f);
  };
  const start = o.start ?? 0;
  const deadline = o.timeBudgetS === undefined ? Infinity : performance.now() + o.timeBudgetS * 1000;
  const t0 = performance.now();
  // Seeds run first as they are (a seed that fails is the most useful failure there is).
  for (let i = start; i < start + o.inputs; i++) {
    if (i === warmupEnd || (i === start && warmupEnd === start)) {
      fullGc();
      report.heapStartMb = heapMb();
    }
    if (o.current) Atomics.store(o.current, 0, i);
    const input = inputAt(t, seeds, o.seed, i);
    let r = await timed(t, input);
    report.inputs++;
    if (r.error === undefined && r.ms > SLOW_MS) {
      // Re-measured alone (after a GC), in wall and CPU time: a GC pause or a busy machine (a shared CI runner
      // descheduling us) does not make an input slow; an input that itself costs more than SLOW_MS does.
      fullGc();
      const again = await timed(t, input, true);
      if (again.ms > SLOW_MS && again.cpuMs > SLOW_MS) {
        report.slow++;
        keep({ kind: 'slow', index: i, signature: `slow (${t.name})`, message: `${again.ms.toFixed(0)} ms, ${again.cpuMs.toFixed(0)} ms CPU (first run ${r.ms.toFixed(0)} ms)`, file: t.toFile(input), ms: again.ms });
      }
      r = { ...again, ms: Math.min(again.ms, again.cpuMs) };
    }
    report.maxMs = Math.max(report.maxMs, r.ms);
    if (r.error !== undefined) {
      report.crashes++;
      const message = r.error instanceof Error ? `${r.error.name}: ${r.error.message}\n${r.error.stack ?? ''}` : String(r.error);
      keep({ kind: 'crash', index: i, signature: failureSignature(r.error), message, file: t.toFile(input) });
    } else if (r.outcome === 'ok') report.ok++;
    else report.rejected++;
    if (o.current) {
      Atomics.store(o.current, 1, report.inputs);
      Atomics.store(o.current, 2, report.ok);
      Atomics.store(o.current, 3, report.rejected);
      Atomics.store(o.current, 4, report.crashes);
      Atomics.store(o.current, 5, report.slow);
    }
    if ((report.inputs & 0xff) === 0) {
      if (performance.now() > deadline) {
        report.stoppedByBudget = true;
        break;
      }
    }
  }
  report.seconds = (performance.now() - t0) / 1000;
  report.inputsPerSecond = report.inputs / Math.max(report.seconds, 1e-9);
  fullGc();
  report.heapEndMb = heapMb();
  if (report.inputs <= warmupEnd - start) report.heapStartMb = report.heapEndMb;
  return report;
}
