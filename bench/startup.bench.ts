import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { PtyPilotBoard } from '../test/integration/pilot-pty.ts';
import type { BenchReport, BenchRow } from './run.ts';
import { summarize } from './stats.ts';

/**
 * Issue 12 "Production build and start-up": cold start of the installed product (tsc output on plain node, as the
 * device runs it) against plain `node -e 0` as the floor — `evcc --help`, `evcc run` until it waits for plug-in
 * (bench config: no TPM, no OEM link, the pilot board on a pty), and the steady RSS during a session's charge loop
 * (`evcc bench-session --no-tpm`: the vehicle plus its simulated charger, modem and broker in one process, so an upper
 * bound for the vehicle alone). Ratios carry over to the Pi (a quarter of this machine's speed).
 */
const N = 7;
const repo = join(import.meta.dirname, '..');
const exec = promisify(execFile);

/** Reports the process's peak RSS on exit (a preload shared by every measured command, the floor included). */
const PEAK_RSS_PRELOAD = "process.on('exit', () => process.stderr.write(`PEAK_RSS_KB ${process.resourceUsage().maxRSS}\\n`));";

interface Sample {
  ms: number;
  rssMb: number;
}

function spawnNode(args: string[], env: NodeJS.ProcessEnv, preload: string) {
  return spawn(process.execPath, ['--import', preload, ...args], { cwd: repo, stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, NODE_OPTIONS: '' } });
}

/** Spawn → exit; peak RSS from the preload. */
async function timeToExit(args: string[], preload: string): Promise<Sample> {
  const t = performance.now();
  const child = spawnNode(args, process.env, preload);
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const ms = performance.now() - t;
  if (code !== 0) throw new Error(`node ${args.join(' ')} exited ${code}: ${err.slice(-500)}`);
  const kb = /PEAK_RSS_KB (\d+)/.exec(err);
  return { ms, rssMb: kb ? Number(kb[1]) / 1024 : Number.NaN };
}

function rssMbOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Spawn → the line `ready` on stderr; RSS at that moment; then SIGTERM and a clean exit. */
async function timeToLine(args: string[], env: NodeJS.ProcessEnv, ready: RegExp, preload: string): Promise<Sample> {
  const t = performance.now();
  const child = spawnNode(args, env, preload);
  let err = '';
  const sample = await new Promise<Sample>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (ready.test(err)) resolve({ ms: performance.now() - t, rssMb: rssMbOf(child.pid!) });
    });
    child.once('exit', (c) => reject(new Error(`node ${args.join(' ')} exited ${c} before ready: ${err.slice(-800)}`)));
  });
  child.removeAllListeners('exit');
  const code = await new Promise<number | null>((r) => {
    child.once('exit', r);
    child.kill('SIGTERM');
  });
  if (code !== 0) throw new Error(`evcc run did not stop cleanly (exit ${code}): ${err.slice(-800)}`);
  return sample;
}

/** RSS samples every 100 ms while the session's charge loop (CurrentDemand) runs. */
async function chargeLoopRss(evcc: string, preload: string): Promise<{ samples: number[]; peakMb: number }> {
  const child = spawnNode([evcc, 'bench-session', '--no-tpm', '--no-capture', '--time-scale', '200'], process.env, preload);
  let err = '';
  let inLoop = false;
  const samples: number[] = [];
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    if (!inLoop && /→ CurrentDemandReq/.test(err)) inLoop = true;
    if (inLoop && /→ (PowerDeliveryReq \(Stop|SessionStopReq)/.test(err.slice(-4000))) inLoop = false;
    if (err.length > 1 << 20) err = err.slice(-65536);
  });
  const timer = setInterval(() => {
    if (inLoop && child.exitCode === null) {
      try {
        samples.push(rssMbOf(child.pid!));
      } catch {
        // exited between the check and the read
      }
    }
  }, 100);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  clearInterval(timer);
  if (code !== 0) throw new Error(`bench-session exited ${code}: ${err.slice(-800)}`);
  const kb = /PEAK_RSS_KB (\d+)/.exec(err);
  return { samples, peakMb: kb ? Number(kb[1]) / 1024 : Number.NaN };
}

export async function run(): Promise<BenchReport> {
  const work = await mkdtemp(join(tmpdir(), 'evcc-bench-startup-'));
  const pilot = new PtyPilotBoard();
  try {
    // The installed tree: the production build (scripts/build.mjs) into the bench's own dir.
    const out = join(work, 'dist');
    await exec(process.execPath, [join(repo, 'scripts/build.mjs'), out], { cwd: repo, timeout: 600_000 });
    // dist/ resolves its packages from the repo's node_modules (the tree sits outside it: link it in).
    await exec('ln', ['-s', join(repo, 'node_modules'), join(work, 'node_modules')]);
    await writeFile(join(work, 'package.json'), '{"type":"module"}\n');
    const evcc = join(out, 'bin/evcc.js');
    const preload = join(work, 'peak-rss.mjs');
    await writeFile(preload, PEAK_RSS_PRELOAD);

    const config = join(work, 'evcc.json');
    await writeFile(config, JSON.stringify({
      vehicleId: 'bench-startup', dataDir: join(work, 'data'), runDir: join(work, 'run'), logLevel: 'info', plcInterface: 'lo',
      ota: { enabled: false }, pilot: { trigger: 'pilot', serialPath: pilot.path, baudRate: 115200 },
    }));

    const floor: Sample[] = [];
    const help: Sample[] = [];
    const ready: Sample[] = [];
    for (let i = 0; i < N; i++) {
      floor.push(await timeToExit(['-e', '0'], preload));
      help.push(await timeToExit([evcc, '--help'], preload));
      ready.push(await timeToLine([evcc, '--config', config, 'run', '--no-keys'], process.env, /service running: waiting for plug-in/, preload));
    }
    const loop = await chargeLoopRss(evcc, preload);

    const f = summarize(floor.map((s) => s.ms));
    const fr = summarize(floor.map((s) => s.rssMb));
    const h = summarize(help.map((s) => s.ms));
    const hr = summarize(help.map((s) => s.rssMb));
    const r = summarize(ready.map((s) => s.ms));
    const rr = summarize(ready.map((s) => s.rssMb));
    const rows: BenchRow[] = [
      { name: 'floor: node -e 0 (spawn → exit)', ...f, unit: 'ms' },
      { name: 'evcc --help (spawn → exit)', ...h, unit: 'ms', note: `${(h.median / f.median).toFixed(1)}× floor` },
      { name: 'evcc run → waiting for plug-in (no TPM, no OEM link)', ...r, unit: 'ms', note: `${(r.median / f.median).toFixed(1)}× floor; aim ≤ 300 ms` },
      { name: 'floor: node -e 0 peak RSS', ...fr, unit: 'MB' },
      { name: 'evcc --help peak RSS', ...hr, unit: 'MB', note: `${(hr.median / fr.median).toFixed(1)}× floor` },
      { name: 'evcc run RSS at ready', ...rr, unit: 'MB', note: `${(rr.median / fr.median).toFixed(1)}× floor` },
    ];
    if (loop.samples.length) {
      const l = summarize(loop.samples);
      rows.push({ name: 'RSS during the charge loop (bench-session --no-tpm, incl. sims)', ...l, unit: 'MB', note: `${(l.median / fr.median).toFixed(1)}× floor; aim ≤ 80 MB` });
    }
    rows.push({ name: 'bench-session peak RSS (whole run, incl. sims)', median: loop.peakMb, unit: 'MB' });
    return {
      title: `Cold start and memory: installed tree (tsc → plain node ${process.version}), ${N} runs each, interleaved`,
      rows,
      notes: ['evcc run to ready with the TPM adds the key service (tpm2-tools calls: unseal, arm the contract key); see tpm.bench.ts for those.'],
    };
  } finally {
    pilot.close();
    await rm(work, { recursive: true, force: true });
  }
}
