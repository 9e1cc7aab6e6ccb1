import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { jobTopics } from '../../firmware/ota/update/job.ts';
import { MemoryBroker } from '../../hal/mqtt/memory.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { testReleasePolicy } from '../../test/support/ota-jobs.ts';
import { until } from '../../test/support/until.ts';
import { JobService } from './jobs.ts';
import { RecordLocks } from './record-lock.ts';
import { KeyObjectSigner } from './signer.ts';

/**
 * Two JobService instances on one store directory, as two `evcc oem-backend` processes behind one $share group:
 * each its own FsStore object and in-process queue, so only the record lock keeps their read-modify-writes apart.
 */
const VID = 'veh-lock-1';
const SHA = 'cd'.repeat(32);
const release = { version: 2, compatible: 'evcc-rpi4', bundle: { url: 'https://oem.example/v2.raucb', size: 10, sha256: SHA }, policy: testReleasePolicy(2, SHA) };
const signer = KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function rig(o: { inProcessOnly?: boolean } = {}) {
  dir = await mkdtemp(join(tmpdir(), 'evcc-jobs-lock-'));
  const broker = new MemoryBroker();
  const make = async (name: string) => {
    const store = await FsStore.open(dir!);
    const jobs = new JobService({ store, signer, log: silentLogger(), ...(o.inProcessOnly ? { locks: new RecordLocks(undefined) } : {}) });
    await jobs.attach(broker.connect({ url: 'mqtt://memory', clientId: name, protocolVersion: 5 }));
    return jobs;
  };
  const [a, b] = [await make('backend-a'), await make('backend-b')];
  const answers: { type: string; token: string; status?: string }[] = [];
  const spy = broker.connect({ url: 'mqtt://memory', clientId: 'spy', protocolVersion: 5 });
  spy.onMessage((m) => answers.push(JSON.parse(Buffer.from(m.payload).toString('utf8'))));
  await spy.subscribe([`evcc/v1/${VID}/jobs/+/update/+`], 1);
  /** Hands a report to one instance, as the broker hands a vehicle message to one member of the group. */
  const report = (via: JobService, jobId: string, token: string, status: string, progress?: number) =>
    via.onMessage(VID, `jobs/${jobId}/update`, { topic: jobTopics(VID).update(jobId), retain: false, payload: new TextEncoder().encode(JSON.stringify({ v: 1, type: 'job.update', token, status, ...(progress !== undefined ? { progress } : {}) })) });
  return { a, b, answers, report };
}

describe('JobService instances sharing one store directory', () => {
  it('concurrent reports of one job through both instances: every transition recorded, one terminal state', async () => {
    const { a, b, answers, report } = await rig();
    const jobId = (await a.createCampaign({ release, vehicles: [VID] })).jobs[0]!.jobId;
    for (let p = 1; p <= 40; p++) report(p % 2 ? a : b, jobId, `tok-${p}`, 'in_progress', p);
    await until(() => answers.length === 40, 20_000, 'all 40 reports answered');
    expect(answers.every((x) => x.type === 'job.update.accepted')).toBe(true);
    const job = (await b.job(jobId))!;
    expect(job.history).toHaveLength(41);
    expect(job.history.slice(1).map((h) => h.progress).sort((x, y) => x! - y!)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));

    // two contradicting final reports at once, one per instance: exactly one wins, the other is rejected
    report(a, jobId, 'tok-ok', 'succeeded');
    report(b, jobId, 'tok-bad', 'failed');
    await until(() => answers.length === 42, 20_000, 'both final reports answered');
    const finals = answers.slice(40);
    const accepted = finals.filter((x) => x.type === 'job.update.accepted');
    expect(accepted).toHaveLength(1);
    const after = (await a.job(jobId))!;
    expect(after.status).toBe(accepted[0]!.token === 'tok-ok' ? 'succeeded' : 'failed');
    expect(after.history.filter((h) => h.status === 'succeeded' || h.status === 'failed')).toHaveLength(1);
    expect(after.history).toHaveLength(42);
  });

  it('campaigns created at once through both instances for one vehicle: its record lists both jobs', async () => {
    const { a, b } = await rig();
    const [ca, cb] = await Promise.all([a.createCampaign({ release, vehicles: [VID, 'veh-lock-2'] }), b.createCampaign({ release, vehicles: [VID, 'veh-lock-2'] })]);
    for (const v of [VID, 'veh-lock-2']) {
      expect(new Set((await a.jobsOf(v)).map((j) => j.jobId))).toEqual(new Set([ca, cb].map((c) => c.jobs.find((j) => j.vehicleId === v)!.jobId)));
    }
  });

  it('the control: with in-process locks only, the same concurrent reports lose transitions', async () => {
    const { a, b, answers, report } = await rig({ inProcessOnly: true });
    const jobId = (await a.createCampaign({ release, vehicles: [VID] })).jobs[0]!.jobId;
    for (let p = 1; p <= 40; p++) report(p % 2 ? a : b, jobId, `tok-${p}`, 'in_progress', p);
    await until(() => answers.length === 40, 20_000, 'all 40 reports answered');
    expect((await a.job(jobId))!.history.length).toBeLessThan(41);
  });
});
