import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { EvccError } from '../../core/errors.ts';
import { safeRelative } from '../store/paths.ts';
import type { PartialFile, PartialFilePort } from './types.ts';

/**
 * Partial download files in the data dir: appends go to an O_APPEND file (0600) and are fsynced on `sync()`, so
 * after a power loss the file holds at least everything synced (the downloader resumes from its length and re-hashes
 * it); `promote` makes the finished file appear under its final name atomically (fsync, rename, fsync of the dir).
 */
export class FsPartialFiles implements PartialFilePort {
  constructor(readonly root: string) {}

  private abs(path: string): string {
    return join(this.root, safeRelative(path));
  }

  async open(path: string): Promise<PartialFile> {
    const abs = this.abs(path);
    try {
      await mkdir(dirname(abs), { recursive: true, mode: 0o700 });
      const fh = await open(abs, 'a+', 0o600);
      const st = await fh.stat();
      if (!st.isFile()) {
        await fh.close();
        throw new EvccError('STORE_NOT_A_FILE', `${abs} is not a regular file`, { path: abs });
      }
      return new FsPartialFile(fh, abs, st.size);
    } catch (err) {
      if (err instanceof EvccError) throw err;
      throw new EvccError('IO_FAILED', `cannot open ${abs}`, { path: abs }, { cause: err });
    }
  }

  async promote(from: string, to: string): Promise<void> {
    const a = this.abs(from);
    const b = this.abs(to);
    try {
      const fh = await open(a, 'r');
      await fh.sync();
      await fh.close();
      await mkdir(dirname(b), { recursive: true, mode: 0o700 });
      await rename(a, b);
      const dir = await open(dirname(b), 'r');
      await dir.sync();
      await dir.close();
    } catch (err) {
      throw new EvccError('IO_FAILED', `cannot move ${a} to ${b}`, { from: a, to: b }, { cause: err });
    }
  }

  async remove(path: string): Promise<void> {
    await rm(this.abs(path), { force: true });
  }
}

/** Appends are gathered up to WRITE_BATCH_BYTES per write(2); sync() writes what is gathered, then fdatasync. */
const WRITE_BATCH_BYTES = 1024 * 1024;

class FsPartialFile implements PartialFile {
  private closed = false;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  constructor(private readonly fh: FileHandle, private readonly path: string, public length: number) {}

  async append(chunk: Uint8Array): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    this.length += chunk.byteLength;
    if (this.pendingBytes >= WRITE_BATCH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    let off = 0;
    while (off < buf.byteLength) {
      const { bytesWritten } = await this.fh.write(buf, off, buf.byteLength - off);
      off += bytesWritten;
    }
  }

  async sync(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    await this.fh.datasync();
  }

  async truncate(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    await this.fh.truncate(0);
    await this.fh.datasync();
    this.length = 0;
  }

  async *read(): AsyncIterable<Uint8Array> {
    await this.flush();
    if (this.length === 0) return;
    for await (const chunk of createReadStream(this.path, { start: 0, end: this.length - 1, highWaterMark: 1 << 20 })) yield new Uint8Array(chunk as Buffer);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
    } finally {
      await this.fh.close();
    }
  }
}
