import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { EvccError } from '../../core/errors.ts';
import { safeRelative } from './paths.ts';
import type { FileStore } from './types.ts';

/** A store entry (or the store's root) is not what the store keeps there: a FIFO, device, socket, directory … */
export type FsStoreErrorCode = 'STORE_NOT_A_FILE';

function kindOf(st: { isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean; isDirectory(): boolean; isFile(): boolean }): string {
  if (st.isFIFO()) return 'FIFO';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  if (st.isSocket()) return 'socket';
  if (st.isDirectory()) return 'directory';
  return st.isFile() ? 'regular file' : 'special file';
}

/**
 * Temp files of `writeAtomic`: `.<pid>.<random>.tmp`, so one that a killed writer left behind can be told from one a
 * live writer is filling. The older form without the pid (`.<random>.tmp`) counts as stale after LEGACY_TMP_MS.
 */
const TMP_FILE = /^\.(\d{1,10})\.[0-9a-f]{12}\.tmp$/;
const LEGACY_TMP_FILE = /^\.[0-9a-f]{12}\.tmp$/;
const LEGACY_TMP_MS = 60_000;
/** How far below the root `open` looks for stale temp files (pki/, keys/contract/, releases/vN/ …). */
const SWEEP_DEPTH = 4;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The real store: a directory (0700) on disk with atomic replace. */
export class FsStore implements FileStore {
  constructor(readonly root: string) {}

  /**
   * Removes the temp files that writers killed between create and rename left (issue #13 item 8: a killed root
   * install left `.tmp` files). A live writer's file (its pid runs) stays. Returns the paths removed.
   */
  static async sweepStaleTempFiles(root: string, depth = SWEEP_DEPTH): Promise<string[]> {
    const removed: string[] = [];
    const walk = async (dir: string, left: number): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(dir, e.name);
        if (e.isDirectory()) {
          if (left > 1) await walk(p, left - 1);
          continue;
        }
        if (!e.isFile()) continue;
        const m = TMP_FILE.exec(e.name);
        const stale = m ? Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))
          : LEGACY_TMP_FILE.test(e.name) && (await stat(p).then((st) => Date.now() - st.mtimeMs > LEGACY_TMP_MS, () => false));
        if (stale && (await rm(p, { force: true }).then(() => true, () => false))) removed.push(p);
      }
    };
    await walk(root, depth);
    return removed;
  }

  static async open(root: string): Promise<FsStore> {
    try {
      await mkdir(root, { recursive: true, mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new EvccError('IO_FAILED', `cannot create store ${root}`, { root }, { cause: err });
    }
    const st = await stat(root).catch((err: unknown) => {
      throw new EvccError('IO_FAILED', `cannot open store ${root}`, { root }, { cause: err });
    });
    if (!st.isDirectory()) {
      throw new EvccError<FsStoreErrorCode>('STORE_NOT_A_FILE', `store ${root} is a ${kindOf(st)}, not a directory`, { root, kind: kindOf(st) });
    }
    await FsStore.sweepStaleTempFiles(root);
    return new FsStore(root);
  }

  private abs(path: string): string {
    return join(this.root, safeRelative(path));
  }

  /**
   * Reads a regular file. Anything else is refused before a byte is read: a FIFO would block forever (it is opened
   * non-blocking, so even the open returns at once), a device could be endless.
   */
  async read(path: string): Promise<Uint8Array | undefined> {
    let fh;
    try {
      fh = await open(this.abs(path), constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new EvccError('IO_FAILED', `cannot read ${path}`, { path }, { cause: err });
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) {
        throw new EvccError<FsStoreErrorCode>('STORE_NOT_A_FILE', `store entry ${path} is a ${kindOf(st)}, not a regular file`, { path, kind: kindOf(st) });
      }
      return new Uint8Array(await fh.readFile());
    } catch (err) {
      if (err instanceof EvccError) throw err;
      throw new EvccError('IO_FAILED', `cannot read ${path}`, { path }, { cause: err });
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  async writeAtomic(path: string, data: Uint8Array | string, options: { mode?: number } = {}): Promise<void> {
    const target = this.abs(path);
    const dir = dirname(target);
    const tmp = join(dir, `.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const fh = await open(tmp, 'wx', options.mode ?? 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, target);
      const dh = await open(dir, 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw new EvccError('IO_FAILED', `atomic write of ${path} failed`, { path }, { cause: err });
    }
  }

  async remove(path: string): Promise<void> {
    await rm(this.abs(path), { force: true, recursive: true });
  }

  async list(dir: string): Promise<string[]> {
    try {
      const entries = await readdir(dir === '' || dir === '.' ? this.root : this.abs(dir));
      return entries.filter((e) => !e.endsWith('.tmp')).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new EvccError('IO_FAILED', `cannot list ${dir}`, { dir }, { cause: err });
    }
  }

  async exists(path: string): Promise<boolean> {
    try {
      await stat(this.abs(path));
      return true;
    } catch {
      return false;
    }
  }
}
