import { createHash, type Hash } from 'node:crypto';
import { EvccError, isEvccError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/logger.ts';
import type { Clock } from '../../../hal/clock/types.ts';
import type { BundleFetchPort, PartialFile, PartialFilePort } from '../../../hal/http/types.ts';
import type { FileStore } from '../../../hal/store/types.ts';
import { releaseBundle } from './after-boot.ts';
import type { VerifiedJob } from './job.ts';

export type { BundleFetchPort, PartialFilePort } from '../../../hal/http/types.ts';

/**
 * The bundle download of a verified job (issue #10): HTTPS from the OEM backend's bundle server into the data dir
 * at `releases/v<N>/bundle.raucb` (after-boot.ts releaseBundle), through `<that>.part`:
 *  - resume: the partial file's length is the next Range start, after a broken connection (up to `attempts` within
 *    one call) and after a restart (the partial file survives, its appends are fsynced every FSYNC_EVERY_BYTES and
 *    whenever the transfer stops);
 *  - size cap before buffering: the job's size (and `maxBytes`) bounds the announced Content-Length / Content-Range
 *    total and every byte seen; the first byte over the cap aborts the transfer and nothing past it is written;
 *  - progress as bytes of total;
 *  - the SHA-256 of the whole file is compared with the signed job's before the file is handed on (renamed to its
 *    final name); a mismatch removes it. The RAUC signature check comes after (hal/rauc/bundle.ts verifyBundle).
 */
export type DownloadErrorCode =
  /** The job's size, the announced length or the bytes seen exceed the job's size or the configured cap. */
  | 'OTA_DOWNLOAD_OVERSIZED'
  /** The whole file's SHA-256 is not the one the signed job names (file removed). */
  | 'OTA_DOWNLOAD_SHA256_MISMATCH';

/** Default cap of one bundle (a rootfs image of a few hundred MiB fits). */
export const OTA_MAX_BUNDLE_BYTES = 1024 * 1024 * 1024;
export const FSYNC_EVERY_BYTES = 4 * 1024 * 1024;
/** Progress callbacks at most every this many bytes (and at the end). */
export const PROGRESS_EVERY_BYTES = 256 * 1024;

export interface DownloadProgress {
  bytes: number;
  total: number;
}

export interface DownloadDeps {
  fetch: BundleFetchPort;
  /** The data dir (the bundle's destination; its `root` names the absolute path handed to RAUC). */
  data: FileStore;
  /** Append-only partial files in the same data dir (hal/http/partial-file.ts). */
  files: PartialFilePort;
  log: Logger;
  onProgress?: (p: DownloadProgress) => void;
  /** Cap above the job's own size (default OTA_MAX_BUNDLE_BYTES). */
  maxBytes?: number;
  /** Connection attempts within this call (default 5); the partial file keeps what arrived for the next call. */
  attempts?: number;
  /** Pause between attempts (default 1 s, doubling), through the clock port. */
  clock?: Clock;
  retryDelayMs?: number;
  signal?: AbortSignal;
}

export interface DownloadedBundle {
  /** Absolute path (for RAUC). */
  path: string;
  /** Relative to the data dir (releases/v<N>/bundle.raucb). */
  relative: string;
  sha256: string;
  /** Bytes fetched in this call (less than the size after a resume). */
  fetched: number;
  /** Connection attempts this call needed. */
  attempts: number;
}

function downloadError(code: DownloadErrorCode, message: string, details: Record<string, unknown>): EvccError {
  return new EvccError(code, message, details);
}

async function hashOf(file: PartialFile): Promise<Hash> {
  const h = createHash('sha256');
  for await (const chunk of file.read()) h.update(chunk);
  return h;
}

export async function downloadBundle(job: VerifiedJob, deps: DownloadDeps): Promise<DownloadedBundle> {
  const relative = releaseBundle(job.version);
  const partPath = `${relative}.part`;
  const size = job.bundle.size;
  const maxBytes = deps.maxBytes ?? OTA_MAX_BUNDLE_BYTES;
  const ids = { jobId: job.jobId, version: job.version, size };
  if (size > maxBytes) {
    throw downloadError('OTA_DOWNLOAD_OVERSIZED', `job ${job.jobId}: bundle of ${size} bytes exceeds the cap of ${maxBytes}`, { ...ids, maxBytes });
  }
  const result = (sha256: string, fetched: number, attempts: number): DownloadedBundle =>
    ({ path: `${deps.data.root}/${relative}`, relative, sha256, fetched, attempts });

  // A complete bundle from an earlier run (crash after the rename): hand it on when it is the job's.
  if (await deps.data.exists(relative)) {
    const done = await deps.files.open(relative);
    try {
      const digest = (await hashOf(done)).digest('hex');
      if (digest === job.bundle.sha256 && done.length === size) {
        deps.log.info({ ...ids, path: relative }, 'download: bundle already complete');
        return result(digest, 0, 0);
      }
    } finally {
      await done.close();
    }
    await deps.files.remove(relative);
  }

  const part = await deps.files.open(partPath);
  let fetched = 0;
  let attempt = 0;
  try {
    if (part.length > size) await part.truncate();
    let hash = await hashOf(part);
    if (part.length > 0) deps.log.info({ ...ids, have: part.length }, `download: resuming at byte ${part.length}`);
    const attempts = deps.attempts ?? 5;
    let delay = deps.retryDelayMs ?? 1_000;
    let lastProgress = -1;
    const progress = (force = false) => {
      if (!deps.onProgress) return;
      if (force || part.length - lastProgress >= PROGRESS_EVERY_BYTES) {
        lastProgress = part.length;
        deps.onProgress({ bytes: part.length, total: size });
      }
    };
    progress(true);
    while (part.length < size) {
      deps.signal?.throwIfAborted();
      attempt++;
      try {
        fetched += await transfer();
      } catch (err) {
        await part.sync();
        if (!isEvccError(err, 'OTA_DOWNLOAD_NETWORK') || attempt >= attempts) throw err;
        deps.log.warn({ ...ids, have: part.length, attempt, error: err.message }, 'download: connection broken, resuming');
        if (deps.clock) await deps.clock.sleep(delay, deps.signal);
        delay = Math.min(delay * 2, 30_000);
      }
    }
    await part.sync();
    progress(true);
    const digest = hash.digest('hex');
    if (digest !== job.bundle.sha256) {
      await part.close();
      await deps.files.remove(partPath);
      throw downloadError('OTA_DOWNLOAD_SHA256_MISMATCH', `job ${job.jobId}: downloaded bundle's SHA-256 ${digest.slice(0, 16)}… is not the signed ${job.bundle.sha256.slice(0, 16)}…`, { ...ids, sha256: digest, expected: job.bundle.sha256 });
    }
    await part.close();
    await deps.files.promote(partPath, relative);
    deps.log.info({ ...ids, fetched, attempts: attempt, sha256: digest }, 'download: bundle complete, SHA-256 matches the job');
    return result(digest, fetched, attempt);

    /** One connection: appends what arrives; returns the bytes it added. */
    async function transfer(): Promise<number> {
      let start = part.length;
      let res;
      try {
        res = await deps.fetch.get(job.bundle.url, { start, ...(deps.signal ? { signal: deps.signal } : {}) });
      } catch (err) {
        // The partial file is longer than the server's resource: it belongs to something else; start over.
        if (isEvccError(err, 'OTA_DOWNLOAD_RANGE_UNSATISFIABLE') && start > 0) {
          await part.truncate();
          hash = createHash('sha256');
          throw new EvccError('OTA_DOWNLOAD_NETWORK', 'range refused for the partial file: starting over', ids, { cause: err });
        }
        throw err;
      }
      if (res.status === 200 && start > 0) {
        await part.truncate();
        hash = createHash('sha256');
        start = 0;
      }
      const announced = res.total ?? (res.length !== undefined ? start + res.length : undefined);
      if (announced !== undefined && announced > size) {
        res.abort();
        throw downloadError('OTA_DOWNLOAD_OVERSIZED', `job ${job.jobId}: server announces ${announced} bytes, the job says ${size}`, { ...ids, announced });
      }
      let added = 0;
      let unsynced = 0;
      for await (const chunk of res.body) {
        if (part.length + chunk.byteLength > size) {
          res.abort();
          throw downloadError('OTA_DOWNLOAD_OVERSIZED', `job ${job.jobId}: server sent more than the job's ${size} bytes`, { ...ids, seen: part.length + chunk.byteLength });
        }
        await part.append(chunk);
        hash.update(chunk);
        added += chunk.byteLength;
        unsynced += chunk.byteLength;
        if (unsynced >= FSYNC_EVERY_BYTES) {
          await part.sync();
          unsynced = 0;
        }
        progress();
      }
      if (part.length < size) {
        throw new EvccError('OTA_DOWNLOAD_NETWORK', `job ${job.jobId}: transfer ended at byte ${part.length} of ${size}`, { ...ids, have: part.length });
      }
      return added;
    }
  } catch (err) {
    if (isEvccError(err, 'OTA_DOWNLOAD_OVERSIZED')) {
      await part.close().catch(() => undefined);
      await deps.files.remove(partPath);
    } else {
      await part.close().catch(() => undefined);
    }
    throw err;
  }
}
