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

/** The real store: a directory (0700) on disk with atomic replace. */
export class FsStore implements FileStore {
  constructor(readonly root: string) {}

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
    const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
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
