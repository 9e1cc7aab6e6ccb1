import { EvccError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { FileStore } from '../hal/store/types.ts';
import type { Tpm } from '../hal/tpm/types.ts';
import { BootState, DATA, jsonBytes, parseJson, ProvisioningRecord, RUN } from '../firmware/keys/layout.ts';
import { fromHex, pcrAfterExtend, toHex } from '../firmware/keys/policy.ts';
import { checkSignedPolicy, parseSignedPolicy, policySigningInput, type SignedPolicy } from '../firmware/keys/signed-policy.ts';
import { sha256File } from '../hal/store/hash.ts';
import { releaseVersion, verifyBundle } from '../hal/rauc/bundle.ts';

/**
 * Measured boot (ARCHITECTURE.md §3 step 1; TR-2019-04 §3.3.2; TPM.md §3 "every boot").
 *
 * PCR 14 is extended with H(bundle) FIRST, as soon as it is seen to be zero, and only then is the bundle verified:
 * a bundle that fails verification is still measured, so nothing later in this boot can extend the good value
 * and unlock the keys. A runtime restart in the same boot finds PCR 14 already at the expected value and skips;
 * any other non-zero value (someone measured before us, or a TPM that missed its reset) is refused.
 */
export type BootErrorCode = 'BOOT_PCR_UNEXPECTED' | 'BOOT_ROLLBACK' | 'BOOT_NO_POLICY' | 'BOOT_POLICY_MISMATCH' | 'BUNDLE_INVALID';

export interface BootDeps {
  tpm: Tpm;
  data: FileStore;
  run: FileStore;
  log: Logger;
}

export interface BootOptions {
  bundlePath: string;
  keyring: string;
  /** Signed policy of this release, if not installed yet (`releases/v<N>/signed-policy.json`). */
  policy?: unknown;
  /** See VerifyOptions.checkTime (default true). */
  checkCertificateTime?: boolean;
}

export interface BootReport {
  version: number;
  bundleSha256: string;
  pcrValue: string;
  measured: 'extended' | 'already';
  counter: string;
  ticket: 'cached' | 'created';
}

async function loadRecord(data: FileStore): Promise<ProvisioningRecord> {
  return parseJson(ProvisioningRecord, await data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
}

export async function measuredBoot(d: BootDeps, o: BootOptions): Promise<BootReport> {
  const record = await loadRecord(d.data);
  const pcr = record.pcr.index;
  const digest = await sha256File(o.bundlePath);
  const expectedPcr = pcrAfterExtend(digest);
  const current = await d.tpm.pcrRead('sha256', pcr);
  let measured: BootReport['measured'];
  if (current.every((b) => b === 0)) {
    await d.tpm.pcrExtend('sha256', pcr, digest);
    measured = 'extended';
    d.log.info({ pcr, bundleSha256: toHex(digest) }, `bundle measured into PCR ${pcr}`);
  } else if (toHex(current) === toHex(expectedPcr)) {
    measured = 'already';
    d.log.info({ pcr }, `PCR ${pcr} already holds this bundle's measurement (runtime restart in the same boot)`);
  } else {
    throw new EvccError('BOOT_PCR_UNEXPECTED', `PCR ${pcr} was extended by something else this boot: refusing to measure`, { pcr, value: toHex(current) });
  }

  const info = await verifyBundle(o.bundlePath, o.keyring, { checkTime: o.checkCertificateTime });
  const version = releaseVersion(info);
  const counter = await d.tpm.nvReadCounter(record.nvCounter.index);
  if (BigInt(version) < counter) {
    throw new EvccError('BOOT_ROLLBACK', `bundle version ${version} is older than the anti-rollback counter ${counter}`, { version, counter: String(counter) });
  }

  const { policy, ticket } = await installReleasePolicy(d, o.policy, version, record);
  if (policy.bundle.sha256 !== toHex(digest)) {
    throw new EvccError('BOOT_POLICY_MISMATCH', `signed policy v${version} is for another bundle`, { version, policyBundle: policy.bundle.sha256, bundle: toHex(digest) });
  }
  const state: BootState = { format: 'evcc-boot-state/1', version, bundleSha256: toHex(digest), pcrValue: toHex(expectedPcr), bootedAt: new Date().toISOString() };
  await d.run.writeAtomic(RUN.boot, jsonBytes(state), { mode: 0o600 });
  d.log.info({ version, counter: String(counter), ticket }, `release v${version} booted`);
  return { version, bundleSha256: toHex(digest), pcrValue: toHex(expectedPcr), measured, counter: String(counter), ticket };
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
