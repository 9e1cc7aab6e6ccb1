import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../deploy/oem-backend/embedded-broker.ts';
import { createLinkCa, issueLinkCert } from '../../deploy/oem-backend/link-pki.ts';
import { silentLogger } from '../../core/logger.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { downloadBundle } from '../../firmware/ota/update/download.ts';
import { verifyJob } from '../../firmware/ota/update/job.ts';
import { MqttJobsClient } from '../../firmware/ota/update/jobs-client.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { HttpsBundleFetch } from '../../hal/http/https-fetch.ts';
import { FsPartialFiles } from '../../hal/http/partial-file.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { testReleasePolicy } from '../support/ota-jobs.ts';
import { until } from '../support/until.ts';
import { otaFixture, type OtaFixture } from './ota-fixtures.ts';

/**
 * `evcc oem-backend campaign create|show` and `evcc oem-backend serve --jobs-dir --bundle-dir` as programs (the
 * embedded bench broker, loopback): a campaign created on the command line reaches the vehicle, which verifies the
 * signed job, downloads the bundle from the backend's HTTPS bundle server and reports; `campaign show` prints the
 * recorded states. Bad input exits 1 with a typed error and no stack trace.
 */
const evcc = join(process.cwd(), 'bin/evcc.ts');
const children: ChildProcess[] = [];
let fx: OtaFixture;
let dir: string;
let broker: EmbeddedBroker;

function run(args: string[]): { proc: ChildProcess; out: string[]; err: string[]; exit: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', evcc, '--no-log-fields', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const out: string[] = [];
  const err: string[] = [];
  proc.stdout!.on('data', (b: Buffer) => out.push(b.toString()));
  proc.stderr!.on('data', (b: Buffer) => err.push(...b.toString().split('\n').filter(Boolean)));
  return { proc, out, err, exit: new Promise((r) => proc.once('exit', (c) => r(c))) };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('evcc oem-backend campaign + serve --jobs-dir --bundle-dir', () => {
  beforeAll(async () => {
    fx = await otaFixture();
    dir = await mkdtemp(join(tmpdir(), 'evcc-campaign-cli-'));
    broker = await startEmbeddedBroker({ port: 0 });
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await broker?.close();
    await fx?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a campaign made on the command line is downloaded, reported and shown', async () => {
    const ca = await createLinkCa('evcc bench link CA');
    const server = await issueLinkCert(ca, { commonName: 'oem-bundles', server: { ips: ['127.0.0.1'] } });
    await writeFile(join(dir, 'answer.key'), fx.signerKeyPem, { mode: 0o600 });
    await writeFile(join(dir, 'bundles.pem'), server.certPem);
    await writeFile(join(dir, 'bundles.key'), server.keyPem, { mode: 0o600 });
    await mkdir(join(dir, 'bundles'));
    const bundle = randomBytes(300_000);
    const sha = createHash('sha256').update(bundle).digest('hex');
    await writeFile(join(dir, 'bundles', 'evcc-v2.raucb'), bundle);
    await writeFile(join(dir, 'policy.json'), JSON.stringify(testReleasePolicy(2, sha)));
    const port = await freePort();
    const url = `https://127.0.0.1:${port}/bundles/evcc-v2.raucb`;
    const jobsDir = join(dir, 'jobs');
    const common = ['--jobs-dir', jobsDir];
    const create = run(['oem-backend', 'campaign', 'create', ...common, '--signing-key', join(dir, 'answer.key'), '--bundle', join(dir, 'bundles', 'evcc-v2.raucb'),
      '--policy', join(dir, 'policy.json'), '--url', url, '--compatible', 'evcc-rpi4', '--vehicle', 'cli-ev-1', '--broker', broker.url, '--mqtt-version', '4', '--id', 'spring-rollout']);
    expect(await create.exit, create.err.join('\n')).toBe(0);
    expect(JSON.parse(create.out.join(''))).toMatchObject({ campaignId: 'spring-rollout', version: 2, jobs: [{ vehicleId: 'cli-ev-1' }] });

    const serve = run(['oem-backend', 'serve', '--pool', fx.poolDir, '--broker', broker.url, '--mqtt-version', '4', '--no-share', '--signing-key', join(dir, 'answer.key'),
      ...common, '--bundle-dir', join(dir, 'bundles'), '--bundle-port', String(port), '--bundle-cert', join(dir, 'bundles.pem'), '--bundle-key', join(dir, 'bundles.key')]);
    await until(() => serve.err.some((l) => l.includes('OEM backend ready')), 30_000, 'OEM backend');

    const clock = new SystemClock();
    const link = new OtaLink({ connector: new MqttJsConnector(), url: broker.url, vehicleId: 'cli-ev-1', protocolVersion: 4, clock, log: silentLogger(), reconnectPeriodMs: 200 });
    try {
      expect(await link.waitConnected(5_000)).toBe(true);
      const jobs = new MqttJobsClient({ client: link.client, vehicleId: 'cli-ev-1', clock, log: silentLogger() });
      const next = await jobs.next();
      const job = verifyJob(next!.document, { oemJobKey: fx.trust, vehicleId: 'cli-ev-1', runningVersion: 1, counterVersion: 1, compatible: 'evcc-rpi4', now: new Date() });
      const dataDir = join(dir, 'vehicle');
      const progress: number[] = [];
      const got = await downloadBundle(job, {
        fetch: new HttpsBundleFetch({ ca: ca.certPem }), data: await FsStore.open(dataDir), files: new FsPartialFiles(dataDir), log: silentLogger(),
        onProgress: (p) => progress.push(p.bytes),
      });
      expect(Buffer.compare(await readFile(got.path), bundle)).toBe(0);
      await jobs.report(job.jobId, 'in_progress', { progress: 50 });
      await jobs.report(job.jobId, 'failed', { reason: 'install refused by RAUC', code: 'BUNDLE_INVALID' });
      jobs.close();
    } finally {
      await link.close();
    }
    serve.proc.kill('SIGTERM');
    expect(await serve.exit).toBe(0);

    const show = run(['oem-backend', 'campaign', 'show', ...common, '--id', 'spring-rollout']);
    expect(await show.exit, show.err.join('\n')).toBe(0);
    const [shown] = JSON.parse(show.out.join('')) as { jobs: { status: string; code: string; history: { status: string; progress?: number }[] }[] }[];
    expect(shown!.jobs[0]).toMatchObject({ status: 'failed', code: 'BUNDLE_INVALID' });
    expect(shown!.jobs[0]!.history.map((h) => h.status)).toEqual(['queued', 'in_progress', 'failed']);
  });

  it('bad input: a plain-HTTP bundle URL, an unknown campaign — exit 1, typed error, no stack trace', async () => {
    const bad = run(['oem-backend', 'campaign', 'create', '--jobs-dir', join(dir, 'jobs'), '--signing-key', join(dir, 'answer.key'), '--bundle', join(dir, 'bundles', 'evcc-v2.raucb'),
      '--policy', join(dir, 'policy.json'), '--url', 'http://127.0.0.1/bundles/evcc-v2.raucb', '--compatible', 'evcc-rpi4', '--vehicle', 'cli-ev-2']);
    expect(await bad.exit).toBe(1);
    expect(bad.err.join('\n')).toMatch(/OTA_JOB_MALFORMED/);
    expect(bad.err.join('\n')).not.toMatch(/^\s+at /m);
    const none = run(['oem-backend', 'campaign', 'show', '--jobs-dir', join(dir, 'jobs'), '--id', 'nope']);
    expect(await none.exit).toBe(1);
    expect(none.err.join('\n')).toMatch(/CONFIG_INVALID/);
  });
});
