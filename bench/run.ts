import 'reflect-metadata';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm run bench`: runs every `bench/*.bench.ts` (or those named on the command line) in turn and prints their
 * reports. Each bench module exports `run(): Promise<BenchReport>`; figures are medians over repeated runs.
 */
export interface BenchRow {
  name: string;
  median: number;
  unit: string;
  min?: number;
  max?: number;
  n?: number;
  note?: string;
}
export interface BenchReport {
  title: string;
  rows: BenchRow[];
  notes?: string[];
}

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = (await readdir(here)).filter((f) => f.endsWith('.bench.ts')).sort()
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)));

function fmt(v: number | undefined): string {
  if (v === undefined) return '';
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(4);
}

let failed = 0;
for (const f of files) {
  const mod = (await import(join(here, f))) as { run: () => Promise<BenchReport> };
  try {
    const report = await mod.run();
    console.log(`\n== ${report.title}`);
    for (const r of report.rows) {
      const range = r.min !== undefined ? `  [min ${fmt(r.min)} max ${fmt(r.max)}]` : '';
      const n = r.n !== undefined ? `  n=${r.n}` : '';
      console.log(`  ${r.name.padEnd(58)} ${fmt(r.median).padStart(12)} ${r.unit}${range}${n}${r.note ? `  ${r.note}` : ''}`);
    }
    for (const note of report.notes ?? []) console.log(`  ${note}`);
  } catch (err) {
    failed++;
    console.log(`\n== ${f}: FAILED: ${err instanceof Error ? err.message : String(err)}`);
  }
}
process.exitCode = failed ? 1 : 0;
