import { afterAll, beforeAll, expect, it } from 'vitest';
import { JobService } from '../../deploy/oem-backend/jobs.ts';
import { silentLogger } from '../../core/logger.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { jobTopics, verifyJob } from '../../firmware/ota/update/job.ts';
import { MqttJobsClient } from '../../firmware/ota/update/jobs-client.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttClient } from '../../hal/mqtt/types.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { startOemBackendFixture, type OemBackendFixture } from '../support/oem-backend-fixture.ts';
import { errorCodeOf, testReleasePolicy } from '../support/ota-jobs.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';

/**
 * Update campaigns over a real Debian mosquitto (mutual TLS, per-vehicle ACL): the backend's campaign reaches each
 * vehicle through the retained `jobs/notify` (also when the vehicle connects after the campaign started), the signed
 * document verifies on the vehicle, its state reports come back and are recorded in order (queued → in_progress with
 * progress → succeeded | failed with reason), forbidden transitions are rejected, a vehicle cannot fetch another
 * vehicle's job, and the state survives a backend restart.
 */
const connector = new MqttJsConnector();
const clock = new SystemClock();
const SHA = 'ab'.repeat(32);
let oemFx: OemBackendFixture;
let jobs: JobService;
const links: OtaLink[] = [];
const raws: MqttClient[] = [];

const release = {
  version: 2, compatible: 'evcc-rpi4', bundle: { url: 'https://127.0.0.1:8443/bundles/evcc-v2.raucb', size: 4096, sha256: SHA }, policy: testReleasePolicy(2, SHA),
};

async function vehicle(vehicleId: string) {
  const link = new OtaLink({ connector, url: oemFx.broker.url, vehicleId, protocolVersion: 5, tls: await oemFx.vehicleTls(vehicleId), clock, log: silentLogger(), reconnectPeriodMs: 200 });
  links.push(link);
  expect(await link.waitConnected(5_000)).toBe(true);
  const client = new MqttJobsClient({ client: link.client, vehicleId, clock, log: silentLogger(), timeoutMs: 3_000, notifyWaitMs: 3_000 });
  return { link, client };
}

const checkCtx = (vehicleId: string) => ({ oemJobKey: oemFx.fx.trust, vehicleId, runningVersion: 1, counterVersion: 1, compatible: 'evcc-rpi4', now: new Date() });

const code = errorCodeOf;

describeWith([tool('mosquitto')])('update campaigns over mosquitto (job topics, signed jobs, state reports)', () => {
  beforeAll(async () => {
    oemFx = await startOemBackendFixture({ jobs: true, clientId: 'oem-backend-jobs' });
    jobs = oemFx.jobService!;
  });
  afterAll(async () => {
    for (const l of links) await l.close().catch(() => undefined);
    for (const c of raws) await c.close().catch(() => undefined);
    await oemFx?.close();
  });

  it('a campaign for two vehicles: each gets its own signed job, reports arrive in order, terminal states stick', async () => {
    const campaign = await jobs.createCampaign({ release, vehicles: ['veh-job-a', 'veh-job-b'] });
    expect(campaign.jobs).toHaveLength(2);
    // The vehicles connect after the campaign started: the retained notify tells them.
    const a = await vehicle('veh-job-a');
    const b = await vehicle('veh-job-b');
    const ja = await a.client.next();
    const jb = await b.client.next();
    expect(ja && jb).toBeTruthy();
    const va = verifyJob(ja!.document, checkCtx('veh-job-a'));
    const vb = verifyJob(jb!.document, checkCtx('veh-job-b'));
    expect(va.jobId).toBe(campaign.jobs.find((j) => j.vehicleId === 'veh-job-a')!.jobId);
    expect(vb.vehicleId).toBe('veh-job-b');
    // Each vehicle's document is for it alone.
    expect(await code(() => verifyJob(ja!.document, checkCtx('veh-job-b')))).toBe('OTA_JOB_WRONG_VEHICLE');

    // Reports issued back to back (not awaited one by one) still go out, and are recorded, in call order.
    await Promise.all([...[5, 40, 80, 100].map((p) => a.client.report(va.jobId, 'in_progress', { progress: p })), a.client.report(va.jobId, 'succeeded')]);
    await b.client.report(vb.jobId, 'in_progress', { progress: 10 });
    await b.client.report(vb.jobId, 'failed', { reason: 'health check failed: contract key did not sign', code: 'OTA_UPDATE_FELL_BACK' });

    const ra = (await jobs.job(va.jobId))!;
    expect(ra.history.map((h) => [h.status, h.progress])).toEqual([
      ['queued', undefined], ['in_progress', 5], ['in_progress', 40], ['in_progress', 80], ['in_progress', 100], ['succeeded', undefined],
    ]);
    const rb = (await jobs.job(vb.jobId))!;
    expect(rb).toMatchObject({ status: 'failed', reason: 'health check failed: contract key did not sign', code: 'OTA_UPDATE_FELL_BACK' });

    // A terminal job does not go back; the refusal is typed on the vehicle.
    expect(await code(b.client.report(vb.jobId, 'in_progress', { progress: 1 }))).toBe('OTA_JOB_REPORT_REJECTED');
    expect(await code(a.client.report(va.jobId, 'failed', { reason: 'late' }))).toBe('OTA_JOB_REPORT_REJECTED');
    expect((await jobs.job(va.jobId))!.status).toBe('succeeded');
    // Nothing pending any more: the retained notify was cleared.
    let pending = await vehicleNext('veh-job-a');
    for (let i = 0; i < 3 && pending !== undefined; i++) pending = await vehicleNext('veh-job-a');
    expect(pending).toBeUndefined();

    // The state survives a backend restart (persisted), as `campaign show` reads it.
    const reread = new JobService({ store: await FsStore.open(oemFx.jobsDir!), signer: oemFx.fx.signer, log: silentLogger() });
    expect((await reread.job(va.jobId))!.status).toBe('succeeded');
    expect((await reread.jobsOf('veh-job-b')).map((j) => j.status)).toEqual(['failed']);
  });

  it('a vehicle cannot fetch or report another vehicle\'s job', async () => {
    const campaign = await jobs.createCampaign({ release, vehicles: ['veh-job-c'] });
    const jobC = campaign.jobs[0]!.jobId;
    const intruder = await vehicle('veh-job-d');
    // Through its own prefix (the ACL allows nothing else): the backend refuses, the vehicle gets no document.
    const sneaky = new MqttJobsClient({ client: intruder.link.client, vehicleId: 'veh-job-d', clock, log: silentLogger(), timeoutMs: 1_500, notifyWaitMs: 200 });
    expect(await code(sneaky.report(jobC, 'succeeded'))).toBe('OTA_JOB_REPORT_REJECTED');
    // Straight into the other vehicle's topic: the broker's ACL drops it (MQTT 5 PUBACK 135 or silently).
    const raw = connector.connect({ url: oemFx.broker.url, clientId: 'raw-veh-job-d', protocolVersion: 5, tls: await oemFx.vehicleTls('veh-job-d'), reconnectPeriodMs: 200 });
    raws.push(raw);
    await until(() => raw.status === 'connected');
    await raw.publish(jobTopics('veh-job-c').update(jobC), JSON.stringify({ v: 1, type: 'job.update', token: 'aaaa', status: 'succeeded' }), { qos: 1 }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    expect((await jobs.job(jobC))!.status).toBe('queued');
    // Its rightful vehicle still gets it.
    const c = await vehicle('veh-job-c');
    expect((await c.client.next())?.jobId).toBe(jobC);
  });

  it('a campaign whose policy is for another release is refused at creation', async () => {
    expect(await code(jobs.createCampaign({ release: { ...release, policy: testReleasePolicy(3, SHA) }, vehicles: ['veh-job-e'] }))).toBe('OTA_JOB_POLICY_MISMATCH');
    expect(await code(jobs.createCampaign({ release, vehicles: ['bad/id'] }))).toBe('CONFIG_INVALID');
  });
});

/** What a freshly connected vehicle would be told is pending. */
async function vehicleNext(vehicleId: string): Promise<unknown> {
  const v = await vehicle(vehicleId);
  const c = new MqttJobsClient({ client: v.link.client, vehicleId, clock, log: silentLogger(), timeoutMs: 2_000, notifyWaitMs: 1_500 });
  try {
    return await c.next();
  } finally {
    c.close();
    await v.link.close();
  }
}
