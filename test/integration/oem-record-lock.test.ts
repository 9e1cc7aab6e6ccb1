import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * The OEM backend's record lock (deploy/oem-backend/record-lock.ts) between real processes: 3 children, each an
 * instance on one shared store directory, do 200 read-increment-write cycles (FsStore read + writeAtomic, as the job
 * and attestation records are written) on one record, all started at once. Under the lock the count is the sum; the
 * same children without it lose updates, so the count check can fail.
 */
const CHILDREN = 3;
const CYCLES = 200;
let dir: string | undefined;
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function race(mode: 'lock' | 'nolock'): Promise<number> {
  dir = await mkdtemp(join(tmpdir(), 'evcc-record-lock-'));
  const script = join(process.cwd(), 'test/integration/oem-record-lock-child.ts');
  const runs = Array.from({ length: CHILDREN }, () => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, dir!, String(CYCLES), mode], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('READY')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`child exited ${code} before READY: ${err}`)));
    });
    const done = new Promise<void>((resolve, reject) => child.once('exit', (code) => (code === 0 && out.includes('DONE') ? resolve() : reject(new Error(`child exited ${code}: ${err}`)))));
    return { child, ready, done };
  });
  await Promise.all(runs.map((r) => r.ready));
  for (const r of runs) r.child.stdin!.write('go\n'); // a start line for all: the cycles overlap from the first
  await Promise.all(runs.map((r) => r.done));
  return (JSON.parse(await readFile(join(dir, 'counter.json'), 'utf8')) as { n: number }).n;
}

describe('record lock across processes', () => {
  it(`${CHILDREN} processes × ${CYCLES} read-increment-write cycles under the lock: no update lost, no lock left`, async () => {
    expect(await race('lock')).toBe(CHILDREN * CYCLES);
    expect(await readdir(join(dir!, 'locks'))).toEqual([]);
  }, 120_000);

  it('the same processes without the lock lose updates (the count check above can fail)', async () => {
    const n = await race('nolock');
    expect(n).toBeLessThan(CHILDREN * CYCLES);
  }, 120_000);
});
