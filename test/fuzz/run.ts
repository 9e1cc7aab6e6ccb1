/**
 * `npm run fuzz` — the project's fuzz campaign over every decoder family (issue #13 item 9).
 *
 *   npm run fuzz                                   every family, 10^6 inputs each, a random seed (printed)
 *   npm run fuzz -- --family exi,slac --inputs 50000 --seed 7
 *   npm run fuzz -- --time-budget 120              at most 120 s per family (inputs/s tells how far it got)
 *   npm run fuzz -- --list                         the families
 *
 * Each family runs in a worker thread that the main thread watches: an input that has not returned after --hang-ms
 * is a hang (the worker is terminated, the input saved, and a new worker goes on after it). Crashes, hangs and slow
 * inputs are saved under test/fuzz/regressions/<family>/ (npm test replays them; --out DIR elsewhere) unless
 * --no-save. --json FILE writes the figures. Exit status 1 when anything failed.
 */
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { FamilyReport, Failure } from './campaign.ts';
import { inputAt } from './campaign.ts';
import type { CaseFile } from './core.ts';
import { saveCase } from './regressions.ts';
import { FAMILY_NAMES, target } from './targets/index.ts';
import type { WorkerJob } from './worker.ts';

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '1000000' },
    family: { type: 'string', multiple: true },
    seed: { type: 'string' },
    'time-budget': { type: 'string' },
    'hang-ms': { type: 'string', default: '10000' },
    'no-save': { type: 'boolean', default: false },
    out: { type: 'string' },
    list: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

function fail(message: string): never {
  process.stderr.write(`fuzz: ${message}\n`);
  process.exit(1);
}

const positiveInt = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) fail(`--${name} needs a non-negative integer, got ${v}`);
  return n;
};

if (values.list) {
  for (const name of FAMILY_NAMES) process.stdout.write(`${name.padEnd(14)} ${(await target(name)).what}\n`);
  process.exit(0);
}
const families = (values.family ?? FAMILY_NAMES).flatMap((f) => f.split(',')).filter(Boolean);
for (const f of families) if (!FAMILY_NAMES.includes(f)) fail(`unknown family ${f} (known: ${FAMILY_NAMES.join(', ')})`);
const inputs = positiveInt('inputs', values.inputs)!;
const seed = positiveInt('seed', values.seed) ?? Math.floor(Math.random() * 2 ** 31);
const timeBudgetS = positiveInt('time-budget', values['time-budget']);
const hangMs = positiveInt('hang-ms', values['hang-ms'])!;

const tsxApi = import.meta.resolve('tsx/esm/api');
const workerUrl = new URL('./worker.ts', import.meta.url).href;
// Workers load TypeScript through tsx's API (worker threads do not inherit the parent's loader).
const bootstrap = `import(${JSON.stringify(tsxApi)}).then(({ register }) => { register(); return import(${JSON.stringify(workerUrl)}); }).catch((e) => { process.nextTick(() => { throw e; }); });`;

interface Segment {
  /** The worker's report, or (after a hang) its counts up to the hung input. */
  report?: FamilyReport;
  failures: Failure[];
  hungAt?: number;
  hungCase?: CaseFile;
  error?: Error;
}

/** Runs inputs [start, start + count) of a family in a worker; ends early at a hang. */
function segment(family: string, start: number, count: number, budgetS: number | undefined): Promise<Segment> {
  const current = new SharedArrayBuffer(6 * 4);
  const currentCase = new SharedArrayBuffer(4 + 4 * 2 ** 20);
  const cell = new Int32Array(current);
  Atomics.store(cell, 0, -1);
  const job: WorkerJob = { family, seed, inputs: count, start, current, currentCase, ...(budgetS !== undefined ? { timeBudgetS: budgetS } : {}) };
  const w = new Worker(bootstrap, { eval: true, workerData: job });
  return new Promise((resolve) => {
    let last = -1;
    let since = Date.now();
    const t0 = Date.now();
    let settled = false;
    const failures: Failure[] = [];
    const done = (s: Omit<Segment, 'failures'>) => {
      if (settled) return;
      settled = true;
      clearInterval(watch);
      resolve({ ...s, failures });
    };
    const watch = setInterval(() => {
      const i = Atomics.load(cell, 0);
      if (i !== last) {
        last = i;
        since = Date.now();
        return;
      }
      // Index -1: still setting up (a test PKI, credentials); that is not an input hanging.
      if (i >= 0 && Date.now() - since > hangMs) {
        const len = new Int32Array(currentCase, 0, 1)[0]!;
        const hungCase: CaseFile | undefined = len > 0 ? { ext: 'json', data: JSON.parse(new TextDecoder().decode(new Uint8Array(currentCase, 4, len))) as unknown } : undefined;
        void w.terminate();
        const [, n, ok, rejected, crashes, slow] = Array.from(cell);
        const partial: FamilyReport = {
          family, inputs: n!, ok: ok!, rejected: rejected!, crashes: crashes!, slow: slow!, hangs: 0, seconds: (Date.now() - t0) / 1000 - hangMs / 1000,
          inputsPerSecond: 0, maxMs: hangMs, heapStartMb: 0, heapEndMb: 0, failures: [],
        };
        done({ hungAt: i, report: partial, ...(hungCase ? { hungCase } : {}) });
      }
    }, 250);
    w.on('message', (m: { type: string; report?: FamilyReport; failure?: Failure }) => {
      if (m.type === 'failure') failures.push(m.failure!);
      if (m.type === 'report') {
        done({ report: m.report! });
        void w.terminate();
      }
    });
    w.on('error', (error) => done({ error }));
    w.on('exit', (code) => done({ error: new Error(`worker exited with code ${code} before its report`) }));
  });
}

function merge(family: string, parts: FamilyReport[], hangs: Failure[]): FamilyReport {
  const sum = (k: 'inputs' | 'ok' | 'rejected' | 'crashes' | 'slow' | 'seconds') => parts.reduce((n, p) => n + p[k], 0);
  const r: FamilyReport = {
    family, inputs: sum('inputs') + hangs.length, ok: sum('ok'), rejected: sum('rejected'), crashes: sum('crashes'), slow: sum('slow'),
    hangs: hangs.length, seconds: sum('seconds'), inputsPerSecond: 0, maxMs: Math.max(0, ...parts.map((p) => p.maxMs)),
    // Heap figures of the last worker that finished (a terminated one measured none).
    heapStartMb: parts.at(-1)?.heapStartMb ?? 0, heapEndMb: parts.at(-1)?.heapEndMb ?? 0,
    failures: [...parts.flatMap((p) => p.failures), ...hangs],
  };
  r.inputsPerSecond = r.inputs / Math.max(r.seconds, 1e-9);
  if (parts.some((p) => p.stoppedByBudget)) r.stoppedByBudget = true;
  return r;
}

async function campaign(family: string): Promise<FamilyReport> {
  const parts: FamilyReport[] = [];
  const hangs: Failure[] = [];
  let start = 0;
  const t0 = Date.now();
  while (start < inputs) {
    const left = timeBudgetS === undefined ? undefined : Math.max(1, timeBudgetS - (Date.now() - t0) / 1000);
    const s = await segment(family, start, inputs - start, left);
    if (s.error) throw s.error;
    parts.push({ ...s.report!, failures: s.failures });
    if (s.hungAt === undefined) break;
    const i = s.hungAt;
    let file = s.hungCase;
    if (!file) {
      const t = await target(family);
      file = t.toFile(inputAt(t, t.seeds(), seed, i));
    }
    hangs.push({ kind: 'hang', index: i, signature: `hang (${family})`, message: `no return after ${hangMs} ms`, file });
    process.stdout.write(`  ${family}: input ${i} hangs; going on after it\n`);
    start = i + 1;
    if (hangs.length >= 5) break;
  }
  return merge(family, parts, hangs);
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

process.stdout.write(`fuzz: seed ${seed}, ${fmt(inputs)} inputs per family${timeBudgetS !== undefined ? `, at most ${timeBudgetS} s each` : ''}, families: ${families.join(', ')}\n`);
const reports: FamilyReport[] = [];
let failed = false;
for (const family of families) {
  const r = await campaign(family);
  reports.push(r);
  for (const f of r.failures) {
    failed = true;
    const where = values['no-save'] ? '(not saved)' : saveCase(family, f.file, values.out);
    process.stdout.write(`  ${family}: ${f.kind} at input ${f.index}: ${f.message.split('\n')[0]} → ${where}\n`);
  }
  if (r.crashes + r.slow + r.hangs > r.failures.length) failed = true;
  process.stdout.write(`  ${family}: ${fmt(r.inputs)} inputs in ${fmt(r.seconds, 1)} s${r.stoppedByBudget ? ' (time budget)' : ''}\n`);
}

const header = ['family', 'inputs', 'inputs/s', 'ok', 'rejected', 'crashes', 'slow', 'hangs', 'max ms', 'heap MB start→end'];
const rows = reports.map((r) => [
  r.family, fmt(r.inputs), fmt(r.inputsPerSecond), fmt(r.ok), fmt(r.rejected), String(r.crashes), String(r.slow), String(r.hangs), fmt(r.maxMs, 1),
  `${fmt(r.heapStartMb, 1)} → ${fmt(r.heapEndMb, 1)}`,
]);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
process.stdout.write(`\n${line(header)}\n|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|\n${rows.map(line).join('\n')}\n`);
if (values.json) {
  const { writeFileSync } = await import('node:fs');
  writeFileSync(values.json, JSON.stringify({ seed, inputs, reports: reports.map(({ failures, ...r }) => ({ ...r, failures: failures.map(({ file: _f, ...f }) => f) })) }, null, 2));
}
process.exit(failed ? 1 : 0);
