import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { describeWith } from '../support/prereq.ts';
import { RAUC_RIG_PREREQS, RaucRig, type RigRelease } from '../support/rauc-rig.ts';
import { agentDeps, contractKeySigns, OemUpdateSide, runUpdateAgent, VehicleJobs } from '../support/ota-update.ts';

/**
 * Issue #10 Must show 2, through real `rauc service` (D-Bus), file-backed A/B slots and swtpm: v2 installs and boots,
 * but its health check fails for real — after the boot check approved v2, something in the new release extends
 * PCR 14 (a faulty v2 service), so the TPM refuses the contract key (0x1C4) through the v2 policy. The agent marks
 * slot B bad through RAUC and reboots; the boot loader falls back to A; v1 still signs, the counter is unchanged and
 * the job reports failed with the reason. Second case: v2 never gets to its health check (the runtime never comes
 * up); the boot loader's tries run out, it falls back to A by itself and the agent reports OTA_UPDATE_FELL_BACK.
 */

describeWith(RAUC_RIG_PREREQS)('OTA update fallback through real RAUC (health check fails → mark bad → v1)', () => {
  let rig: RaucRig;
  let oem: OemUpdateSide;
  let contractPub: string;
  let v2: RigRelease;

  const signs = (): Promise<boolean> => contractKeySigns(rig, contractPub);

  /** Agent pass 1 of `jobId`: download, install into B, reboot requested; then the reboot into B. */
  async function installAndBootV2(jobs: VehicleJobs, jobId: string): Promise<void> {
    jobs.add(jobId, await oem.job(jobId, v2));
    const installer = await rig.installer();
    try {
      expect(await runUpdateAgent(await agentDeps(rig, oem, jobs, await rig.slotDeps(installer)))).toMatchObject({ status: 'rebooting', slot: 'B' });
    } finally {
      await installer.close();
    }
    const boot = await rig.powerCycle('orderly');
    expect(boot).toMatchObject({ booted: 'B', check: { version: 2 } });
  }

  beforeAll(async () => {
    rig = await RaucRig.create();
    ({ contractPublicKeyPem: contractPub } = await rig.factory());
    oem = await OemUpdateSide.create();
    v2 = await rig.release(2);
  }, 120_000);
  afterAll(async () => {
    await oem?.close();
    await rig?.close();
  });

  it('health check refused by the TPM → Mark bad → reboot → boot loader takes A → v1 signs, counter 1, job failed with the reason', async () => {
    const jobs = new VehicleJobs();
    await installAndBootV2(jobs, 'job-v2-unhealthy');
    // the faulty v2: PCR 14 moves away from the approved value after the boot check
    await (await rig.lab.driver()).pcrExtend('sha256', 14, new Uint8Array(randomBytes(32)));

    const reboots: string[] = [];
    let installer = await rig.installer();
    const outcome = await runUpdateAgent(await agentDeps(rig, oem, jobs, await rig.slotDeps(installer, { reboot: async (r) => void reboots.push(r) })));
    expect(outcome).toMatchObject({ status: 'rebooting', jobId: 'job-v2-unhealthy', slot: 'B' });
    expect(reboots).toEqual([expect.stringMatching(/update v2 failed: health check: .*TPM_POLICY_NOT_APPROVED|update v2 failed: health check/)]);
    expect((await installer.slots()).find((s) => s.name === 'rootfs.1')).toMatchObject({ bootStatus: 'bad' });
    expect(await installer.primary()).toBe('rootfs.0');
    expect(await rig.counter()).toBe(1n);
    expect(jobs.state('job-v2-unhealthy')?.status).toBe('in_progress'); // not reported before the fallback is real
    await installer.close();

    const back = await rig.powerCycle('orderly');
    expect(back).toMatchObject({ booted: 'A', check: { version: 1 } });
    expect(await rig.bootloader()).toMatchObject({ order: ['A'], left: { B: 0 } });
    installer = await rig.installer();
    const reported = await runUpdateAgent(await agentDeps(rig, oem, jobs, await rig.slotDeps(installer)));
    await installer.close();
    expect(reported).toMatchObject({ status: 'reported', outcome: { status: 'failed', version: 2, slot: 'A', code: 'TPM_POLICY_NOT_APPROVED' } });
    expect(jobs.state('job-v2-unhealthy')).toMatchObject({ status: 'failed', detail: { code: 'TPM_POLICY_NOT_APPROVED', reason: expect.stringMatching(/health check/) } });
    expect(await rig.counter()).toBe(1n);
    expect(await signs()).toBe(true);
  }, 180_000);

  it('v2 never reaches its health check: the boot loader gives up after its tries, boots A, the job fails OTA_UPDATE_FELL_BACK', async () => {
    const jobs = new VehicleJobs();
    await installAndBootV2(jobs, 'job-v2-silent'); // boot 1 of B (tries 3 → 2); the runtime never comes up
    expect((await rig.powerCycle('powerloss')).booted).toBe('B'); // 2 → 1
    expect((await rig.powerCycle('powerloss')).booted).toBe('B'); // 1 → 0
    const back = await rig.powerCycle('powerloss');
    expect(back).toMatchObject({ booted: 'A', check: { version: 1 } });
    expect(back.check).not.toBeInstanceOf(EvccError);
    const installer = await rig.installer();
    const reported = await runUpdateAgent(await agentDeps(rig, oem, jobs, await rig.slotDeps(installer)));
    expect((await installer.slots()).find((s) => s.name === 'rootfs.1')).toMatchObject({ bootStatus: 'bad' });
    await installer.close();
    expect(reported).toMatchObject({ status: 'reported', outcome: { status: 'failed', code: 'OTA_UPDATE_FELL_BACK', slot: 'A' } });
    expect(jobs.state('job-v2-silent')).toMatchObject({ status: 'failed', detail: { code: 'OTA_UPDATE_FELL_BACK' } });
    expect(await rig.counter()).toBe(1n);
    expect(await signs()).toBe(true);
  }, 180_000);
});
