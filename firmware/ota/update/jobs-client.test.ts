import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { JobService } from '../../../deploy/oem-backend/jobs.ts';
import { OemBackend } from '../../../deploy/oem-backend/service.ts';
import { KeyObjectSigner } from '../../../deploy/oem-backend/signer.ts';
import { RootCertificatePool } from '../../../deploy/oem-backend/pool.ts';
import { silentLogger } from '../../../core/logger.ts';
import { VirtualClock } from '../../../hal/clock/virtual.ts';
import { MemoryBroker } from '../../../hal/mqtt/memory.ts';
import { MemoryStore } from '../../../hal/store/memory-store.ts';
import { errorCodeOf, testReleasePolicy } from '../../../test/support/ota-jobs.ts';
import { jobTopics } from './job.ts';
import { MqttJobsClient } from './jobs-client.ts';

/**
 * The vehicle's jobs client against the backend's JobService on the in-memory broker, in virtual time: what the
 * mosquitto test cannot arrange deterministically — a backend that is not there (typed OTA_JOB_BACKEND_SILENT
 * within the budget), a get and a report that the backend misses once (re-published, recorded once).
 */
const VID = 'veh-vt-1';
const SHA = 'cd'.repeat(32);
const flush = async (n = 30) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

async function rig(o: { backend?: boolean } = {}) {
  const bus = new MemoryBroker();
  const clock = new VirtualClock();
  const signer = KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  const jobs = new JobService({ store: new MemoryStore(), signer, log: silentLogger(), now: () => new Date('2026-12-03T12:00:00Z') });
  let backend: OemBackend | undefined;
  if (o.backend !== false) {
    backend = new OemBackend({ connector: bus, url: 'mem://', protocolVersion: 4, clientId: 'oem-backend', shareGroup: false, pool: new RootCertificatePool('(no pool: jobs only)'), signer, clock, log: silentLogger(), jobs });
    void backend.start();
    await flush();
  }
  const vehicle = bus.connect({ url: 'mem://', clientId: `evcc-${VID}`, protocolVersion: 4 });
  const client = new MqttJobsClient({ client: vehicle, vehicleId: VID, clock, log: silentLogger(), timeoutMs: 5_000, notifyWaitMs: 1_000, republishMs: 1_000 });
  return { bus, clock, jobs, client };
}

/** Settles `p` in virtual time, advancing the clock in steps. */
async function settle<T>(clock: VirtualClock, p: Promise<T>, maxMs = 20_000): Promise<T> {
  let done = false;
  const tracked = p.finally(() => (done = true));
  for (let t = 0; !done && t < maxMs; t += 250) {
    await flush();
    if (!done) clock.advance(250);
  }
  return tracked;
}

const release = { version: 2, compatible: 'evcc-rpi4', bundle: { url: 'https://oem.example/bundles/v2.raucb', size: 10, sha256: SHA }, policy: testReleasePolicy(2, SHA) };

describe('jobs client in virtual time', () => {
  it('no backend: next() without a notify is idle; a report is OTA_JOB_BACKEND_SILENT after its budget', async () => {
    const r = await rig({ backend: false });
    expect(await settle(r.clock, r.client.next())).toBeUndefined();
    const t0 = r.clock.now();
    expect(await settle(r.clock, errorCodeOf(r.client.report('j0000000000000000', 'in_progress', { progress: 1 })))).toBe('OTA_JOB_BACKEND_SILENT');
    expect(r.clock.now() - t0).toBeGreaterThanOrEqual(5_000);
    expect(r.clock.now() - t0).toBeLessThan(6_000);
  });

  it('a get and a report the backend misses once are re-published; the report is recorded once', async () => {
    const r = await rig();
    const jobId = (await r.jobs.createCampaign({ release, vehicles: [VID] })).jobs[0]!.jobId;
    await r.jobs.notify(VID);
    // The broker drops the first get and the first update (a lost message), then delivers again.
    const dropped = new Set<string>();
    const topics = jobTopics(VID);
    r.bus.authorize = (_c, action, topic) => {
      if (action !== 'publish' || (topic !== topics.get(jobId) && topic !== topics.update(jobId)) || dropped.has(topic)) return true;
      dropped.add(topic);
      return false;
    };
    const next = await settle(r.clock, r.client.next());
    expect(next?.jobId).toBe(jobId);
    await settle(r.clock, r.client.report(jobId, 'in_progress', { progress: 30 }));
    await settle(r.clock, r.client.report(jobId, 'succeeded'));
    expect(dropped.size).toBe(2);
    const rec = (await r.jobs.job(jobId))!;
    expect(rec.history.map((h) => h.status)).toEqual(['queued', 'in_progress', 'succeeded']);
    // A repeat of the same terminal state is acknowledged (a vehicle that restarted before it saw the answer).
    await settle(r.clock, r.client.report(jobId, 'succeeded'));
    expect((await r.jobs.job(jobId))!.history).toHaveLength(3);
  });

  it('a notify older than the job\'s end does not hand out the finished job again', async () => {
    const r = await rig();
    const jobId = (await r.jobs.createCampaign({ release, vehicles: [VID] })).jobs[0]!.jobId;
    await r.jobs.notify(VID);
    expect((await settle(r.clock, r.client.next()))?.jobId).toBe(jobId);
    // The backend's fresh notify (empty) is held back: the client still has the stale one naming the job.
    r.bus.authorize = (_c, action, topic) => !(action === 'publish' && topic === jobTopics(VID).notify);
    await settle(r.clock, r.client.report(jobId, 'rejected', { code: 'OTA_JOB_DOWNGRADE', reason: 'test' }));
    expect(r.client.pending?.map((j) => j.jobId)).toEqual([jobId]);
    expect(await settle(r.clock, r.client.next())).toBeUndefined();
    expect(r.client.pending).toEqual([]);
  });
});
