import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Temporary session dirs that outlive a killed process (the bench session's `/tmp/evcc-bench-*` with its swtpm
 * state, a test's TPM lab) are removed at the next start — only when the process that owned them is gone.
 *
 * The owner is recorded in `evcc-owner.json` as pid + start time (field 22 of /proc/<pid>/stat): a pid alone could
 * have been reused by an unrelated process since. A dir counts as a session dir when
 *   - its record sits at its top (written by `createSessionDir`), or
 *   - its name has a known session prefix and a subdir (up to 3 levels down) holds a record (the swtpm state dir:
 *     Swtpm writes one there, so a bench dir made by plain mkdtemp is covered too).
 * Only dirs directly under the temp dir, named `evcc-*`, real dirs (no symlinks) of our own uid are considered:
 * a state dir given by hand elsewhere (`evcc tpm sim --state-dir /var/lib/…`) is persistent NV and never touched.
 */
export const OWNER_FILE = 'evcc-owner.json';
/** mkdtemp prefixes of the session dirs that hold a swtpm state dir without a top-level record. */
export const SESSION_DIR_PREFIXES = ['evcc-bench-', 'evcc-tpm-lab-'] as const;

export interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks since boot; undefined where /proc is not available. */
  startTime?: string;
}

export interface OwnerRecord extends ProcessIdentity {
  /** A child process bound to the dir (swtpm), killed by the sweep if it outlived its owner. */
  child?: ProcessIdentity;
}

function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: the fields after it start after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Start time of a process from /proc (Linux); undefined when it does not exist or /proc is absent. */
export function processStartTime(pid: number): string | undefined {
  return procStat(pid)?.[19]; // field 22 (starttime); [0] is field 3 (state)
}

/**
 * True while the process named by `id` runs (same pid and, where known, same start time). A zombie is dead: it
 * has exited and only waits to be reaped (a container's init may never do that).
 */
export function processAlive(id: ProcessIdentity): boolean {
  try {
    process.kill(id.pid, 0);
  } catch (err) {
    // EPERM: it exists but is not ours to signal; still alive.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(id.pid);
  if (!stat) return true; // no /proc: the signal check is all there is
  if (stat[0] === 'Z' || stat[0] === 'X') return false;
  return id.startTime === undefined || stat[19] === id.startTime;
}

export function selfIdentity(): ProcessIdentity {
  const startTime = processStartTime(process.pid);
  return { pid: process.pid, ...(startTime !== undefined ? { startTime } : {}) };
}

export async function writeOwnerFile(dir: string, child?: ProcessIdentity): Promise<void> {
  const record: OwnerRecord = { ...selfIdentity(), ...(child ? { child } : {}) };
  await writeFile(join(dir, OWNER_FILE), `${JSON.stringify(record)}\n`, { mode: 0o600 });
}

async function readOwner(dir: string): Promise<OwnerRecord | undefined> {
  try {
    const v = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as Partial<OwnerRecord>;
    if (typeof v.pid !== 'number' || !Number.isInteger(v.pid) || v.pid <= 0) return undefined;
    const child = v.child && typeof v.child.pid === 'number' && v.child.pid > 0 ? v.child : undefined;
    return { pid: v.pid, ...(typeof v.startTime === 'string' ? { startTime: v.startTime } : {}), ...(child ? { child } : {}) };
  } catch {
    return undefined;
  }
}

/**
 * Whether a per-process dir (a TPM driver's work dir, `work-*`) belongs to a process that is gone: true / false from
 * its owner record, undefined without one (made before records existed, or by a process killed between mkdtemp and
 * the record: the caller decides by age).
 */
export async function ownerGone(dir: string): Promise<boolean | undefined> {
  const r = await readOwner(dir);
  return r ? !processAlive(r) : undefined;
}

/** A temp dir (0700) that the next start removes once this process is gone (e.g. killed before its cleanup). */
export async function createSessionDir(prefix: string, root = tmpdir()): Promise<string> {
  if (!/^evcc-[a-z0-9-]*$/.test(prefix)) throw new RangeError(`session dir prefix must be evcc-…: ${prefix}`);
  const dir = await mkdtemp(join(root, prefix));
  await writeOwnerFile(dir);
  return dir;
}

/** Owner records below `dir` (the bench keeps swtpm state at `<dir>/vehicle/swtpm-state`), bounded in depth and count. */
async function nestedOwners(dir: string, depth = 3): Promise<OwnerRecord[]> {
  const out: OwnerRecord[] = [];
  let budget = 256;
  const walk = async (d: string, left: number): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (!e.isDirectory() || --budget < 0) continue; // isDirectory() of a Dirent is false for a symlink
      const sub = join(d, e.name);
      const r = await readOwner(sub);
      if (r) out.push(r);
      else if (left > 1) await walk(sub, left - 1);
    }
  };
  await walk(dir, depth);
  return out;
}

/**
 * Our own session dir, now and synchronously (a process that is about to end on a signal): the children its owner
 * records name (swtpm, which would otherwise keep writing into it until its parent-death signal) are SIGKILLed first,
 * then the dir goes, retried while a dying child's last write races the removal.
 */
export function removeSessionDirNow(dir: string, depth = 3): void {
  const walk = (d: string, left: number): void => {
    try {
      const r = JSON.parse(readFileSync(join(d, OWNER_FILE), 'utf8')) as Partial<OwnerRecord>;
      if (r.pid === process.pid && r.child && typeof r.child.pid === 'number' && processAlive(r.child)) process.kill(r.child.pid, 'SIGKILL');
    } catch {
      // no record here
    }
    if (left > 0) {
      for (const e of (() => { try { return readdirSync(d, { withFileTypes: true }); } catch { return []; } })()) if (e.isDirectory()) walk(join(d, e.name), left - 1);
    }
  };
  walk(dir, depth);
  rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
}

export interface SweepResult {
  removed: string[];
  /** Orphaned children (e.g. swtpm without setpriv) that were killed before their dir was removed. */
  killed: number[];
}

/** Removes the session dirs under `root` whose owner process is gone (see the module comment for which count). */
export async function sweepStaleSessionDirs(root = tmpdir()): Promise<SweepResult> {
  const out: SweepResult = { removed: [], killed: [] };
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return out;
  }
  const uid = process.getuid?.();
  for (const name of entries) {
    if (!name.startsWith('evcc-')) continue;
    const dir = join(root, name);
    try {
      const st = await lstat(dir);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      const records: OwnerRecord[] = [];
      const top = await readOwner(dir);
      if (top) records.push(top);
      else if (SESSION_DIR_PREFIXES.some((p) => name.startsWith(p))) records.push(...(await nestedOwners(dir)));
      if (records.length === 0 || records.some((r) => processAlive(r))) continue;
      for (const r of records) {
        if (r.child && processAlive(r.child)) {
          try {
            process.kill(r.child.pid, 'SIGKILL');
            out.killed.push(r.child.pid);
          } catch {
            // gone meanwhile
          }
        }
      }
      await rm(dir, { recursive: true, force: true });
      out.removed.push(dir);
    } catch {
      // raced by another sweeper or unreadable: leave it for the next start
    }
  }
  return out;
}
