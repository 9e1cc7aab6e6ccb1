import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { jsonBytes, type BootState } from '../../firmware/keys/layout.ts';
import { backendExport } from '../../firmware/keys/provision.ts';
import { openVehicleTrust } from '../../firmware/keys/vehicle-trust.ts';
import type { SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import { SECURITY_LOG_PATH, SecurityLog, parseEntries, tpmCheckpointSigner, verifySecurityLog } from '../../firmware/log/security-log.ts';
import { SESSION_HISTORY_PATH, SessionHistory, type SessionHistoryRecord } from '../../firmware/log/session-history.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { TpmLab, type CliResult } from './tpm-lab.ts';

/**
 * The signed security log and the encrypted session history on a real TPM (swtpm): checkpoints signed by the TPM
 * log key created at provisioning (its public part in the provisioning export), `evcc log verify` with that public
 * key alone — intact log accepted, the first bad entry of an edited / truncated / reordered copy named with a typed
 * error and exit 1, no stack — and, in a tampered state, the log key refused by the TPM (checkpoints unsigned with
 * the TPM's reason, the chain going on) and the session history unreadable.
 */

const VEHICLE = 'VIN-LOG-0001';
const clock = (): number => Date.now();

describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl')])('security log and encrypted history (swtpm)', () => {
  let lab: TpmLab;
  let pubFile: string;
  let publicKeyPem: string;
  let policy: SignedPolicy;
  let bundle: string;

  async function withKeys<T>(fn: (keys: KeyService) => Promise<T>): Promise<T> {
    const keys = await KeyService.open(await lab.deps(), { reclaim: true });
    try {
      return await fn(keys);
    } finally {
      await keys.close();
    }
  }
  async function openLog(keys: KeyService): Promise<SecurityLog> {
    const deps = await lab.deps();
    const signer = tpmCheckpointSigner(keys);
    return SecurityLog.open({ store: deps.data, now: clock, log: deps.log, ...(signer ? { signer } : {}) }, { vehicleId: VEHICLE, publicKeyPem, checkpointEvery: 1000 });
  }
  const logFile = (): string => join(lab.dataDir, SECURITY_LOG_PATH);
  async function verifyCli(file: string): Promise<CliResult> {
    return lab.cli(['log', 'verify', file, '--key', pubFile]);
  }
  function expectTypedExit1(r: CliResult, code: string, seq: number): void {
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`evcc: ${code}:`);
    expect(r.stderr).toContain(`entry seq ${seq} `);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
  }

  beforeAll(async () => {
    lab = await TpmLab.create();
    const done = await lab.bootedVehicle();
    expect(done.created).toContain('security-log-key');
    expect(done.record.logKey?.publicKeyPem).toMatch(/BEGIN PUBLIC KEY/);
    publicKeyPem = backendExport(done.record)['security-log.pub.pem'] as string;
    expect(publicKeyPem).toBe(done.record.logKey!.publicKeyPem);
    pubFile = join(lab.oemDir, 'security-log.pub.pem');
    await writeFile(pubFile, publicKeyPem);
    bundle = join(lab.oemDir, 'v1.raucb');
    policy = await createSignedPolicy({ bundlePath: bundle, keyring: lab.bundleCert, policyKeyPem: await readFile(lab.oemPolicyKey, 'utf8') });
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('checkpoints are signed by the TPM log key; evcc log verify accepts the intact log with the public key alone', async () => {
    // evcc boot (evcc-boot.service) records its check; the runtime's checkpoint signs it
    const bootRun = await lab.cli(['boot', '--bundle', bundle, '--keyring', lab.bundleCert, '--event-log', lab.eventLog], { tpm: true });
    expect(bootRun.exitCode).toBe(0);
    await withKeys(async (keys) => {
      const log = await openLog(keys);
      await log.append('boot.check', { version: 1, ok: true, pcr14: policy.pcrs.value });
      await log.append('pki.root-installed', { fingerprint: 'ab'.repeat(32), source: 'factory' });
      await log.append('keys.refused', { code: 'TPM_POLICY_NOT_APPROVED', rc: '0x1c4' });
      const cp = await log.checkpoint();
      expect(cp.detail).toHaveProperty('sig');
      await log.append('ota.update-step', { job: 'job-1', version: 2, step: 'download', ok: true });
      await log.checkpoint();
    });
    const text = await readFile(logFile(), 'utf8');
    const r = verifySecurityLog(text, publicKeyPem);
    expect(r).toMatchObject({ entries: 8, signedCheckpoints: 2, unsignedCheckpoints: [], signedThrough: 7, unsignedTail: 0 });
    const entries = parseEntries(text);
    expect(entries[1]).toMatchObject({ kind: 'boot.check', detail: { ok: true, version: 1, pcr14: policy.pcrs.value } });
    const cli = await verifyCli(logFile());
    expect(cli.stderr).toBe('');
    expect(cli.exitCode).toBe(0);
    expect(cli.stdout).toContain('security log intact: 8 entries, 2 signed checkpoint(s), signed through seq 7');
    const json = JSON.parse((await lab.cli(['log', 'verify', logFile(), '--key', pubFile, '--json'])).stdout) as { ok: boolean; head: string };
    expect(json).toMatchObject({ ok: true, head: r.head });
  });

  it('evcc log verify names the first bad entry of an edited, truncated or reordered copy (typed error, exit 1, no stack)', async () => {
    const text = await readFile(logFile(), 'utf8');
    const lines = text.split('\n').slice(0, -1);
    const copy = async (name: string, content: string): Promise<string> => {
      const f = join(lab.oemDir, name);
      await writeFile(f, content);
      return f;
    };
    const edited = [...lines];
    const at = edited.findIndex((l) => l.includes('"source":"factory"'));
    expect(at).toBe(3);
    edited[at] = edited[at]!.replace('"source":"factory"', '"source":"ota"');
    expectTypedExit1(await verifyCli(await copy('edited.jsonl', `${edited.join('\n')}\n`)), 'LOG_ENTRY_ALTERED', 3);
    expectTypedExit1(await verifyCli(await copy('truncated.jsonl', text.slice(0, text.length - 40))), 'LOG_TRUNCATED', 7);
    const reordered = [...lines];
    [reordered[3], reordered[4]] = [reordered[4]!, reordered[3]!];
    expectTypedExit1(await verifyCli(await copy('reordered.jsonl', `${reordered.join('\n')}\n`)), 'LOG_SEQ_OUT_OF_ORDER', 3);
    // a log of another vehicle's key: the first signed checkpoint is refused
    const otherKey = await copy('other.pub.pem', (await import('node:crypto')).generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const other = await lab.cli(['log', 'verify', logFile(), '--key', otherKey]);
    expect(other.exitCode).toBe(1);
    expect(other.stderr).toContain('evcc: LOG_CHECKPOINT_INVALID:');
    const missing = await lab.cli(['log', 'verify', join(lab.oemDir, 'nope.jsonl'), '--key', pubFile]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain('evcc: IO_FAILED:');
  });

  it('the encrypted history: round trip in the approved state; nothing of it in clear on disk', async () => {
    const record: SessionHistoryRecord = {
      startedAt: '2026-12-03T14:00:00.000Z', endedAt: '2026-12-03T14:40:00.000Z', ok: true, endCode: 'OK', protocol: 'iso2', payment: 'Contract',
      emaid: 'DE8AAA1B2C3D4E5', evseId: 'DE*ABC*E123456', charger: 'fe80::1', energyWh: 31250, soc: { start: 20, end: 80 },
    };
    const deps = await lab.deps();
    await withKeys(async (keys) => {
      const trust = await openVehicleTrust({ keys, data: deps.data, log: deps.log });
      const history = new SessionHistory({ store: deps.data, key: trust.historyKey, random: (n) => new Uint8Array(randomBytes(n)), log: deps.log }, { vehicleId: VEHICLE });
      expect(await history.append(record)).toBe(0);
      expect(await history.append({ ...record, emaid: 'DE8AAA9Z9Z9Z9Z9' })).toBe(1);
    });
    const onDisk = await readFile(join(lab.dataDir, SESSION_HISTORY_PATH), 'utf8');
    for (const secret of ['DE8AAA1B2C3D4E5', 'DE*ABC*E123456', '31250', Buffer.from('DE8AAA1B2C3D4E5').toString('base64')]) expect(onDisk).not.toContain(secret);
    // a later start (fresh unseal, fresh key derivation) reads both back
    await withKeys(async (keys) => {
      const trust = await openVehicleTrust({ keys, data: deps.data, log: deps.log });
      const history = new SessionHistory({ store: deps.data, key: trust.historyKey, random: (n) => new Uint8Array(randomBytes(n)), log: deps.log }, { vehicleId: VEHICLE });
      const back = await history.read();
      expect(back.map((r) => r.emaid)).toEqual(['DE8AAA1B2C3D4E5', 'DE8AAA9Z9Z9Z9Z9']);
      expect(back[0]).toMatchObject({ ...record, n: 0 });
      // another vehicle id (the additional data) or a swapped order does not authenticate
      const foreign = new SessionHistory({ store: deps.data, key: trust.historyKey, random: (n) => new Uint8Array(randomBytes(n)), log: deps.log }, { vehicleId: 'VIN-OTHER' });
      await expect(foreign.read()).rejects.toMatchObject({ code: 'HISTORY_RECORD_INVALID', details: { n: 0 } });
    });
  });

  it('in a tampered state the TPM refuses the log key (checkpoint unsigned with its reason, the chain goes on) and the history is unreadable', async () => {
    await lab.reboot('state');
    await lab.bootUpTo(bundle, { tamperedSlot: true });
    // The runtime of a tampered release claims the approved boot anyway: the TPM itself decides from PCR 14.
    // evcc boot refuses the tampered root file system and records why
    const bootRun = await lab.cli(['boot', '--bundle', bundle, '--keyring', lab.bundleCert, '--event-log', lab.eventLog], { tpm: true });
    expect(bootRun.exitCode).toBe(1);
    const claim: BootState = { format: 'evcc-boot-state/1', version: 1, bundleSha256: policy.bundle.sha256, rootfsSha256: policy.rootfs.sha256, pcrValue: policy.pcrs.value, bootedAt: new Date().toISOString() };
    await writeFile(join(lab.runDir, 'boot.json'), jsonBytes(claim));
    const deps = await lab.deps();
    await withKeys(async (keys) => {
      const refused = await keys.signWithLogKey(new Uint8Array(32)).then(() => undefined, (e: unknown) => e);
      expect(refused).toBeInstanceOf(EvccError);
      expect((refused as EvccError).code).toBe('TPM_POLICY_NOT_APPROVED');
      const log = await openLog(keys);
      await log.append('boot.check', { version: 1, ok: false, code: 'BOOT_ROOTFS_MISMATCH' });
      const cp = await log.checkpoint();
      expect(cp.detail).toMatchObject({ unsigned: 'TPM_POLICY_NOT_APPROVED' });

      const trustErr = await openVehicleTrust({ keys, data: deps.data, log: deps.log }).then(() => undefined, (e: unknown) => e as EvccError);
      expect(trustErr?.details).toMatchObject({ reason: 'TPM_POLICY_NOT_APPROVED' });
      const history = new SessionHistory({ store: deps.data, key: undefined, unavailableReason: 'TPM_POLICY_NOT_APPROVED', random: (n) => new Uint8Array(randomBytes(n)), log: deps.log }, { vehicleId: VEHICLE });
      expect(history.readable).toBe(false);
      await expect(history.read()).rejects.toMatchObject({ code: 'HISTORY_UNAVAILABLE', details: { reason: 'TPM_POLICY_NOT_APPROVED' } });
      await expect(history.append({ startedAt: 'x', endedAt: 'y', ok: true, endCode: 'OK' })).rejects.toMatchObject({ code: 'HISTORY_UNAVAILABLE' });
    });
    const text = await readFile(logFile(), 'utf8');
    const r = verifySecurityLog(text, publicKeyPem);
    expect(r.entries).toBe(11);
    expect(r.signedThrough).toBe(7);
    expect(r.unsignedCheckpoints).toEqual([{ seq: 10, reason: 'TPM_POLICY_NOT_APPROVED' }]);
    const entries = parseEntries(text);
    expect(entries[8]).toMatchObject({ kind: 'boot.check', detail: { ok: false } });
    expect(entries[8]!.detail.code).toMatch(/^BOOT_/);
    expect(entries.at(-2)!.detail).toMatchObject({ code: 'BOOT_ROOTFS_MISMATCH' });
    const cli = await verifyCli(logFile());
    expect(cli.exitCode).toBe(0);
    expect(cli.stdout).toContain('1 checkpoint(s) unsigned (TPM_POLICY_NOT_APPROVED; first at seq 10)');
    expect(cli.stdout).toContain('3 entries after the last signature');
  });
});
