/**
 * Persistent files under the runtime's data dir. Every write is an atomic replace (write temp, fsync, rename,
 * fsync dir) so a power cut or SIGKILL leaves the old or the new content, never a torn file.
 * Paths are relative to the store root and may contain `/`; `..` and absolute paths are refused.
 */
export interface FileStore {
  /** Absolute location, for logs and for tools (tpm2-tools, rauc) that need a real path. */
  readonly root: string;
  read(path: string): Promise<Uint8Array | undefined>;
  writeAtomic(path: string, data: Uint8Array | string, options?: { mode?: number }): Promise<void>;
  remove(path: string): Promise<void>;
  list(dir: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
}
