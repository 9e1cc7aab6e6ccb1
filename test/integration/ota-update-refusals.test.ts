import { createHash } from 'node:crypto';
import { copyFile, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildBundle } from '../../deploy/bundle/build.ts';
import { JobService, type ReleaseSpec } from '../../deploy/oem-backend/jobs.ts';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { silentLogger } from '../../core/logger.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { DATA } from '../../firmware/keys/layout.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { runUpdateAgent, type UpdateAgentDeps } from '../../firmware/ota/update/agent.ts';
import { UPDATE_RECORD } from '../../firmware/ota/update/after-boot.ts';
import { downloadBundle } from '../../firmware/ota/update/download.ts';
import { verifyJob } from '../../firmware/ota/update/job.ts';
import { MqttJobsClient } from '../../firmware/ota/update/jobs-client.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { HttpsBundleFetch } from '../../hal/http/https-fetch.ts';
import { FsPartialFiles } from '../../hal/http/partial-file.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { verifyBundle } from '../../hal/rauc/bundle.ts';
import type { RaucDbusInstaller } from '../../hal/rauc/dbus.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { OEM_BACKEND_USER, startMosquitto, type MosquittoBroker } from '../support/mosquitto.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { RAUC_RIG_PREREQS, RaucRig, RIG_COMPATIBLE, type RigRelease } from '../support/rauc-rig.ts';
import { until } from '../support/until.ts';
import { bundleHost, type BundleHost } from './ota-download-rig.ts';
import { otaFixture, type OtaFixture } from './ota-fixtures.ts';

/**
 * Issue #10 Must show 3: update jobs the vehicle must refuse, each with its own typed error, reported `rejected`
 * with that code to the backend, and nothing installed — real `rauc service` on its private D-Bus with file-backed
 * A/B slots (test/support/rauc-rig.ts), the vehicle's update agent (firmware/ota/update/agent.ts) fed by the
 * backend's campaign over mosquitto (mTLS + ACL) and downloading from the backend's HTTPS bundle server:
 *
 *   forged job signature → OTA_JOB_SIGNATURE_INVALID     job for another vehicle → OTA_JOB_WRONG_VEHICLE
 *   wrong SHA-256 → OTA_DOWNLOAD_SHA256_MISMATCH         tampered bundle → BUNDLE_INVALID (rauc info)
 *   bundle signed by another key → BUNDLE_SIGNER_UNTRUSTED   oversized download → OTA_DOWNLOAD_OVERSIZED
 *   downgrade (version < NV counter) → OTA_JOB_DOWNGRADE
 *
 * "Nothing installed": slot B's bytes, RAUC's primary and slot states, the NV counter, the update record and the
 * data dir's releases are what they were before the job.
 */
const VEHICLE = 'veh-upd-1';
const connector = new MqttJsConnector();
const clock = new SystemClock();
let rig: RaucRig;
let v1: RigRelease;
let v2: RigRelease;
let fx: OtaFixture;
let broker: MosquittoBroker;
let backend: OemBackend;
let jobs: JobService;
let host: BundleHost;
let link: OtaLink;
let client: MqttJobsClient;
let installer: RaucDbusInstaller;

const sha256 = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');
const size = async (p: string) => (await stat(p)).size;

async function serve(name: string, from: string): Promise<{ url: string; size: number; sha256: string }> {
  await copyFile(from, join(host.dir, name));
  return { url: host.url(name), size: await size(from), sha256: await sha256(from) };
}

/** What "installed" would change. */
async function installedState() {
  const slots = (await installer.slots()).map((s) => ({ name: s.name, state: s.state, bootname: s.bootname }));
  return {
    slotB: await sha256(rig.slotFile('B')), primary: await installer.primary(), booted: await installer.bootSlot(), slots,
    counter: String(await rig.counter()), record: await stat(join(rig.dataDir, UPDATE_RECORD)).then(() => true, () => false),
    releases: await filesUnder(join(rig.dataDir, 'releases')),
  };
}

/** Files (not directories) under `dir`, relative, sorted: what the data dir holds of each release. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
}

async function agentDeps(): Promise<UpdateAgentDeps> {
  const data = await FsStore.open(rig.dataDir);
  const counterVersion = Number(await rig.counter());
  return {
    jobs: client,
    verifyJob: (doc) => verifyJob(doc, { oemJobKey: fx.trust, vehicleId: VEHICLE, runningVersion: 1, counterVersion, compatible: RIG_COMPATIBLE, now: new Date() }),
    download: (job, onProgress) => downloadBundle(job, { fetch: new HttpsBundleFetch({ ca: host.ca.certPem }), data, files: new FsPartialFiles(rig.dataDir), log: silentLogger(), onProgress }),
    verifyBundle: (p) => verifyBundle(p, rig.keyring),
    slot: await rig.slotDeps(installer),
    log: silentLogger(),
  };
}

/** Queues `release` for the vehicle (through `service`, default the backend's) and runs one agent pass. */
async function refusal(release: ReleaseSpec, service: JobService = jobs): Promise<{ code: string; jobId: string }> {
  const campaign = await service.createCampaign({ release, vehicles: [VEHICLE] });
  const jobId = campaign.jobs[0]!.jobId;
  await jobs.notify(VEHICLE);
  await until(() => client.pending?.some((j) => j.jobId === jobId) ?? false, 5_000, `notify of ${jobId}`);
  const before = await installedState();
  const out = await runUpdateAgent(await agentDeps());
  expect(out.status).toBe('rejected');
  const code = out.status === 'rejected' ? out.code : 'NONE';
  expect(await installedState()).toEqual(before);
  const recorded = await jobs.job(jobId);
  expect(recorded).toMatchObject({ status: 'rejected', code });
  return { code, jobId };
}

const releaseOf = (r: RigRelease, bundle: { url: string; size: number; sha256: string }, policySha = bundle.sha256): ReleaseSpec => ({
  version: r.version, compatible: RIG_COMPATIBLE, bundle, policy: { ...r.policy, bundle: { ...r.policy.bundle, sha256: policySha } },
});

describeWith([...RAUC_RIG_PREREQS, tool('mosquitto')])('update jobs refused with nothing installed (real RAUC, mosquitto, HTTPS)', () => {
  beforeAll(async () => {
    rig = await RaucRig.create();
    ({ v1 } = await rig.factory());
    v2 = await rig.release(2);
    fx = await otaFixture();
    host = await bundleHost();
    broker = await startMosquitto();
    jobs = new JobService({ store: await FsStore.open(join(rig.dir, 'backend-jobs')), signer: fx.signer, log: silentLogger() });
    backend = new OemBackend({ connector, url: broker.url, protocolVersion: 5, tls: await broker.identity(OEM_BACKEND_USER), clientId: 'oem-backend-upd', pool: fx.pool, signer: fx.signer, clock, log: silentLogger(), jobs });
    await backend.start();
    link = new OtaLink({ connector, url: broker.url, vehicleId: VEHICLE, protocolVersion: 5, tls: await broker.identity(VEHICLE), clock, log: silentLogger(), reconnectPeriodMs: 200 });
    expect(await link.waitConnected(5_000)).toBe(true);
    client = new MqttJobsClient({ client: link.client, vehicleId: VEHICLE, clock, log: silentLogger(), timeoutMs: 5_000 });
    await client.start();
    installer = await rig.installer();
  }, 240_000);
  afterAll(async () => {
    client?.close();
    await installer?.close().catch(() => undefined);
    await link?.close().catch(() => undefined);
    await backend?.stop();
    await broker?.stop();
    await host?.close();
    await fx?.cleanup();
    await rig?.close();
  });

  it('forged job signature: a job the OEM key did not sign is refused before any download', async () => {
    const good = await serve('v2.raucb', v2.bundle);
    // A forger who holds another key but names the OEM's key id (a job naming another signer is OTA_JOB_UNTRUSTED_SIGNER).
    const forger = new JobService({ store: await FsStore.open(join(rig.dir, 'backend-jobs')), signer: { keyId: fx.signer.keyId, sign: (i) => fx.otherSigner.sign(i) }, log: silentLogger() });
    const requests = host.server.stats.requests;
    expect((await refusal(releaseOf(v2, good), forger)).code).toBe('OTA_JOB_SIGNATURE_INVALID');
    expect(host.server.stats.requests).toBe(requests);
  });

  it('a job for another vehicle, OEM-signed, delivered to this one is refused', async () => {
    const good = await serve('v2.raucb', v2.bundle);
    // The backend's store hands this vehicle the document it signed for veh-upd-2 (a misrouted or replayed job).
    const otherJob = (await jobs.createCampaign({ release: releaseOf(v2, good), vehicles: ['veh-upd-2'] })).jobs[0]!.jobId;
    const stolen = (await jobs.job(otherJob))!.document;
    const campaign = await jobs.createCampaign({ release: releaseOf(v2, good), vehicles: [VEHICLE] });
    const jobId = campaign.jobs[0]!.jobId;
    const path = join(rig.dir, 'backend-jobs', 'jobs', `${jobId}.json`);
    const rec = JSON.parse(await readFile(path, 'utf8')) as { document: string };
    await writeFile(path, JSON.stringify({ ...rec, document: stolen }));
    await jobs.notify(VEHICLE);
    await until(() => client.pending?.some((j) => j.jobId === jobId) ?? false, 5_000, 'notify');
    const before = await installedState();
    const out = await runUpdateAgent(await agentDeps());
    expect(out).toMatchObject({ status: 'rejected', code: 'OTA_JOB_WRONG_VEHICLE' });
    expect(await installedState()).toEqual(before);
    expect(await jobs.job(jobId)).toMatchObject({ status: 'rejected', code: 'OTA_JOB_WRONG_VEHICLE' });
  });

  it('wrong SHA-256: the server hands out other bytes than the job names', async () => {
    const flipped = join(rig.dir, 'v2-flipped.raucb');
    await copyFile(v2.bundle, flipped);
    await execa('sh', ['-c', `printf 'X' | dd of=${flipped} bs=1 seek=1000 conv=notrunc 2>/dev/null`]);
    const served = await serve('v2-swapped.raucb', flipped);
    const job = { ...served, sha256: await sha256(v2.bundle) }; // the job names the real v2
    expect((await refusal(releaseOf(v2, job))).code).toBe('OTA_DOWNLOAD_SHA256_MISMATCH');
  });

  it('tampered bundle: a job naming a modified bundle downloads it, RAUC refuses its signature', async () => {
    const tampered = join(rig.dir, 'v2-tampered.raucb');
    await copyFile(v2.bundle, tampered);
    await execa('sh', ['-c', `printf 'Y' | dd of=${tampered} bs=1 seek=2000 conv=notrunc 2>/dev/null`]);
    expect((await refusal(releaseOf(v2, await serve('v2-tampered.raucb', tampered)))).code).toBe('BUNDLE_INVALID');
  });

  it('bundle signed by another key: RAUC refuses the signer', async () => {
    const key = join(rig.dir, 'foreign.key.pem');
    const cert = join(rig.dir, 'foreign.cert.pem');
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=not the OEM', '-days', '30']);
    const foreign = join(rig.dir, 'v2-foreign.raucb');
    await buildBundle({ images: { rootfs: join(rig.lab.oemDir, 'v2', 'rootfs.ext4') }, version: 2, compatible: RIG_COMPATIBLE, cert, key, out: foreign });
    expect((await refusal(releaseOf(v2, await serve('v2-foreign.raucb', foreign)))).code).toBe('BUNDLE_SIGNER_UNTRUSTED');
  });

  it('oversized download: the server sends more than the job says; cut off before buffering, nothing kept', async () => {
    const big = join(rig.dir, 'v2-big.raucb');
    await writeFile(big, Buffer.concat([await readFile(v2.bundle), Buffer.alloc(256 * 1024, 7)]));
    await copyFile(big, join(host.dir, 'v2-big.raucb'));
    const job = { url: host.url('v2-big.raucb'), size: await size(v2.bundle), sha256: await sha256(v2.bundle) };
    expect((await refusal(releaseOf(v2, job))).code).toBe('OTA_DOWNLOAD_OVERSIZED');
    expect(await stat(join(rig.dataDir, 'releases', 'v2', 'bundle.raucb.part')).then(() => true, () => false)).toBe(false);
  });

  it('downgrade: with the NV counter at 2, an OEM-signed job for v1 is refused', async () => {
    const keys = await KeyService.open(await rig.lab.deps());
    try {
      const rec = JSON.parse(await readFile(join(rig.dataDir, DATA.record), 'utf8')) as { nvCounter: { index: number } };
      await keys.incrementAntiRollbackCounter(rec.nvCounter.index);
    } finally {
      await keys.close();
    }
    expect(await rig.counter()).toBe(2n);
    const requests = host.server.stats.requests;
    expect((await refusal(releaseOf(v1, await serve('v1.raucb', v1.bundle)))).code).toBe('OTA_JOB_DOWNGRADE');
    expect(host.server.stats.requests).toBe(requests);
  });
});
