import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { DATA } from '../../firmware/keys/layout.ts';
import type { InstallProgress } from '../../hal/rauc/types.ts';
import { silentLogger } from '../../core/logger.ts';
import type { JobService } from '../../deploy/oem-backend/jobs.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { MqttJobsClient } from '../../firmware/ota/update/jobs-client.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { startOemBackendFixture, type OemBackendFixture } from '../support/oem-backend-fixture.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { RAUC_RIG_PREREQS, RaucRig, type RigRelease } from '../support/rauc-rig.ts';
import { agentDeps, contractKeySigns, OemUpdateSide, runUpdateAgent, VEHICLE_ID } from '../support/ota-update.ts';

/**
 * Issue #10 Must show 1: v1 → v2 through real `rauc service` on a private D-Bus system bus with file-backed A/B ext4
 * slots and swtpm. The OEM backend (JobService in OemBackend) runs a campaign over real mosquitto (mTLS + ACL); the
 * vehicle's MqttJobsClient on its OtaLink fetches the job and reports. The agent verifies the OEM-signed job, downloads the bundle from the backend's HTTPS bundle
 * server through a relay that breaks the connection once (resumed by Range), RAUC checks the bundle signature and
 * installs it into slot B over D-Bus (Progress, Completed), the reboot hook is called; the simulated reboot resets the
 * TPM, the boot loader boots B, the initramfs hook measures it, the boot check approves v2 from its bundle in the
 * data dir; the next agent pass proves the contract key signs through the v2 policy, marks B good, raises the
 * counter 1 → 2 and reports the job succeeded. The contract key signs before and after, never re-imported.
 */

/** Reports travel over MQTT: the backend records them a moment later. */
async function backendRecorded(cond: () => Promise<boolean>, ms = 5_000): Promise<void> {
  for (const end = Date.now() + ms; !(await cond());) {
    if (Date.now() > end) throw new Error('the backend did not record the report');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const connector = new MqttJsConnector();
const clock = new SystemClock();

describeWith([...RAUC_RIG_PREREQS, tool('mosquitto')])('OTA update v1 → v2 through real RAUC (D-Bus, file-backed A/B slots, swtpm)', () => {
  let rig: RaucRig;
  let oem: OemUpdateSide;
  let contractPub: string;
  let v2: RigRelease;
  let oemFx: OemBackendFixture;
  let jobService: JobService;
  const links: OtaLink[] = [];

  /** The vehicle's link to the backend and its job client (a new one per boot, as the runtime connects). */
  async function vehicleJobs(): Promise<MqttJobsClient> {
    const link = new OtaLink({ connector, url: oemFx.broker.url, vehicleId: VEHICLE_ID, protocolVersion: 5, tls: await oemFx.vehicleTls(VEHICLE_ID), clock, log: silentLogger(), reconnectPeriodMs: 200 });
    links.push(link);
    expect(await link.waitConnected(5_000)).toBe(true);
    return new MqttJobsClient({ client: link.client, vehicleId: VEHICLE_ID, clock, log: silentLogger(), timeoutMs: 5_000, notifyWaitMs: 3_000 });
  }

  const signs = (): Promise<boolean> => contractKeySigns(rig, contractPub);

  beforeAll(async () => {
    rig = await RaucRig.create();
    ({ contractPublicKeyPem: contractPub } = await rig.factory());
    oem = await OemUpdateSide.create();
    v2 = await rig.release(2, { imageBytes: 1024 * 1024 });
    oemFx = await startOemBackendFixture({ jobs: true, clientId: 'oem-backend-rauc' });
    jobService = oemFx.jobService!;
  }, 120_000);
  afterAll(async () => {
    for (const l of links) await l.close().catch(() => undefined);
    await oemFx?.close();
    await oem?.close();
    await rig?.close();
  });

  it('job → download (broken once, resumed) → rauc info → InstallBundle with progress → reboot → measured boot of v2 → health → mark good → counter 1 → 2 → succeeded', async () => {
    expect(rig.booted).toBe('A');
    expect(await rig.counter()).toBe(1n);
    expect(await signs()).toBe(true);
    const keyIdBefore = await readFile(join(rig.dataDir, DATA.activeContractKey), 'utf8');

    const campaign = await jobService.createCampaign({ release: await oem.publish(v2), vehicles: [VEHICLE_ID] });
    const jobId = campaign.jobs[0]!.jobId;
    const state = async () => (await jobService.job(jobId))!;
    let jobs = await vehicleJobs();
    const bundleSize = (await stat(v2.bundle)).size;
    oem.host.cutNext(Math.floor(bundleSize / 3)); // the mobile link breaks a third of the way in

    const rebootReasons: string[] = [];
    const raucProgress: InstallProgress[] = [];
    let installer = await rig.installer();
    let slot = await rig.slotDeps(installer, { reboot: async (reason) => void rebootReasons.push(reason) });
    const deps = await agentDeps(rig, oem, jobs, slot, { trust: oemFx.fx.trust });
    const wrapped = { ...deps, slot: { ...slot, installer: { ...installer, bootSlot: () => installer.bootSlot(), primary: () => installer.primary(), slots: () => installer.slots(),
      operation: () => installer.operation(), lastError: () => installer.lastError(), compatible: () => installer.compatible(), mark: installer.mark.bind(installer), close: () => installer.close(),
      install: (p: string, o?: Parameters<typeof installer.install>[1]) => installer.install(p, { ...o, onProgress: (pr) => { raucProgress.push(pr); o?.onProgress?.(pr); } }) } } };

    const first = await runUpdateAgent(wrapped);
    expect(first).toEqual({ status: 'rebooting', jobId, version: 2, slot: 'B' });
    expect(oem.host.relayStats.cut).toBe(1); // the break happened, and the download resumed past it
    expect(oem.host.relayStats.connections).toBeGreaterThanOrEqual(2);
    expect(rebootReasons).toHaveLength(1);
    // RAUC's own progress over D-Bus, in order, up to 100 %
    expect(raucProgress.length).toBeGreaterThan(3);
    expect(raucProgress.map((p) => p.percentage)).toEqual([...raucProgress.map((p) => p.percentage)].sort((a, b) => a - b));
    expect(raucProgress.at(-1)).toMatchObject({ percentage: 100 });
    expect(raucProgress.some((p) => /Copying image to rootfs\.1/.test(p.message))).toBe(true);
    expect(await installer.primary()).toBe('rootfs.1');
    const b = (await installer.slots()).find((s) => s.name === 'rootfs.1');
    expect(b).toMatchObject({ bundleVersion: '2', sha256: v2.policy.rootfs.sha256 });
    // the counter is untouched before the new release booted and proved itself
    expect(await rig.counter()).toBe(1n);
    await backendRecorded(async () => ((await state()).progress ?? 0) > 50);
    expect(await state()).toMatchObject({ status: 'in_progress' });
    await installer.close();

    // the reboot: TPM reset, the boot loader takes B, the initramfs hook measures it, the boot check approves v2
    const boot = await rig.powerCycle('orderly');
    expect(boot.booted).toBe('B');
    expect(boot.check).not.toBeInstanceOf(EvccError);
    expect(boot.check).toMatchObject({ version: 2, rootfsSha256: v2.policy.rootfs.sha256, bundle: join(rig.dataDir, 'releases/v2/bundle.raucb') });
    expect(await rig.bootloader()).toMatchObject({ order: ['B', 'A'], left: { B: 2 } }); // a try taken, not yet good

    installer = await rig.installer();
    slot = await rig.slotDeps(installer);
    jobs = await vehicleJobs(); // the runtime of the new boot connects again
    const second = await runUpdateAgent(await agentDeps(rig, oem, jobs, slot, { trust: oemFx.fx.trust }));
    expect(second).toMatchObject({ status: 'reported', outcome: { status: 'succeeded', version: 2, slot: 'B', counter: { from: '1', to: '2' } } });
    expect(await rig.counter()).toBe(2n);
    await backendRecorded(async () => (await state()).status === 'succeeded');
    expect((await state()).history.map((h) => h.status)).toEqual(expect.arrayContaining(['queued', 'in_progress', 'succeeded']));
    expect((await installer.slots()).find((s) => s.name === 'rootfs.1')).toMatchObject({ state: 'booted', bootStatus: 'good' });
    expect((await rig.bootloader()).left.B).toBe(3); // Mark good gave the tries back
    await installer.close();

    // the contract key: the same one, usable through the v2 policy, never re-imported
    expect(await readFile(join(rig.dataDir, DATA.activeContractKey), 'utf8')).toBe(keyIdBefore);
    expect(await signs()).toBe(true);
    // and after another reboot into v2, too (the ticket is cached, the counter stays)
    const again = await rig.powerCycle('orderly');
    expect(again).toMatchObject({ booted: 'B', check: { version: 2 } });
    expect(await signs()).toBe(true);
    expect(await rig.counter()).toBe(2n);
  }, 180_000);
});
