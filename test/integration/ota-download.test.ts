import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRange } from '../../deploy/oem-backend/bundle-server.ts';
import { createLinkCa, issueLinkCert } from '../../deploy/oem-backend/link-pki.ts';
import { silentLogger } from '../../core/logger.ts';
import { downloadBundle, type DownloadDeps } from '../../firmware/ota/update/download.ts';
import type { VerifiedJob } from '../../firmware/ota/update/job.ts';
import { HttpsBundleFetch } from '../../hal/http/https-fetch.ts';
import { FsPartialFiles } from '../../hal/http/partial-file.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { errorCodeOf } from '../support/ota-jobs.ts';
import { bundleHost, type BundleHost } from './ota-download-rig.ts';

/**
 * The bundle download against the OEM backend's real HTTPS bundle server (node:https, the link CA's server
 * certificate), through a relay that breaks the connection mid-transfer: resume by Range from the fsynced partial
 * file, within one call and across calls (a restart), the size cap before buffering, progress, the SHA-256 check,
 * and the transport's typed refusals (other CA, plain HTTP, 404, 416).
 */
const SIZE = 3 * 1024 * 1024 + 123;
const bundle = randomBytes(SIZE);
const sha = createHash('sha256').update(bundle).digest('hex');
let host: BundleHost;
let dataDir: string;

const job = (over: Partial<VerifiedJob['bundle']> = {}, version = 2): VerifiedJob => ({
  jobId: 'job-dl', vehicleId: 'VIN0001', version, compatible: 'evcc-rpi4',
  bundle: { url: host.url('evcc-v2.raucb'), size: SIZE, sha256: sha, ...over }, policy: {}, issuedAt: '', expiresAt: '',
});

function deps(over: Partial<DownloadDeps> = {}): DownloadDeps {
  return {
    fetch: new HttpsBundleFetch({ ca: host.ca.certPem, idleTimeoutMs: 5_000 }),
    data: new FsStore(dataDir), files: new FsPartialFiles(dataDir), log: silentLogger(), ...over,
  };
}

const code = errorCodeOf;

const exists = (p: string) => stat(p).then(() => true, () => false);

beforeAll(async () => {
  host = await bundleHost();
  await writeFile(join(host.dir, 'evcc-v2.raucb'), bundle);
  await writeFile(join(host.dir, 'big.raucb'), Buffer.concat([bundle, randomBytes(4096)]));
});
afterAll(async () => {
  await host?.close();
});

describe('bundle download over HTTPS with Range resume', () => {
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'evcc-dl-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('a broken connection mid-transfer resumes by Range; progress climbs to the total; the SHA-256 is checked', async () => {
    host.cutNext(1_200_000);
    const before = { partial: host.server.stats.partial, cut: host.relayStats.cut };
    const progress: { bytes: number; total: number }[] = [];
    const r = await downloadBundle(job(), deps({ onProgress: (p) => progress.push(p), retryDelayMs: 0 }));
    expect(host.relayStats.cut - before.cut).toBe(1);
    expect(host.server.stats.partial - before.partial).toBe(1); // the second connection asked for a Range
    expect(r.attempts).toBe(2);
    expect(r.sha256).toBe(sha);
    expect(r.path).toBe(join(dataDir, 'releases/v2/bundle.raucb'));
    expect(Buffer.compare(await readFile(r.path), bundle)).toBe(0);
    expect(await exists(`${r.path}.part`)).toBe(false);
    expect(progress.at(-1)).toEqual({ bytes: SIZE, total: SIZE });
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.bytes).toBeGreaterThanOrEqual(progress[i - 1]!.bytes);
    expect(progress.some((p) => p.bytes > 0 && p.bytes < SIZE)).toBe(true);
    // Run again: the complete file is recognised by its digest, nothing fetched.
    const again = await downloadBundle(job(), deps());
    expect(again.fetched).toBe(0);
  });

  it('a restart resumes from the partial file the broken run left (fsynced), fetching only the rest', async () => {
    const v = 3;
    host.cutNext(900_000);
    expect(await code(downloadBundle(job({}, v), deps({ attempts: 1 })))).toBe('OTA_DOWNLOAD_NETWORK');
    const part = join(dataDir, `releases/v${v}/bundle.raucb.part`);
    const kept = (await stat(part)).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(900_000);
    expect(Buffer.compare(await readFile(part), bundle.subarray(0, kept))).toBe(0);
    const r = await downloadBundle(job({}, v), deps());
    expect(r.fetched).toBe(SIZE - kept);
    expect(r.sha256).toBe(sha);
  });

  it('a wrong SHA-256 is refused and nothing is handed on', async () => {
    const v = 4;
    expect(await code(downloadBundle(job({ sha256: '00'.repeat(32) }, v), deps()))).toBe('OTA_DOWNLOAD_SHA256_MISMATCH');
    expect(await exists(join(dataDir, `releases/v${v}/bundle.raucb`))).toBe(false);
    expect(await exists(join(dataDir, `releases/v${v}/bundle.raucb.part`))).toBe(false);
  });

  it('oversized: a job above the cap is refused before any request; a server sending more than the job says is cut off', async () => {
    const requests = host.server.stats.requests;
    expect(await code(downloadBundle(job({}, 5), deps({ maxBytes: SIZE - 1 })))).toBe('OTA_DOWNLOAD_OVERSIZED');
    expect(host.server.stats.requests).toBe(requests);
    // Announced (Content-Length) larger than the job's size: refused at the headers, nothing written.
    expect(await code(downloadBundle(job({ url: host.url('big.raucb') }, 6), deps()))).toBe('OTA_DOWNLOAD_OVERSIZED');
    expect(await exists(join(dataDir, 'releases/v6/bundle.raucb.part'))).toBe(false);
  });

  it('oversized without a Content-Length: refused at the first byte past the job size, none of it written', async () => {
    const ca = await createLinkCa('evcc test liar CA');
    const id = await issueLinkCert(ca, { commonName: 'liar', server: { ips: ['127.0.0.1'] } });
    const liar = createHttpsServer({ cert: id.certPem, key: id.keyPem }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked, no length
      let sent = 0;
      const push = () => {
        while (sent < 64 * 1024 * 1024) {
          sent += 65536;
          if (!res.write(randomBytes(65536))) return void res.once('drain', push);
        }
        res.end();
      };
      push();
      res.on('close', () => (sent = Infinity));
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', () => r()));
    const url = `https://127.0.0.1:${(liar.address() as AddressInfo).port}/bundles/x.raucb`;
    try {
      const fetch = new HttpsBundleFetch({ ca: ca.certPem });
      expect(await code(downloadBundle({ ...job({ url, size: 1_000_000 }, 7) }, deps({ fetch })))).toBe('OTA_DOWNLOAD_OVERSIZED');
      expect(await exists(join(dataDir, 'releases/v7/bundle.raucb.part'))).toBe(false);
    } finally {
      liar.closeAllConnections();
      await new Promise<void>((r) => liar.close(() => r()));
    }
  });

  it('transport refusals are typed: another CA, plain HTTP, 404, 416', async () => {
    const stranger = await createLinkCa('evcc some other CA');
    const fetch = new HttpsBundleFetch({ ca: stranger.certPem });
    expect(await code(fetch.get(host.url('evcc-v2.raucb'), { start: 0 }))).toBe('OTA_DOWNLOAD_TLS');
    const ours = new HttpsBundleFetch({ ca: host.ca.certPem });
    expect(await code(ours.get(`http://127.0.0.1:${host.port}/bundles/evcc-v2.raucb`, { start: 0 }))).toBe('OTA_DOWNLOAD_URL_REFUSED');
    expect(await code(ours.get(host.url('missing.raucb'), { start: 0 }))).toBe('OTA_DOWNLOAD_HTTP');
    expect(await code(ours.get(`https://127.0.0.1:${host.port}/etc/passwd`, { start: 0 }))).toBe('OTA_DOWNLOAD_HTTP');
    expect(await code(ours.get(host.url('evcc-v2.raucb'), { start: SIZE }))).toBe('OTA_DOWNLOAD_RANGE_UNSATISFIABLE');
    const r = await ours.get(host.url('evcc-v2.raucb'), { start: SIZE - 10 });
    expect(r).toMatchObject({ status: 206, start: SIZE - 10, length: 10, total: SIZE });
    const chunks: Uint8Array[] = [];
    for await (const c of r.body) chunks.push(c);
    expect(Buffer.compare(Buffer.concat(chunks), bundle.subarray(SIZE - 10))).toBe(0);
  });

  it('Range parsing: open, closed, suffix, past the end, ignored forms', () => {
    expect(parseRange('bytes=10-', 100)).toEqual({ start: 10, end: 99 });
    expect(parseRange('bytes=10-19', 100)).toEqual({ start: 10, end: 19 });
    expect(parseRange('bytes=90-200', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-5', 100)).toEqual({ start: 95, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-1,5-6', 100)).toBeUndefined();
    expect(parseRange('items=0-1', 100)).toBeUndefined();
    expect(parseRange(undefined, 100)).toBeUndefined();
  });
});
