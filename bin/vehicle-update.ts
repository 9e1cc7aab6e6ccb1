import { readFile } from 'node:fs/promises';
import { EvccError } from '../core/errors.ts';
import { commitRelease } from '../boot/commit.ts';
import { bootState, installReleasePolicy } from '../boot/measured-boot.ts';
import { DATA, parseJson, ProvisioningRecord } from '../firmware/keys/layout.ts';
import { TpmSettings } from '../firmware/keys/settings.ts';
import { runUpdateAgent, type UpdateAgentDeps } from '../firmware/ota/update/agent.ts';
import { downloadBundle } from '../firmware/ota/update/download.ts';
import { verifyJob } from '../firmware/ota/update/job.ts';
import { MqttJobsClient } from '../firmware/ota/update/jobs-client.ts';
import { ChargingGate, rebootWhenIdle, UpdateService } from '../firmware/ota/update/service.ts';
import type { UpdateSettings } from '../firmware/ota/update/settings.ts';
import { parseSettings } from '../firmware/settings.ts';
import { HttpsBundleFetch } from '../hal/http/https-fetch.ts';
import { FsPartialFiles } from '../hal/http/partial-file.ts';
import { verifyBundle } from '../hal/rauc/bundle.ts';
import { RaucDbusInstaller } from '../hal/rauc/dbus.ts';
import { FsStore } from '../hal/store/fs-store.ts';
import { CommandReboot, RequestFileReboot } from '../hal/systemd/reboot.ts';
import type { VehicleStack } from './commands/charge.ts';
import type { Runtime } from './runtime.ts';
import { pendingUpdate, type UpdateRecord } from '../firmware/ota/update/after-boot.ts';
import { UpdateSettings as UpdateSettingsSchema } from '../firmware/ota/update/settings.ts';
import type { SlotStatus } from '../hal/rauc/types.ts';

/**
 * Composition of the OTA update service in `evcc run` (config `update.enabled`): the agent (firmware/ota/update)
 * bound to this vehicle's parts — the OEM link's job topics, the OEM backend key the vehicle trusts (TPM-tagged) for
 * the job signatures, the HTTPS bundle download into the data dir, `rauc info` against RAUC's keyring, RAUC over
 * D-Bus, the key service for the health check and the counter, the security log, the reboot (request file for
 * evcc-reboot.path, or update.rebootCommand). Returns the
 * service (its gate tells it when sessions charge) or undefined when updates cannot run, said in the log.
 */
export interface VehicleUpdates {
  service: UpdateService;
  gate: ChargingGate;
  close(): Promise<void>;
}

export async function startVehicleUpdates(stack: VehicleStack, settings: UpdateSettings, o: { gate?: ChargingGate } = {}): Promise<VehicleUpdates | undefined> {
  const { rt } = stack;
  const log = rt.log('OTA');
  const off = (why: string, code: string): undefined => {
    log.error({ cp: 'OTA-UPDATES-OFF', code }, `OTA updates off: ${why}`);
    return undefined;
  };
  if (!stack.ota) return off('no OEM link (ota.enabled, link credentials)', 'CONFIG_INVALID');
  // Without the key service (degraded boot) the service still finishes an update the last boot began: a release
  // that did not pass the boot check is marked bad and the boot loader falls back (afterBoot needs only RAUC).
  const withTpm = () => {
    if (!stack.tpm) throw new EvccError(stack.keyReadiness.ready ? 'KEYS_DISABLED' : stack.keyReadiness.code, `the TPM key service is not open in this state: ${stack.keyReadiness.ready ? 'no TPM' : stack.keyReadiness.message}`);
    return stack.tpm;
  };
  const ota = stack.ota;
  const trust = stack.backendTrust;
  const requireTrust = () => {
    if (!trust) throw new EvccError('OTA_BACKEND_KEY_MISSING', 'no verified OEM backend key: update jobs cannot be verified');
    return trust;
  };
  const caFile = settings.bundleCaFile ?? ota.settings.caFile;
  if (!caFile) return off('no CA for the bundle server (update.bundleCaFile or ota.caFile)', 'CONFIG_INVALID');
  // A broken update set-up never takes charging down: it is said loudly and the service runs without updates.
  const bundleCa = await readFile(caFile, 'utf8').catch(() => undefined);
  if (!bundleCa) return off(`cannot read the bundle server CA ${caFile}`, 'CONFIG_INVALID');
  const tpmSettings = parseSettings(TpmSettings, (rt.rawConfig.tpm as object | undefined) ?? {}, 'tpm');
  let installer: RaucDbusInstaller;
  try {
    installer = await RaucDbusInstaller.connect({ ...(settings.raucBus === 'system' ? {} : { busAddress: settings.raucBus }), log });
  } catch (err) {
    return off((err as Error).message, (err as EvccError).code);
  }
  const compatible = settings.compatible ?? (await installer.compatible());
  const data = stack.files;
  const run = await FsStore.open(rt.settings.runDir);
  const boot = () => ({ tpm: withTpm(), data, run, log });
  const keys = () => {
    withTpm();
    if (!stack.keys) throw new EvccError('KEYS_DISABLED', 'the key service did not open: no health check or commit possible');
    return stack.keys;
  };
  const jobs = new MqttJobsClient({ client: ota.link.client, vehicleId: ota.vehicleId, clock: rt.clock, log });
  const gate = o.gate ?? new ChargingGate();
  const counterVersion = async (): Promise<number> => {
    const record = parseJson(ProvisioningRecord, await data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
    return Number(await withTpm().nvReadCounter(record.nvCounter.index));
  };
  const deps: UpdateAgentDeps = {
    jobs, log, events: stack.securityLog,
    // New jobs wait in these states (queued at the backend, not rejected); the update the last boot began is finished
    // in any state, which is how a release that failed its boot check is marked bad and left (afterBoot needs RAUC only).
    holdJobs: async () => {
      if (!stack.keyReadiness.ready) return `this boot was not approved (${stack.keyReadiness.code}): a degraded runtime does not install`;
      if (!trust) return 'no verified OEM backend key: job signatures cannot be checked';
      return undefined;
    },
    verifyJob: async (document) => verifyJob(document, {
      oemJobKey: requireTrust(), vehicleId: ota.vehicleId, runningVersion: (await bootState(run)).version, counterVersion: await counterVersion(), compatible, now: new Date(),
    }),
    download: (job, onProgress) => downloadBundle(job, {
      fetch: new HttpsBundleFetch({ ca: bundleCa }), data, files: new FsPartialFiles(data.root), log, onProgress, maxBytes: settings.maxBundleBytes, clock: rt.clock,
    }),
    verifyBundle: (path) => verifyBundle(path, tpmSettings.keyring),
    slot: {
      installer, data, run, log,
      reboot: rebootWhenIdle(settings.rebootCommand ? new CommandReboot(settings.rebootCommand, log) : new RequestFileReboot(run, log), gate, log),
      installPolicy: async (policy, version) => void (await installReleasePolicy(boot(), policy, version)),
      healthCheck: async () => (await keys().selfTest()).key,
      commit: async () => {
        const c = await commitRelease({ ...boot(), keys: keys() });
        return { from: c.from, to: c.to };
      },
      sleep: (ms) => rt.clock.sleep(ms),
    },
  };
  const service = new UpdateService({ pass: () => runUpdateAgent(deps), gate, clock: rt.clock, log, pollIntervalMs: settings.pollIntervalMs, retryDelayMs: settings.retryDelayMs });
  const offPending = jobs.onPending((pending) => service.trigger(`jobs notify: ${pending.map((j) => `${j.jobId} (v${j.version}, ${j.status})`).join(', ')}`));
  log.info({ compatible, bus: settings.raucBus, booted: await installer.bootSlot() }, `OTA updates through RAUC (compatible "${compatible}", booted slot ${await installer.bootSlot()})`);
  service.start();
  return {
    service, gate,
    async close() {
      offPending();
      service.stop();
      jobs.close();
      await installer.close();
    },
  };
}

export interface UpdateStatus {
  record: UpdateRecord | null;
  rauc: { compatible: string; booted: string; primary: string; operation: string; lastError: string; slots: SlotStatus[] } | { unavailable: string };
  counter: string | { unavailable: string };
}

/** `evcc ota update-status`: read-only; each part says why it is missing rather than failing the whole answer. */
export async function updateStatus(rt: Runtime, o: { raucBus?: string; tcti?: string }): Promise<UpdateStatus> {
  const settings = parseSettings(UpdateSettingsSchema, (rt.rawConfig.update as object | undefined) ?? {}, 'update');
  const tpmSettings = parseSettings(TpmSettings, { ...((rt.rawConfig.tpm as object | undefined) ?? {}), ...(o.tcti ? { tcti: o.tcti } : {}) }, 'tpm');
  const data = await FsStore.open(rt.settings.dataDir);
  const record = (await pendingUpdate(data)) ?? null;
  const why = (err: unknown) => ({ unavailable: `${(err as EvccError).code ?? 'UNKNOWN'}: ${(err as Error).message}` });
  const bus = o.raucBus ?? settings.raucBus;
  let rauc: UpdateStatus['rauc'];
  try {
    const installer = await RaucDbusInstaller.connect({ ...(bus === 'system' ? {} : { busAddress: bus }), timeoutMs: 5_000 });
    try {
      rauc = { compatible: await installer.compatible(), booted: await installer.bootSlot(), primary: await installer.primary(),
        operation: await installer.operation(), lastError: await installer.lastError(), slots: await installer.slots() };
    } finally {
      await installer.close();
    }
  } catch (err) {
    rauc = why(err);
  }
  let counter: UpdateStatus['counter'];
  try {
    const recordOfTpm = parseJson(ProvisioningRecord, await data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
    const { Tpm2Tools } = await import('../hal/tpm/tpm2-tools.ts');
    const tpm = await Tpm2Tools.open({ tcti: tpmSettings.tcti, runDir: rt.settings.runDir, log: rt.log('TPM') });
    try {
      counter = String(await tpm.nvReadCounter(recordOfTpm.nvCounter.index));
    } finally {
      await tpm.close();
    }
  } catch (err) {
    counter = why(err);
  }
  return { record, rauc, counter };
}
