import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { installReleasePolicy } from '../../boot/measured-boot.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { HIERARCHY_ESCROW_FILE, openHierarchyEscrow } from '../../firmware/keys/hierarchy.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import type { ProvisioningRecord } from '../../firmware/keys/layout.ts';
import { provisionTpm, type ProvisionResult } from '../../firmware/keys/provision.ts';
import type { Hierarchy } from '../../hal/tpm/types.ts';
import { filesUnder } from '../support/files.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { TPM_TRANSPORTS, TpmLab, transportPrereqs } from './tpm-lab.ts';

/**
 * The hierarchy set-up of TPM.md §8 on swtpm, through the product: provisioning ends by setting the owner policy and
 * random owner, endorsement and lockout authorisation, escrowed to the OEM only (firmware/keys/hierarchy.ts); the
 * platform hierarchy is disabled at every boot (`evcc boot lock-platform`, evcc-boot.service); afterwards owner,
 * endorsement and platform operations without authorisation are refused by the TPM, and `evcc boot commit` still
 * raises the anti-rollback counter — through the owner policy, in an OEM-approved state only.
 */
const CLI_TEST_TIMEOUT_MS = 180_000;

async function refused(p: Promise<unknown>, code: string, rc?: string): Promise<EvccError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, `expected ${code}`).toBeInstanceOf(EvccError);
  expect({ code: (err as EvccError).code, rc: (err as EvccError).details.rc }).toEqual({ code, rc });
  return err as EvccError;
}

for (const transport of TPM_TRANSPORTS) describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl'), ...transportPrereqs(transport)])(`TPM hierarchy set-up and platform lock (swtpm, ${transport})`, () => {
  let lab: TpmLab;
  let provisioned: ProvisionResult;
  let record: ProvisioningRecord;
  let auths: Partial<Record<Hierarchy, Uint8Array>>;
  const escrowKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }); // the OEM's; the vehicle gets the public half
  const escrowPub = escrowKey.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const escrowPriv = escrowKey.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

  /** A raw tpm2-tools call as an attacker's process would make it; returns the TPM RC it printed. */
  async function rawRc(args: string[]): Promise<string | undefined> {
    const r = await execa(args[0]!, args.slice(1), { env: { ...lab.env, TPM2TOOLS_TCTI: lab.tcti }, reject: false, stdin: 'ignore' });
    expect(r.exitCode).not.toBe(0);
    return /\((0x[0-9A-Fa-f]+)\) - tpm:/.exec(String(r.stderr))?.[1]?.toUpperCase().replace('0X', '0x');
  }

  beforeAll(async () => {
    lab = await TpmLab.create({ transport });
    provisioned = await lab.bootedVehicle({ hierarchyEscrowKeyPem: escrowPub });
    record = provisioned.record;
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('provisioning ends with owner policy and owner, endorsement, lockout authorisation — random, escrowed to the OEM only', async () => {
    expect(provisioned.created.slice(-4)).toEqual(['owner-policy', 'owner-auth', 'endorsement-auth', 'lockout-auth']);
    const tpm = await lab.driver();
    expect(await tpm.hierarchyState()).toMatchObject({ ownerAuthSet: true, endorsementAuthSet: true, lockoutAuthSet: true, phEnable: true });
    auths = openHierarchyEscrow(provisioned.hierarchyEscrow, escrowPriv);
    const values = (['owner', 'endorsement', 'lockout'] as const).map((h) => Buffer.from(auths[h]!));
    expect(values.map((v) => v.length)).toEqual([32, 32, 32]);
    expect(new Set(values.map((v) => v.toString('hex'))).size).toBe(3);
    // another key cannot open the escrow
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    expect(() => openHierarchyEscrow(provisioned.hierarchyEscrow, other)).toThrow(expect.objectContaining({ code: 'KEYS_ESCROW_INVALID' }));
    // no file the product wrote holds a value in clear (the escrow record is ciphertext)
    const files = [...(await filesUnder(lab.dataDir)), ...(await filesUnder(lab.runDir))];
    expect(files.some((f) => f.endsWith(HIERARCHY_ESCROW_FILE))).toBe(true);
    const findings: string[] = [];
    for (const f of files) {
      const content = await readFile(f);
      for (const v of values) for (const enc of [v, Buffer.from(v.toString('hex')), Buffer.from(v.toString('base64'))]) if (content.includes(enc)) findings.push(f);
    }
    expect(findings).toEqual([]);
    // idempotent: a second run changes nothing
    expect((await provisionTpm(await lab.deps(), { oemPolicyKeyPem: await readFile(lab.oemPolicyPub, 'utf8'), hierarchyEscrowKeyPem: escrowPub })).created).toEqual([]);
  });

  it('owner and endorsement operations without their authorisation are refused; DA changes need the escrowed lockout authorisation', async () => {
    const tpm = await lab.driver();
    await refused(tpm.nvDefineCounter(0x01800110), 'TPM_BAD_AUTH', '0x9A2');
    await refused(tpm.createStoragePrimary(0x81000010), 'TPM_BAD_AUTH', '0x9A2');
    // plain owner authorisation no longer raises the anti-rollback counter: only the owner policy does
    await refused(tpm.nvIncrement(record.nvCounter.index), 'TPM_BAD_AUTH', '0x9A2');
    expect(await rawRc(['tpm2_createprimary', '-C', 'e', '-c', `${lab.base}/ek.ctx`])).toBe('0x9A2');
    // provisioning refuses new DA parameters WITHOUT touching the lockout hierarchy (one wrong try would lock it) …
    await expect(provisionTpm(await lab.deps(), { oemPolicyKeyPem: await readFile(lab.oemPolicyPub, 'utf8'), dictionaryAttack: { maxTries: 7, recoveryTime: 60, lockoutRecovery: 60 } }))
      .rejects.toMatchObject({ code: 'KEYS_HIERARCHY_LOCKED' });
    // … and the OEM's service path (escrow opened by the backend) still works: DA reset and parameters with lockout auth
    await tpm.resetDictionaryLockout(auths.lockout);
    await tpm.setDictionaryAttackParameters({ maxTries: 7, recoveryTime: 60, lockoutRecovery: 60 }, auths.lockout);
    expect(await tpm.dictionaryAttackState()).toMatchObject({ maxTries: 7, recoveryTime: 60, lockoutRecovery: 60, inLockout: false });
  });

  it('evcc boot lock-platform disables the platform hierarchy (idempotent); platform operations are refused; every Startup enables it again', async () => {
    expect(await lab.cliOk(['boot', 'lock-platform'], { tpm: true })).toEqual({ platform: 'disabled', action: 'disabled' });
    expect(await lab.cliOk(['boot', 'lock-platform'], { tpm: true })).toEqual({ platform: 'disabled', action: 'already' });
    const tpm = await lab.driver();
    expect((await tpm.hierarchyState()).phEnable).toBe(false);
    expect(await rawRc(['tpm2_clear', '-c', 'p'])).toBe('0x185'); // TPM2_Clear through the platform: would wipe the keys
    await refused(tpm.disablePlatformHierarchy(), 'TPM_HIERARCHY_DISABLED', '0x185');
    await lab.reboot('orderly');
    expect((await (await lab.driver()).hierarchyState()).phEnable).toBe(true); // hence: at every boot
  }, CLI_TEST_TIMEOUT_MS);

  it('after set-up and platform lock, evcc boot commit still raises the counter — through the owner policy, in an approved state only', async () => {
    const bundle2 = await lab.bundle(2);
    const policy2 = await createSignedPolicy({ bundlePath: bundle2, keyring: lab.bundleCert, policyKeyPem: await readFile(lab.oemPolicyKey, 'utf8') });
    // OTA: the v2 ticket (verified by the TPM, no authorisation needed), then the reboot into v2
    await installReleasePolicy(await lab.deps(), policy2, undefined);
    await lab.reboot('orderly');
    const booted = await lab.bootCli(bundle2);
    expect(booted.exitCode, booted.stderr).toBe(0);
    expect(await lab.cliOk(['boot', 'lock-platform'], { tpm: true })).toMatchObject({ action: 'disabled' });
    expect(await lab.cliOk(['boot', 'commit'], { tpm: true })).toMatchObject({ version: 2, from: '1', to: '2' });
    const tpm = await lab.driver();
    expect(await tpm.nvReadCounter(record.nvCounter.index)).toBe(2n);
    // a state the OEM did not sign (PCR 14 moved on): the owner policy refuses the increment
    await tpm.pcrExtend('sha256', 14, new Uint8Array(randomBytes(32)));
    const keys = await KeyService.open(await lab.deps());
    try {
      await refused(keys.incrementAntiRollbackCounter(record.nvCounter.index), 'TPM_POLICY_NOT_APPROVED', '0x1C4');
    } finally {
      await keys.close();
    }
    expect(await tpm.nvReadCounter(record.nvCounter.index)).toBe(2n);
  }, CLI_TEST_TIMEOUT_MS);
});
