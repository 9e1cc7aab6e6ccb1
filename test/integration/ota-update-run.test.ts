import { spawn, type ChildProcess } from 'node:child_process';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { JobService } from '../../deploy/oem-backend/jobs.ts';
import { DATA, parseJson, ProvisioningRecord } from '../../firmware/keys/layout.ts';
import { backendExport } from '../../firmware/keys/provision.ts';
import { SECURITY_LOG_PATH } from '../../firmware/log/security-log.ts';
import { releaseBundle } from '../../firmware/ota/update/after-boot.ts';
import type { MosquittoBroker } from '../support/mosquitto.ts';
import { startOemBackendFixture, type OemBackendFixture } from '../support/oem-backend-fixture.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { RAUC_RIG_PREREQS, RaucRig, type RigRelease } from '../support/rauc-rig.ts';
import { contractKeySigns, OemUpdateSide, VEHICLE_ID } from '../support/ota-update.ts';
import type { OtaFixture } from './ota-fixtures.ts';
import { PtyPilotBoard } from './pilot-pty.ts';

/**
 * Issue #10: `evcc run` itself updates the vehicle — no test-side agent. The service (config `update.enabled`) runs
 * the agent against the real parts: the OEM backend's campaign over mosquitto (mTLS + ACL), the HTTPS bundle
 * server, `rauc service` on a private D-Bus system bus with file-backed A/B slots, swtpm, and its reboot request
 * (the file evcc-reboot.path acts on; the rig's power cycle plays that unit).
 * A plugged-in vehicle holds the update back (no pass while the cable is in); after unplug the running service
 * downloads, installs through RAUC and asks for the reboot; the rig reboots (TPM reset, boot loader, initramfs
 * measurement, boot check), and the next `evcc run` proves v2 can sign with the contract key, marks B good, raises
 * the counter 1 → 2 and reports the job succeeded. Every step is in the vehicle's signed security log.
 */
const REPO = process.cwd();

/** Polls an async condition (log file, backend record) until it holds. */
async function until(cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  for (const end = Date.now() + ms; !(await cond());) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface RunningService {
  child: ChildProcess;
  records(): Promise<Record<string, unknown>[]>;
  stop(): Promise<number | null>;
}

describeWith([...RAUC_RIG_PREREQS, tool('mosquitto')])('evcc run updates the vehicle v1 → v2 through real RAUC (issue #10)', () => {
  let rig: RaucRig;
  let oem: OemUpdateSide;
  let oemFx: OemBackendFixture;
  let fx: OtaFixture;
  let broker: MosquittoBroker;
  let dir: string;
  let jobService: JobService;
  let pilot: PtyPilotBoard;
  let contractPub: string;
  let v2: RigRelease;
  let config: string;
  /** The runtime's default reboot: its request in the run dir, for evcc-reboot.path (deploy/systemd). */
  const rebootMarker = () => join(rig.runDir, 'reboot-request');

  function startService(name: string): RunningService {
    const logFile = join(dir, `${name}.jsonl`);
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'bin', 'evcc.ts'), '--config', config, '--log-level', 'debug', '--log-json', logFile, 'run'],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...rig.lab.env, NODE_OPTIONS: '', TSX_DISABLE_CACHE: '1' } });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return {
      child,
      async records() {
        const text = await readFile(logFile, 'utf8').catch(() => '');
        if (child.exitCode !== null && !text.includes('service stopped')) throw new Error(`evcc run exited ${child.exitCode}:\n${out.slice(-4000)}`);
        return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      },
      async stop() {
        if (child.exitCode === null) child.kill('SIGTERM');
        return exited;
      },
    };
  }
  const hasCp = async (s: RunningService, cp: string) => (await s.records()).some((r) => r.cp === cp);
  /** The OEM backend holds the vehicle's security log through its last entry, a checkpoint (the stop's). */
  const backendHoldsWholeLog = async () => {
    const entries = (await readFile(join(rig.dataDir, SECURITY_LOG_PATH), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { seq: number; kind: string; hash: string });
    expect(entries.at(-1)!.kind).toBe('log.checkpoint');
    expect(await oemFx.securityLogs!.collector.head(VEHICLE_ID)).toMatchObject({ seq: entries.at(-1)!.seq, hash: entries.at(-1)!.hash });
  };

  beforeAll(async () => {
    rig = await RaucRig.create();
    ({ contractPublicKeyPem: contractPub } = await rig.factory());
    v2 = await rig.release(2, { imageBytes: 1024 * 1024 });
    oem = await OemUpdateSide.create();
    oemFx = await startOemBackendFixture({ jobs: true, securityLogs: true, clientId: 'oem-backend-run-update' });
    ({ broker, fx } = oemFx);
    jobService = oemFx.jobService!;
    dir = await mkdtemp(join(tmpdir(), 'evcc-run-update-'));

    // Production at the OEM: the vehicle's security-log key from its provisioning export.
    const record = parseJson(ProvisioningRecord, await readFile(join(rig.dataDir, DATA.record)), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
    const logKey = backendExport(record)['security-log.pub.pem'];
    expect(typeof logKey).toBe('string');
    await oemFx.securityLogs!.collector.registerVehicle(VEHICLE_ID, logKey as string);

    // Production steps on the vehicle: the OEM backend key with its TPM-derived tag; the link credential files.
    await writeFile(join(dir, 'oem-backend-key.pem'), fx.signer.publicKeyPem);
    const installed = await rig.lab.cli(['pki', 'backend-key', 'install', join(dir, 'oem-backend-key.pem')], { tpm: true });
    expect(installed.exitCode, installed.stderr).toBe(0);
    const id = await broker.identity(VEHICLE_ID);
    await writeFile(join(dir, 'link-ca.pem'), String(id.ca));
    await writeFile(join(dir, 'vehicle.pem'), String(id.cert));
    await writeFile(join(dir, 'vehicle.key'), String(id.key), { mode: 0o600 });
    await writeFile(join(dir, 'bundle-ca.pem'), oem.host.ca.certPem);
    pilot = new PtyPilotBoard();
    config = join(dir, 'evcc.json');
    await writeFile(config, JSON.stringify({
      vehicleId: VEHICLE_ID, dataDir: rig.dataDir, runDir: rig.runDir, plcInterface: 'lo',
      tpm: { tcti: rig.lab.tcti, keyring: rig.keyring, bundlePath: join(rig.dataDir, releaseBundle(1)) },
      ota: { brokerUrl: broker.url, protocolVersion: 5, caFile: join(dir, 'link-ca.pem'), certFile: join(dir, 'vehicle.pem'), keyFile: join(dir, 'vehicle.key'),
        reconnectPeriodMs: 200, proactiveSync: { enabled: false } },
      pilot: { trigger: 'pilot', serialPath: pilot.path, baudRate: 115200 },
      update: { enabled: true, raucBus: rig.busAddress, bundleCaFile: join(dir, 'bundle-ca.pem'), retryDelayMs: 1_000 },
    }));
  }, 180_000);
  afterAll(async () => {
    pilot?.close();
    await oemFx?.close();
    await oem?.close();
    await rig?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('campaign held while plugged in → after unplug: download, RAUC install, reboot request → reboot → health, Mark good, counter 1 → 2, succeeded', async () => {
    expect(await rig.counter()).toBe(1n);
    const keyIdBefore = await readFile(join(rig.dataDir, DATA.activeContractKey), 'utf8');
    let service = startService('boot1');
    try {
      await until(() => hasCp(service, 'OTA-UPDATES-ON'), 60_000, 'update service on');
      await until(() => hasCp(service, 'OTA-AGENT-IDLE'), 30_000, 'first pass: no job yet');

      // Plugged in: the cable counts as charging until unplug, whatever the session does on this bench.
      pilot.plugIn();
      await until(async () => (await service.records()).some((r) => typeof r.msg === 'string' && /high-level communication requested/.test(r.msg)), 20_000, 'plug-in seen');
      const campaign = await jobService.createCampaign({ release: await oem.publish(v2), vehicles: [VEHICLE_ID] });
      const jobId = campaign.jobs[0]!.jobId;
      await until(() => hasCp(service, 'OTA-UPDATES-WAIT-SESSION'), 20_000, 'the notify reached the vehicle, the pass waits for the session');
      await new Promise((r) => setTimeout(r, 2_000));
      expect(oem.host.relayStats.connections).toBe(0); // nothing downloaded while plugged in
      expect((await jobService.job(jobId))!.status).toBe('queued');

      pilot.unplug();
      await until(() => existsSync(rebootMarker()), 120_000, 'the reboot was requested');
      const recs = await service.records();
      const cps = recs.map((r) => r.cp).filter(Boolean);
      for (const cp of ['OTA-AGENT-JOB-VERIFIED', 'OTA-AGENT-DOWNLOADED', 'OTA-AGENT-BUNDLE-VERIFIED', 'OTA-UPDATE-INSTALL', 'OTA-UPDATE-REBOOT', 'SYSTEM-REBOOT']) expect(cps).toContain(cp);
      expect(cps.indexOf('OTA-UPDATE-REBOOT')).toBeLessThan(cps.indexOf('SYSTEM-REBOOT'));
      expect(await rig.counter()).toBe(1n); // nothing irreversible before v2 booted and proved itself
      await until(async () => ((await jobService.job(jobId))!.progress ?? 0) > 50, 10_000, 'progress reported');
      expect((await jobService.job(jobId))!.status).toBe('in_progress');
      expect(await service.stop()).toBe(0); // systemctl reboot stops the service orderly
      await backendHoldsWholeLog(); // the update steps and the stop checkpoint reached the OEM before the reboot

      // The reboot: TPM reset, the boot loader takes B, the initramfs measures it, evcc boot approves v2.
      const boot = await rig.powerCycle('orderly');
      expect(boot).toMatchObject({ booted: 'B', check: { version: 2 } });

      service = startService('boot2');
      await until(async () => (await jobService.job(jobId))!.status === 'succeeded', 90_000, 'job succeeded');
      // The agent logs OTA-AGENT-REPORTED once the broker acknowledged the report, which may be just after the
      // backend already recorded it.
      await until(async () => (await service.records()).some((r) => r.cp === 'OTA-AGENT-REPORTED'), 10_000, 'report logged');
      const after = (await service.records()).map((r) => r.cp);
      expect(after).toEqual(expect.arrayContaining(['OTA-UPDATE-HEALTHY', 'OTA-UPDATE-COMMITTED', 'OTA-AGENT-REPORTED']));
      expect(await rig.counter()).toBe(2n);
      expect((await rig.bootloader()).left.B).toBe(3); // Mark good gave the tries back
      expect((await jobService.job(jobId))!.history.map((h) => h.status)).toEqual(expect.arrayContaining(['queued', 'in_progress', 'succeeded']));
      expect(await service.stop()).toBe(0);
      await backendHoldsWholeLog();

      // What an operator sees afterwards (read-only): no pending update, B booted and good with v2, counter 2.
      const st = await execa(process.execPath, ['--import', 'tsx', join(REPO, 'bin', 'evcc.ts'), '--config', config, '--log-level', 'warn', 'ota', 'update-status'],
        { cwd: REPO, reject: false, env: { ...process.env, ...rig.lab.env, NODE_OPTIONS: '' } });
      expect(st.exitCode, st.stderr).toBe(0);
      const status = JSON.parse(st.stdout) as { record: unknown; counter: string; rauc: { booted: string; primary: string; compatible: string; slots: { bootname?: string; bootStatus?: string; bundleVersion?: string }[] } };
      expect(status).toMatchObject({ record: null, counter: '2', rauc: { booted: 'B', primary: 'rootfs.1', compatible: 'evcc-bench' } });
      expect(status.rauc.slots.find((x) => x.bootname === 'B')).toMatchObject({ bootStatus: 'good', bundleVersion: '2' });
    } finally {
      await service.stop();
    }

    // The same contract key, usable under v2, never re-imported.
    expect(await readFile(join(rig.dataDir, DATA.activeContractKey), 'utf8')).toBe(keyIdBefore);
    expect(await contractKeySigns(rig, contractPub)).toBe(true);
    // The signed security log has every step, in order.
    const steps = (await readFile(join(rig.dataDir, SECURITY_LOG_PATH), 'utf8')).split('\n').filter(Boolean)
      .map((l) => JSON.parse(l) as { kind: string; detail: { step?: string } }).filter((e) => e.kind === 'ota.update-step').map((e) => e.detail.step);
    expect(steps).toEqual(['job-verified', 'downloaded', 'bundle-verified', 'installed', 'succeeded']);
  }, 420_000);

  it('v2 → v3 whose slot is tampered after the install: the degraded runtime marks it bad and reboots, v2 runs again, job failed, counter unchanged', async () => {
    expect(await rig.counter()).toBe(2n);
    await rm(rebootMarker(), { force: true });
    const v3 = await rig.release(3, { imageBytes: 512 * 1024 });
    let service = startService('boot3');
    try {
      await until(() => hasCp(service, 'OTA-AGENT-IDLE'), 60_000, 'v2 runs, no job');
      const jobId = (await jobService.createCampaign({ release: await oem.publish(v3), vehicles: [VEHICLE_ID] })).jobs[0]!.jobId;
      await until(() => existsSync(rebootMarker()), 120_000, 'the reboot was requested after the v3 install');
      expect(await service.stop()).toBe(0);
      // Someone with root writes into the new slot before it boots: the measurement no longer matches the signed image.
      const slot = await open(rig.slotFile('A'), 'r+');
      await slot.write(Buffer.from('tampered'), 0, 8, 600 * 1024);
      await slot.close();
      await rm(rebootMarker(), { force: true });
      const bad = await rig.powerCycle('orderly');
      expect(bad.booted).toBe('A');
      expect(bad.check).toMatchObject({ code: expect.stringMatching(/^BOOT_/) });

      service = startService('boot4-degraded');
      await until(() => existsSync(rebootMarker()), 60_000, 'the degraded runtime asked for the fallback reboot');
      const recs = await service.records();
      expect(recs.map((r) => r.cp)).toContain('OTA-UPDATE-HEALTH-FAILED');
      const rauc = await rig.installer();
      expect((await rauc.slots()).find((x) => x.bootname === 'A')).toMatchObject({ bootStatus: 'bad' });
      await rauc.close();
      expect(await service.stop()).toBe(0);
      expect(await rig.counter()).toBe(2n);

      const back = await rig.powerCycle('orderly');
      expect(back).toMatchObject({ booted: 'B', check: { version: 2 } });
      service = startService('boot5');
      await until(async () => (await jobService.job(jobId))!.status === 'failed', 60_000, 'job failed');
      expect((await jobService.job(jobId))!.reason).toMatch(/slot B runs again/);
      expect(await service.stop()).toBe(0);
    } finally {
      await service.stop();
    }
    expect(await rig.counter()).toBe(2n);
    expect(await contractKeySigns(rig, contractPub)).toBe(true);
  }, 420_000);
});
