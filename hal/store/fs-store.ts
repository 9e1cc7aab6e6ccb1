import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { EvccError } from '../../core/errors.ts';
import { safeRelative } from './paths.ts';
import type { FileStore } from './types.ts';

/** The real store: a directory (0700) on disk with atomic replace. */
export class FsStore implements FileStore {
  constructor(readonly root: string) {}

  static async open(root: string): Promise<FsStore> {
    await mkdir(root, { recursive: true, mode: 0o700 });
    return new FsStore(root);
  }

  private abs(path: string): string {
    return join(this.root, safeRelative(path));
  }

  async read(path: string): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(await readFile(this.abs(path)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new EvccError('IO_FAILED', `cannot read ${path}`, { path }, { cause: err });
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
