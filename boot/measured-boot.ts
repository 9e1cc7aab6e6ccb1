import { readFile } from 'node:fs/promises';
import { EvccError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { FileStore } from '../hal/store/types.ts';
import type { Tpm } from '../hal/tpm/types.ts';
import { BootState, DATA, jsonBytes, parseJson, ProvisioningRecord, RUN } from '../firmware/keys/layout.ts';
import { fromHex, toHex } from '../firmware/keys/policy.ts';
import { checkSignedPolicy, parseSignedPolicy, policySigningInput, type SignedPolicy } from '../firmware/keys/signed-policy.ts';
import { sha256File } from '../hal/store/hash.ts';
import { releaseVersion, rootfsImage, verifyBundle } from '../hal/rauc/bundle.ts';
import { releaseBundle } from '../firmware/ota/update/after-boot.ts';
import { DEFAULT_EVENT_LOG, parseEventLog, rootfsMeasurement } from './event-log.ts';

/**
 * The user-space boot CHECK (ARCHITECTURE.md §3 step 1; TR-2019-04 §3.3.2; boot/README.md). It measures nothing:
 * the measurement was taken by the initramfs before the root file system ran (boot/initramfs/evcc-measure-rootfs,
 * PCR 14 extended once with the slot image's digest). Anything running now, root included, can only extend PCR 14
 * further away from the approved value, so this step cannot make a boot good; it finds out whether it is, says why
 * not, and prepares the release's ticket:
 *   1. the hook's event log, replayed, equals PCR 14 as the TPM reports it, and holds exactly the one root file
 *      system measurement from zero;
 *   2. the installed bundle's signature verifies (RAUC keyring) and its manifest's rootfs image is what was measured;
 *   3. its version is not below the NV anti-rollback counter;
 *   4. the release's signed state policy names that measurement; its ticket is cached.
 * Any refusal is a typed error; the runtime then starts degraded (EIM only). Idempotent within a boot.
 */
export type BootErrorCode = 'BOOT_EVENT_LOG_MISSING' | 'BOOT_EVENT_LOG_MALFORMED' | 'BOOT_EVENT_LOG_MISMATCH' | 'BOOT_PCR_UNEXPECTED'
  | 'BOOT_ROOTFS_MISMATCH' | 'BOOT_ROLLBACK' | 'BOOT_NO_POLICY' | 'BOOT_POLICY_MISMATCH' | 'BUNDLE_INVALID';

export interface BootDeps {
  tpm: Tpm;
  data: FileStore;
  run: FileStore;
  log: Logger;
}

export interface BootOptions {
  /**
   * The installed release's OEM-signed RAUC bundle (config tpm.bundlePath: the factory-installed one). With
   * `releases`, only the fallback when no bundle in the data dir is the booted slot's.
   */
  bundlePath?: string;
  /**
   * Check the booted slot's release: the bundle `releases/v<N>/bundle.raucb` in the data dir whose release's
   * rootfs image is what the initramfs measured (OTA updates leave one per installed release), else `bundlePath`.
   */
  releases?: boolean;
  keyring: string;
  /** The initramfs hook's event log (default /run/evcc-boot/measurements.log). */
  eventLogPath?: string;
  /** Signed policy of this release, if not installed yet (`releases/v<N>/signed-policy.json`). */
  policy?: unknown;
  /** See VerifyOptions.checkTime (default true). */
  checkCertificateTime?: boolean;
}

export interface BootReport {
  version: number;
  /** The bundle checked (the booted slot's release). */
  bundle: string;
  bundleSha256: string;
  /** The root file system image the initramfs measured (SHA-256, hex). */
  rootfsSha256: string;
  pcrValue: string;
  measurement: { by: 'initramfs'; events: number; source: string };
  counter: string;
  ticket: 'cached' | 'created';
}

async function loadRecord(data: FileStore): Promise<ProvisioningRecord> {
  return parseJson(ProvisioningRecord, await data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
}

async function readEventLog(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new EvccError('BOOT_EVENT_LOG_MISSING', `no measurement event log at ${path}: the initramfs hook did not measure this boot`, { path }, { cause: err });
  }
}

export async function checkMeasuredBoot(d: BootDeps, o: BootOptions): Promise<BootReport> {
  const record = await loadRecord(d.data);
  const pcr = record.pcr.index;
  const eventLogPath = o.eventLogPath ?? DEFAULT_EVENT_LOG;
  const events = parseEventLog(await readEventLog(eventLogPath));
  const pcrValue = await d.tpm.pcrRead('sha256', pcr);
  const measured = rootfsMeasurement(events, pcr, pcrValue);
  const rootfsSha256 = toHex(measured.digest);
  d.log.info({ pcr, rootfsSha256, source: measured.source }, `PCR ${pcr} equals the initramfs event log: root file system ${measured.source} measured (${rootfsSha256.slice(0, 16)}…)`);

  const bundlePath = (o.releases ? await bootedReleaseBundle(d.data, rootfsSha256) : undefined) ?? o.bundlePath;
  if (!bundlePath) {
    throw new EvccError('BOOT_ROOTFS_MISMATCH', `no release bundle in ${d.data.root}/releases names the root file system that booted (${rootfsSha256.slice(0, 16)}…), and no installed bundle is configured`, { measured: rootfsSha256 });
  }
  const info = await verifyBundle(bundlePath, o.keyring, { checkTime: o.checkCertificateTime });
  const version = releaseVersion(info);
  const image = rootfsImage(info, bundlePath);
  if (image.sha256 !== rootfsSha256) {
    throw new EvccError('BOOT_ROOTFS_MISMATCH', `the root file system that booted (${rootfsSha256.slice(0, 16)}…) is not the rootfs image of the installed release v${version} (${image.sha256.slice(0, 16)}…)`,
      { version, measured: rootfsSha256, release: image.sha256, source: measured.source });
  }
  const counter = await d.tpm.nvReadCounter(record.nvCounter.index);
  if (BigInt(version) < counter) {
    throw new EvccError('BOOT_ROLLBACK', `bundle version ${version} is older than the anti-rollback counter ${counter}`, { version, counter: String(counter) });
  }

  const { policy, ticket } = await installReleasePolicy(d, o.policy, version, record);
  if (policy.rootfs.sha256 !== rootfsSha256 || policy.pcrs.value !== toHex(pcrValue)) {
    throw new EvccError('BOOT_POLICY_MISMATCH', `signed policy v${version} is for another root file system`, { version, policyRootfs: policy.rootfs.sha256, measured: rootfsSha256 });
  }
  const bundleSha256 = toHex(await sha256File(bundlePath));
  const state: BootState = { format: 'evcc-boot-state/1', version, bundleSha256, rootfsSha256, pcrValue: toHex(pcrValue), bootedAt: new Date().toISOString() };
  await d.run.writeAtomic(RUN.boot, jsonBytes(state), { mode: 0o600 });
  d.log.info({ version, counter: String(counter), ticket, bundle: bundlePath }, `release v${version} booted: signature, anti-rollback counter and signed state policy check out`);
  return { version, bundle: bundlePath, bundleSha256, rootfsSha256, pcrValue: toHex(pcrValue), measurement: { by: 'initramfs', events: events.length, source: measured.source }, counter: String(counter), ticket };
}

/**
 * The booted slot's bundle among the releases kept in the data dir: the one whose stored signed policy names the
 * measured rootfs image (newest first). The stored policy only picks the candidate: the check then verifies the
 * bundle's signature, compares its signed manifest with the measurement and has the TPM check the policy, so a
 * wrong or planted file can only fail the check. RAUC is not asked (the boot unit has no bus, and what the
 * initramfs measured is what booted, whatever the slot status says).
 */
export async function bootedReleaseBundle(data: FileStore, rootfsSha256: string): Promise<string | undefined> {
  const versions = (await data.list('releases')).map((e) => /^v([1-9][0-9]{0,14})$/.exec(e)?.[1]).filter((v): v is string => !!v).map(Number).sort((a, b) => b - a);
  for (const version of versions) {
    const bundle = releaseBundle(version);
    const stored = await data.read(DATA.release(version, 'signed-policy.json'));
    if (!stored || !(await data.exists(bundle))) continue;
    let named: unknown;
    try {
      named = (JSON.parse(Buffer.from(stored).toString('utf8')) as { rootfs?: { sha256?: unknown } }).rootfs?.sha256;
    } catch {
      continue;
    }
    if (named === rootfsSha256) return `${data.root}/${bundle}`;
  }
  return undefined;
}

/**
 * Turns a release's signed policy into a TPM verification ticket, once per release (tickets survive reboots until
 * TPM2_Clear, TPM.md pitfall 9). Runs at boot, or before the reboot into a new release (OTA).
 */
export async function installReleasePolicy(d: BootDeps, raw: unknown, expectedVersion: number | undefined, record?: ProvisioningRecord):
  Promise<{ policy: SignedPolicy; ticket: 'cached' | 'created' }> {
  const rec = record ?? (await loadRecord(d.data));
  let policy: SignedPolicy;
  if (raw === undefined) {
    if (expectedVersion === undefined) throw new EvccError('BOOT_NO_POLICY', 'no signed policy given');
    const stored = await d.data.read(DATA.release(expectedVersion, 'signed-policy.json'));
    if (!stored) throw new EvccError('BOOT_NO_POLICY', `no signed policy installed for release v${expectedVersion}`, { version: expectedVersion });
    let raw: unknown;
    try {
      raw = JSON.parse(Buffer.from(stored).toString('utf8'));
    } catch (err) {
      throw new EvccError('STORE_CORRUPT', `stored signed policy v${expectedVersion} is not JSON`, { version: expectedVersion }, { cause: err });
    }
    policy = parseSignedPolicy(raw);
  } else {
    policy = parseSignedPolicy(raw);
  }
  if (expectedVersion !== undefined && policy.version !== expectedVersion) {
    throw new EvccError('BOOT_POLICY_MISMATCH', `signed policy is for v${policy.version}, bundle is v${expectedVersion}`, { policy: policy.version, bundle: expectedVersion });
  }
  const oemPem = await d.data.read(DATA.oemPolicyKey);
  if (!oemPem) throw new EvccError('KEYS_NOT_PROVISIONED', 'OEM policy key missing from the data dir');
  const sig = checkSignedPolicy(policy, {
    oemPolicyKeyPem: Buffer.from(oemPem).toString('utf8'), nvIndex: rec.nvCounter.index, nvName: fromHex(rec.nvCounter.name),
    policyRef: fromHex(rec.policyRef), pcr: rec.pcr.index,
  });
  const policyBytes = jsonBytes(policy);
  const storedPolicy = await d.data.read(DATA.release(policy.version, 'signed-policy.json'));
  const storedTicket = await d.data.read(DATA.release(policy.version, 'ticket.bin'));
  if (storedTicket && storedPolicy && Buffer.from(storedPolicy).toString('utf8') === policyBytes) return { policy, ticket: 'cached' };
  // The TPM checks the OEM signature itself: the ticket is its proof for PolicyAuthorize.
  const { keyName, ticket } = await d.tpm.verifySignature(Buffer.from(oemPem).toString('utf8'), policySigningInput(policy), sig);
  if (toHex(keyName) !== rec.oemPolicyKey.name) {
    throw new EvccError('BOOT_POLICY_MISMATCH', 'TPM name of the OEM policy key differs from the provisioned one (pitfall 8)', { name: toHex(keyName) });
  }
  await d.data.writeAtomic(DATA.release(policy.version, 'signed-policy.json'), policyBytes, { mode: 0o644 });
  await d.data.writeAtomic(DATA.release(policy.version, 'ticket.bin'), ticket, { mode: 0o644 });
  d.log.info({ version: policy.version }, `signed state policy v${policy.version} verified by the TPM, ticket cached`);
  return { policy, ticket: 'created' };
}

/** The boot state of this boot (run dir), for commit and status. */
export async function bootState(run: FileStore): Promise<BootState> {
  return parseJson(BootState, await run.read(RUN.boot), 'boot state (evcc boot has not run this boot)', 'KEYS_NOT_BOOTED');
}
