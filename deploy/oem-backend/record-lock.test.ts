import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import { errorCodeOf } from '../../test/support/ota-jobs.ts';
import { RecordLocks, type LockHolder } from './record-lock.ts';

/**
 * The cross-process record lock in one process, each instance standing in for another process: its own in-process
 * chain, so only the lock file keeps them apart. The real multi-process run is test/integration/oem-record-lock.
 */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'evcc-record-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lockFile = (key: string) => join(dir, 'locks', `${key.replaceAll(':', '.')}.lock`);
const tick = () => new Promise((r) => setImmediate(r));

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  return { log, lines, cps: () => lines.map((l) => l.cp).filter(Boolean) };
}

/** A lock file as another process (another host) leaves it: written by hand, acquired `ageMs` ago. */
async function foreignLock(key: string, ageMs: number, token = 'f'.repeat(32)): Promise<LockHolder> {
  const h: LockHolder = { format: 'evcc-record-lock/1', key, host: 'other-host', pid: 4242, acquiredAt: new Date(Date.now() - ageMs).toISOString(), token };
  await mkdir(join(dir, 'locks'), { recursive: true });
  await writeFile(lockFile(key), `${JSON.stringify(h)}\n`);
  return h;
}

/**
 * Many concurrent read-increment-write cycles on one counter file, through `locksOf(i)`: returns the final count and
 * the most cycles ever inside at once. Awaits inside the cycle let the others run between the read and the write.
 */
async function hammer(locksOf: (i: number) => RecordLocks, workers: number, cycles: number) {
  const file = join(dir, 'counter');
  await writeFile(file, '0');
  let inside = 0;
  let most = 0;
  await Promise.all(Array.from({ length: workers }, async (_, i) => {
    for (let c = 0; c < cycles; c++) {
      await locksOf(i).run('job:j1', async () => {
        most = Math.max(most, ++inside);
        const n = Number(await readFile(file, 'utf8'));
        await tick();
        await writeFile(file, String(n + 1));
        inside--;
      });
    }
  }));
  return { count: Number(await readFile(file, 'utf8')), most };
}

describe('RecordLocks', () => {
  it('excludes across instances (separate in-process chains): no overlap, no lost update', async () => {
    const instances = Array.from({ length: 6 }, () => new RecordLocks(dir));
    expect(await hammer((i) => instances[i]!, 6, 25)).toEqual({ count: 150, most: 1 });
    // nothing left behind: no lock, no aside file
    expect(await readdir(join(dir, 'locks'))).toEqual([]);
    // the control: the same instances without the file lock (chain only) overlap and lose updates
    const chainsOnly = Array.from({ length: 6 }, () => new RecordLocks(undefined));
    const r = await hammer((i) => chainsOnly[i]!, 6, 25);
    expect(r.most).toBeGreaterThan(1);
    expect(r.count).toBeLessThan(150);
  });

  it('excludes concurrent acquire() calls of one instance (no in-process chain in front)', async () => {
    const locks = new RecordLocks(dir);
    let inside = 0;
    let most = 0;
    await Promise.all(Array.from({ length: 10 }, async () => {
      const held = await locks.acquire('vehicle:v1');
      most = Math.max(most, ++inside);
      await tick();
      inside--;
      expect(await held.release()).toBe(true);
    }));
    expect(most).toBe(1);
  });

  it('a lock older than the lease is taken over once, even with many takers; a fresh one is waited for', async () => {
    const c = capture();
    const stale = await foreignLock('job:j2', 31_000);
    const takers = Array.from({ length: 5 }, () => new RecordLocks(dir, { log: c.log }));
    let inside = 0;
    let most = 0;
    const t0 = Date.now();
    await Promise.all(takers.map((l) => l.run('job:j2', async () => {
      most = Math.max(most, ++inside);
      await tick();
      inside--;
    })));
    expect(Date.now() - t0).toBeLessThan(5_000); // not the lease wait
    expect(most).toBe(1);
    expect(c.cps().filter((cp) => cp === 'OEM-RECORD-LOCK-STALE')).toHaveLength(1);
    expect(c.lines.find((l) => l.cp === 'OEM-RECORD-LOCK-STALE')).toMatchObject({ key: 'job:j2', holder: { host: 'other-host', pid: 4242, acquiredAt: stale.acquiredAt } });
    expect(await readdir(join(dir, 'locks'))).toEqual([]);

    // 29 s old is within the 30 s lease: held, not taken over
    await foreignLock('job:j3', 29_000);
    expect(await errorCodeOf(new RecordLocks(dir, { waitMs: 150 }).run('job:j3', async () => 'ran'))).toBe('OEM_RECORD_LOCK_TIMEOUT');
    // a shorter lease makes the same lock stale
    expect(await new RecordLocks(dir, { leaseMs: 20_000 }).run('job:j3', async () => 'ran')).toBe('ran');
  });

  it('a lock file without a holder record (its creator died before writing) is judged by its age', async () => {
    await mkdir(join(dir, 'locks'), { recursive: true });
    await writeFile(lockFile('job:j4'), '');
    expect(await errorCodeOf(new RecordLocks(dir, { waitMs: 150 }).acquire('job:j4'))).toBe('OEM_RECORD_LOCK_TIMEOUT');
    const old = new Date(Date.now() - 60_000);
    await utimes(lockFile('job:j4'), old, old);
    const held = await new RecordLocks(dir, { waitMs: 1_000 }).acquire('job:j4');
    expect(JSON.parse(await readFile(lockFile('job:j4'), 'utf8'))).toMatchObject({ token: held.token, pid: process.pid });
    expect(await held.release()).toBe(true);
  });

  it('release never removes a foreign lock: one that replaced ours, or the next holder\'s after a second release', async () => {
    const c = capture();
    const a = new RecordLocks(dir, { log: c.log });
    const held = await a.acquire('job:j5');
    expect(JSON.parse(await readFile(lockFile('job:j5'), 'utf8'))).toMatchObject({ format: 'evcc-record-lock/1', key: 'job:j5', pid: process.pid, token: held.token });
    // ours was taken over (we overran the lease) and another process holds it now
    const foreign = await foreignLock('job:j5', 0, 'a'.repeat(32));
    expect(await held.release()).toBe(false);
    expect(JSON.parse(await readFile(lockFile('job:j5'), 'utf8'))).toEqual(foreign);
    expect(c.cps()).toContain('OEM-RECORD-LOCK-LOST');
    await rm(lockFile('job:j5'));

    const first = await a.acquire('job:j5');
    expect(await first.release()).toBe(true);
    const next = await new RecordLocks(dir).acquire('job:j5');
    expect(await first.release()).toBe(false); // a repeated release
    expect(JSON.parse(await readFile(lockFile('job:j5'), 'utf8')).token).toBe(next.token);
    expect(await next.release()).toBe(true);
    expect(await readdir(join(dir, 'locks'))).toEqual([]);
  });

  it('times out with OEM_RECORD_LOCK_TIMEOUT after the bounded wait, naming the holder; the caller\'s fn never runs', async () => {
    const held = await new RecordLocks(dir).acquire('vehicle:v2');
    let ran = false;
    const t0 = Date.now();
    const err = await new RecordLocks(dir, { waitMs: 300 }).run('vehicle:v2', async () => {
      ran = true;
    }).catch((e: unknown) => e);
    const waited = Date.now() - t0;
    expect(err).toMatchObject({ code: 'OEM_RECORD_LOCK_TIMEOUT', details: { key: 'vehicle:v2', waitMs: 300, holder: { pid: process.pid } } });
    expect(ran).toBe(false);
    expect(waited).toBeGreaterThanOrEqual(295);
    expect(waited).toBeLessThan(2_000);
    await held.release();
  });

  it('refuses keys that are no plain file name', async () => {
    const locks = new RecordLocks(dir);
    for (const bad of ['../x', 'a/b', '', '.hidden']) expect(await errorCodeOf(() => locks.run(bad, async () => 1))).toBe('CONFIG_INVALID');
  });
});
