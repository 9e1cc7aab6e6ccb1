import { safeRelative } from './paths.ts';
import type { FileStore } from './types.ts';

/** In-memory store for unit tests and the embedded bench session; replace is trivially atomic. */
export class MemoryStore implements FileStore {
  readonly root = 'memory:';
  private files = new Map<string, Uint8Array>();

  async read(path: string): Promise<Uint8Array | undefined> {
    const v = this.files.get(safeRelative(path));
    return v ? Uint8Array.from(v) : undefined;
  }
  async writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
    this.files.set(safeRelative(path), typeof data === 'string' ? new TextEncoder().encode(data) : Uint8Array.from(data));
  }
  async remove(path: string): Promise<void> {
    const p = safeRelative(path);
    for (const k of [...this.files.keys()]) if (k === p || k.startsWith(`${p}/`)) this.files.delete(k);
  }
  async list(dir: string): Promise<string[]> {
    const prefix = dir === '' || dir === '.' ? '' : `${safeRelative(dir)}/`;
    const names = new Set<string>();
    for (const k of this.files.keys()) if (k.startsWith(prefix)) names.add(k.slice(prefix.length).split('/')[0]!);
    return [...names].sort();
  }
  async exists(path: string): Promise<boolean> {
    const p = safeRelative(path);
    return [...this.files.keys()].some((k) => k === p || k.startsWith(`${p}/`));
  }
}
