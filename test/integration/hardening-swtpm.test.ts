import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createSessionDir, OWNER_FILE, sweepStaleSessionDirs } from '../../hal/store/session-dirs.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';

/**
 * Clean-up after a killed process (issue #13): a bench-like process that started swtpm is SIGKILLed; its swtpm
 * must die with it (setpriv --pdeathsig) and the next start must remove the stale session dir — only that one.
 * Each child runs with its own TMPDIR, so the sweep sees this test's dirs only.
 */
const CHILD = join(import.meta.dirname, 'hardening-swtpm-child.ts');

/** Gone = no such process, or a zombie (exited, waiting to be reaped; a container's init may never reap it). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '');
  } catch {
    return true;
  }
}

interface ChildReport { dir: string; swtpmPid: number; removed: string[]; killed: number[] }

function startChild(root: string, mode: 'hold' | 'once'): { proc: ChildProcess; report: Promise<ChildReport> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, mode], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: root, NODE_OPTIONS: '' } });
  const report = new Promise<ChildReport>((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as ChildReport);
    });
    proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    proc.once('exit', (code) => reject(new Error(`child exited (${code}) before reporting: ${err}`)));
  });
  return { proc, report };
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'hardening-swtpm-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describeWith([tool('swtpm'), tool('setpriv')])('swtpm does not outlive a killed session', () => {
  it('SIGKILL of the session kills its swtpm; the next start removes the stale dir and nothing else', async () => {
    const first = startChild(root, 'hold');
    const held = await first.report;
    expect(gone(held.swtpmPid)).toBe(false);
    expect(existsSync(join(held.dir, 'vehicle', 'swtpm-state', OWNER_FILE))).toBe(true);

    // Dirs the sweep must leave alone: a session dir of a live process (this one), a dir without a record, and a
    // state dir outside the session prefixes (persistent NV given by hand) whose owner is dead.
    const live = await createSessionDir('evcc-bench-', root);
    const unowned = await mkdtemp(join(root, 'evcc-bench-'));
    const persistent = join(root, 'evcc-mytpm', 'state');
    await mkdir(persistent, { recursive: true });
    await writeFile(join(persistent, OWNER_FILE), JSON.stringify({ pid: held.swtpmPid + 1_000_000 }));

    first.proc.kill('SIGKILL');
    await until(() => gone(held.swtpmPid), 10_000, 'swtpm to die with its parent');
    expect(existsSync(held.dir)).toBe(true); // nobody cleaned up: the process was killed

    const next = startChild(root, 'once');
    const r = await next.report;
    await new Promise((resolve) => next.proc.once('exit', resolve));
    expect(r.removed).toEqual([held.dir]);
    expect(r.killed).toEqual([]); // setpriv already took swtpm down
    expect(existsSync(held.dir)).toBe(false);
    for (const kept of [live, unowned, persistent, r.dir]) expect(existsSync(kept), kept).toBe(true);
    // The orderly stop of the second session dropped its owner record: a kept dir (--keep) is not swept later.
    expect(existsSync(join(r.dir, 'vehicle', 'swtpm-state', OWNER_FILE))).toBe(false);
  });

  it('a swtpm that outlived its owner (no setpriv at the time) is killed by the sweep before its dir goes', async () => {
    const stale = await mkdtemp(join(root, 'evcc-tpm-lab-'));
    await mkdir(join(stale, 'swtpm-state'));
    const orphan = spawn('sleep', ['600'], { stdio: 'ignore' });
    const deadOwner = spawn('true', { stdio: 'ignore' });
    await new Promise((resolve) => deadOwner.once('exit', resolve));
    await writeFile(join(stale, 'swtpm-state', OWNER_FILE), JSON.stringify({ pid: deadOwner.pid, child: { pid: orphan.pid } }));
    try {
      const r = await sweepStaleSessionDirs(root);
      expect(r.removed).toEqual([stale]);
      expect(r.killed).toEqual([orphan.pid]);
      await until(() => orphan.exitCode !== null || orphan.signalCode !== null, 10_000, 'the orphan to be killed');
      expect(orphan.signalCode).toBe('SIGKILL');
    } finally {
      orphan.kill('SIGKILL');
    }
  });
});
