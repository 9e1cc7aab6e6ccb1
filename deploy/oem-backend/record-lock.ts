import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';

/**
 * A per-record lock of the OEM backend that holds across processes and hosts sharing one state directory (issue #10
 * "Scale beyond one broker": instances behind one $share group read-modify-write the same job, vehicle and
 * attestation records). It needs no coordinator, only what a local file system and NFSv4 give atomically: exclusive
 * create (O_EXCL) and rename.
 *
 *   acquire   exclusive create of `<dir>/locks/<key>.lock` holding {host, pid, acquiredAt, token}; while another holds
 *             it, retry with jittered exponential back-off up to `waitMs`, then OEM_RECORD_LOCK_TIMEOUT
 *   release   the file is renamed aside and removed if its token is ours; a foreign lock is put back, never removed
 *   stale     a lock older than `leaseMs` (its holder died inside the critical section, or hangs) is taken over: under
 *             `<key>.lock.takeover` (itself an exclusive create) the taker checks it is still the same stale lock and
 *             renames it away, then competes with everyone else through the exclusive create again. The guard is
 *             what keeps a slow taker from renaming away the fresh lock a faster taker has just created.
 *
 * Limits: the lease must outlast every critical section (they are a few small reads and writes; a holder that
 * overruns it may find its lock taken over, which release() reports), and the hosts' clocks must agree to well within
 * the lease (acquiredAt is the holder's wall clock). Lock files are not fsynced: after a power cut no process holds
 * anything, and a lock that survives one is stale after the lease.
 *
 * Within one process, `run` queues callers per key in a promise chain in front of the file lock: cheap, fair (FIFO)
 * and no polling between the process's own handlers.
 */
export const RECORD_LOCK_LEASE_MS = 30_000;
/** Longer than the lease: a waiter outlasts a crashed holder's lease and takes the lock over instead of failing. */
export const RECORD_LOCK_WAIT_MS = 40_000;
const RETRY_MIN_MS = 2;
const RETRY_MAX_MS = 50;
const KEY = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const FORMAT = 'evcc-record-lock/1';

export interface RecordLockOptions {
  /** A lock older than this is stale (default RECORD_LOCK_LEASE_MS). */
  leaseMs?: number;
  /** Longest wait for a lock before OEM_RECORD_LOCK_TIMEOUT (default RECORD_LOCK_WAIT_MS). */
  waitMs?: number;
  /** First and largest back-off step between attempts (each step jittered over [1 ms, step]). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Wall clock in ms since the epoch (default Date.now): acquiredAt and lease checks. */
  now?: () => number;
  log?: Logger;
  /** Written into the lock for an operator (default os.hostname()). */
  host?: string;
}

export interface LockHolder {
  format: typeof FORMAT;
  key: string;
  host: string;
  pid: number;
  acquiredAt: string;
  token: string;
}

export interface HeldLock {
  readonly key: string;
  readonly token: string;
  /** Removes the lock if it is still ours; false when it was taken over meanwhile (held beyond the lease). */
  release(): Promise<boolean>;
}

/** What a lock file says, or — half-written by a creator that has not written yet or died — only its mtime. */
interface Seen {
  /** Compares two sightings: the token, or the file's identity for a lock without a readable one. */
  id: string;
  holder?: LockHolder;
  acquiredAtMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class RecordLocks {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly leaseMs: number;
  private readonly waitMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly now: () => number;
  private readonly host: string;
  private readonly lockDir: string | undefined;
  private dirReady = false;

  /**
   * `dir` is the shared state directory (locks go to `<dir>/locks/`); undefined for a store that is not on disk
   * (MemoryStore): one process is all that can see it, so the in-process chain alone serialises.
   */
  constructor(dir: string | undefined, private readonly o: RecordLockOptions = {}) {
    this.lockDir = dir === undefined ? undefined : join(dir, 'locks');
    this.leaseMs = o.leaseMs ?? RECORD_LOCK_LEASE_MS;
    this.waitMs = o.waitMs ?? RECORD_LOCK_WAIT_MS;
    this.retryMinMs = o.retryMinMs ?? RETRY_MIN_MS;
    this.retryMaxMs = o.retryMaxMs ?? RETRY_MAX_MS;
    this.now = o.now ?? Date.now;
    this.host = o.host ?? hostname();
  }

  /** Runs `fn` holding `key`: first in this process's queue for the key, then across processes. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    checkKey(key);
    const body = async (): Promise<T> => {
      if (!this.lockDir) return fn();
      const held = await this.acquire(key);
      try {
        return await fn();
      } finally {
        await held.release();
      }
    };
    const prev = this.chains.get(key) ?? Promise.resolve();
    const run = prev.then(body, body);
    const tail = run.catch(() => undefined);
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return run;
  }

  /** The cross-process lock alone, without the in-process queue (run() is what callers want). */
  async acquire(key: string): Promise<HeldLock> {
    checkKey(key);
    if (!this.lockDir) throw new EvccError('CONFIG_INVALID', 'record lock without a directory: only run() serialises in-process');
    const path = this.pathOf(key);
    const start = this.now();
    let step = this.retryMinMs;
    let last: Seen | undefined;
    for (;;) {
      const mine = this.holder(key);
      if (await this.create(path, mine)) {
        const acquiredMs = this.now();
        return { key, token: mine.token, release: () => this.release(path, mine, acquiredMs) };
      }
      last = await this.read(path);
      if (last && this.now() - last.acquiredAtMs > this.leaseMs && (await this.takeOver(path, last, key))) continue;
      const left = start + this.waitMs - this.now();
      if (left <= 0) {
        const h = last?.holder;
        throw new EvccError('OEM_RECORD_LOCK_TIMEOUT', `record ${key} stayed locked for ${this.waitMs} ms${h ? ` (held by ${h.host} pid ${h.pid} since ${h.acquiredAt})` : ''}`,
          { key, waitMs: this.waitMs, ...(h ? { holder: { host: h.host, pid: h.pid, acquiredAt: h.acquiredAt } } : {}) });
      }
      await sleep(Math.min(left, Math.max(1, Math.random() * step)));
      step = Math.min(this.retryMaxMs, step * 2);
    }
  }

  private pathOf(key: string): string {
    // ':' is not portable in file names (SMB): mapped to '.', which can only make two keys share a lock, never split one.
    return join(this.lockDir!, `${key.replaceAll(':', '.')}.lock`);
  }

  private holder(key: string): LockHolder {
    return { format: FORMAT, key, host: this.host, pid: process.pid, acquiredAt: new Date(this.now()).toISOString(), token: randomBytes(16).toString('hex') };
  }

  /** Exclusive create with the holder's record; false when the file exists. */
  private async create(path: string, h: LockHolder | Buffer): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (!this.dirReady) {
        await mkdir(this.lockDir!, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
          throw new EvccError('IO_FAILED', `cannot create the record lock directory ${this.lockDir}`, { dir: this.lockDir }, { cause: err });
        });
        this.dirReady = true;
      }
      let fh;
      try {
        fh = await open(path, 'wx', 0o600);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return false;
        if (code === 'ENOENT' && attempt === 0) {
          this.dirReady = false; // the directory went (an operator cleaned up): made again once
          continue;
        }
        throw new EvccError('IO_FAILED', `cannot create record lock ${path}`, { path }, { cause: err });
      }
      try {
        await fh.writeFile(Buffer.isBuffer(h) ? h : `${JSON.stringify(h)}\n`);
      } catch (err) {
        await fh.close().catch(() => undefined);
        await rm(path, { force: true }).catch(() => undefined);
        throw new EvccError('IO_FAILED', `cannot write record lock ${path}`, { path }, { cause: err });
      }
      await fh.close();
      return true;
    }
  }

  private async read(path: string): Promise<Seen | undefined> {
    try {
      const [raw, st] = await Promise.all([readFile(path), stat(path)]);
      return seen(raw, st);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new EvccError('IO_FAILED', `cannot read record lock ${path}`, { path }, { cause: err });
    }
  }

  /**
   * Renames the lock aside and removes it if it is the one seen (`id`); a different lock found there (another
   * process's, created since) is put back with an exclusive create of the same bytes, so its holder's release still
   * recognises it. The aside name is a writeAtomic temp-file name, so FsStore.open sweeps one a crash left behind.
   */
  private async renameAway(path: string, id: string): Promise<'removed' | 'gone' | 'foreign'> {
    const aside = join(this.lockDir!, `.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await rename(path, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      throw new EvccError('IO_FAILED', `cannot move record lock ${path}`, { path }, { cause: err });
    }
    try {
      const [bytes, st] = await Promise.all([readFile(aside), stat(aside)]);
      if (seen(bytes, st).id === id) return 'removed';
      if (!(await this.create(path, bytes))) this.o.log?.error({ path, cp: 'OEM-RECORD-LOCK-LOST' }, 'record lock moved by mistake and re-created by another process meanwhile');
      return 'foreign';
    } finally {
      await rm(aside, { force: true }).catch(() => undefined);
    }
  }

  /** True when the stale lock is gone (worth an immediate retry), false when another taker is at it (back off). */
  private async takeOver(path: string, stale: Seen, key: string): Promise<boolean> {
    const guard = `${path}.takeover`;
    const mine = this.holder(key);
    if (!(await this.create(guard, mine))) {
      const g = await this.read(guard);
      // Another taker is at it; its guard is only stale when that taker died within these few calls.
      if (g && this.now() - g.acquiredAtMs > this.leaseMs) await this.renameAway(guard, g.id);
      return false;
    }
    try {
      const again = await this.read(path);
      if (again?.id !== stale.id) return true; // released or taken over already
      if ((await this.renameAway(path, stale.id)) === 'removed') {
        const h = stale.holder;
        this.o.log?.warn({ key, holder: h ? { host: h.host, pid: h.pid, acquiredAt: h.acquiredAt } : 'unreadable', leaseMs: this.leaseMs, cp: 'OEM-RECORD-LOCK-STALE' },
          `stale record lock of ${key} taken over (older than the ${this.leaseMs} ms lease)`);
      }
      return true;
    } finally {
      await this.renameAway(guard, mine.token);
    }
  }

  private async release(path: string, mine: LockHolder, acquiredMs: number): Promise<boolean> {
    const outcome = await this.renameAway(path, mine.token);
    if (outcome === 'removed') return true;
    this.o.log?.error({ key: mine.key, heldMs: this.now() - acquiredMs, leaseMs: this.leaseMs, outcome, cp: 'OEM-RECORD-LOCK-LOST' },
      `record lock of ${mine.key} was taken over while held (held beyond the ${this.leaseMs} ms lease?)`);
    return false;
  }
}

function seen(raw: Buffer, st: { ino: number; mtimeMs: number }): Seen {
  try {
    const h = JSON.parse(raw.toString('utf8')) as LockHolder;
    const at = Date.parse(h.acquiredAt);
    if (h.format === FORMAT && typeof h.token === 'string' && Number.isFinite(at)) return { id: h.token, holder: h, acquiredAtMs: at };
  } catch {
    // not (yet) a holder record: judged by the file's age
  }
  return { id: `file:${st.ino}:${st.mtimeMs}:${raw.length}`, acquiredAtMs: st.mtimeMs };
}

function checkKey(key: string): void {
  if (!KEY.test(key)) throw new EvccError('CONFIG_INVALID', `record lock key not allowed: ${JSON.stringify(key)}`);
}
