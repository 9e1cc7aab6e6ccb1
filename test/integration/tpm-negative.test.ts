import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { KeyService, statePolicySteps } from '../../firmware/keys/key-service.ts';
import { DATA, jsonBytes, type BootState, type ProvisioningRecord } from '../../firmware/keys/layout.ts';
import { externalEccName, fromHex, pcrAfterExtend, policyPcr, toHex, u64be, ZERO_DIGEST } from '../../firmware/keys/policy.ts';
import { backendExport, provisionTpm } from '../../firmware/keys/provision.ts';
import { eccPublicPem, parseEccPublic } from '../../firmware/keys/duplicate.ts';
import type { SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import type { Auth, KeyBlob, KeyRef, PolicyStep, SaltKey } from '../../hal/tpm/types.ts';
import type { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { commitRelease } from '../../boot/commit.ts';
import { installReleasePolicy } from '../../boot/measured-boot.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { wrapContractKey } from '../../deploy/mo/wrap.ts';
import { writeExport } from '../../bin/commands/tpm.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { TPM_TRANSPORTS, TpmLab, transportPrereqs } from './tpm-lab.ts';

/**
 * Must show 2: every negative case of tpm-flow.sh §5 (N00–N21) and the PITFALL demo, reproduced through the
 * product's modules (provisioning, measured boot, key service, OEM/MO tools, and the product TPM driver for the
 * attacker's own tool calls), each asserting the typed error and the TPM response code from a real swtpm.
 */
const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash('sha256').update(b).digest());

async function refused(p: Promise<unknown>, code: string, rc?: string): Promise<EvccError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, `expected ${code}`).toBeInstanceOf(EvccError);
  const e = err as EvccError;
  expect({ code: e.code, rc: e.details.rc }).toEqual({ code, rc });
  return e;
}

// Both transports (tpm-lab.ts): direct swtpm TCTI, and tpm2-abrmd in front of it as /dev/tpmrm0 on the device.
for (const transport of TPM_TRANSPORTS) describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl'), ...transportPrereqs(transport)])(`TPM negative matrix N00–N21 through the product (swtpm, ${transport})`, () => {
  let lab: TpmLab;
  let oemPem: string;
  let oemKeyPem: string;
  let record: ProvisioningRecord;
  let salt: SaltKey;
  let password: Uint8Array;
  let contractBlob: KeyBlob;
  let contractCtx: string;
  let contractPub: string;
  let ind: KeyBlob;
  let indst: KeyBlob;
  const bundles: Record<string, string> = {};
  const policies: Record<number, SignedPolicy> = {};
  const STK: KeyRef = { persistent: 0x81000101 };
  const SRK: KeyRef = { persistent: 0x81000001 };
  const digest = sha256('SignedInfo of an AuthorizationReq');
  // attacker material: own key, permissive "approved" policy (PCR only, no NV counter)
  const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const attPub = attacker.publicKey.export({ type: 'spki', format: 'pem' }) as string;

  async function ticketOf(v: number): Promise<Uint8Array> {
    return new Uint8Array(await readFile(join(lab.dataDir, DATA.release(v, 'ticket.bin'))));
  }
  async function state(v: number): Promise<PolicyStep[]> {
    return statePolicySteps(policies[v]!, await ticketOf(v));
  }
  const storageAuth = (session: { id: string; trial: boolean }): Auth => ({ kind: 'policy', session, secret: password });
  /** The run dir's boot state, as a tampered or old runtime that skipped the checks would leave it. */
  async function claimBooted(v: number): Promise<void> {
    const p = policies[v]!;
    const s: BootState = { format: 'evcc-boot-state/1', version: v, bundleSha256: p.bundle.sha256, rootfsSha256: p.rootfs.sha256, pcrValue: p.pcrs.value, bootedAt: new Date().toISOString() };
    await writeFile(join(lab.runDir, 'boot.json'), jsonBytes(s));
  }
  async function keyService(): Promise<KeyService> {
    return KeyService.open(await lab.deps());
  }
  /** A boot with `bundle` in slot A: the initramfs hook measures it, then the `evcc boot` check. */
  async function boot(bundle: string, o: { tamperedSlot?: boolean } = {}): Promise<unknown> {
    return lab.boot(bundle, o);
  }

  beforeAll(async () => {
    lab = await TpmLab.create({ transport });
    oemPem = await readFile(lab.oemPolicyPub, 'utf8');
    oemKeyPem = await readFile(lab.oemPolicyKey, 'utf8');
    record = (await provisionTpm(await lab.deps(), { oemPolicyKeyPem: oemPem })).record;
    salt = { handle: record.srk.handle, name: fromHex(record.srk.name) };
    password = fromHex((await readFile(join(lab.dataDir, DATA.storagePassword), 'utf8')).trim());
    bundles.v1 = await lab.bundle(1);
    policies[1] = await createSignedPolicy({ bundlePath: bundles.v1, keyring: lab.bundleCert, policyKeyPem: oemKeyPem });
    await lab.boot(bundles.v1, { policy: policies[1] });
    record = (await provisionTpm(await lab.deps(), { oemPolicyKeyPem: oemPem })).record; // OEM provisioning key
    await writeExport(lab.exportDir, backendExport(record));
    const contract = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    contractPub = contract.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const blob = await wrapContractKey({ contractKeyPem: contract.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, deviceExportDir: lab.exportDir });
    const keys = await keyService();
    const imported = await keys.importContractKey(blob);
    contractCtx = `contract-${imported.id}`;
    contractBlob = { public: new Uint8Array(await readFile(join(lab.dataDir, DATA.contractKey(imported.id, 'pub')))), private: new Uint8Array(await readFile(join(lab.dataDir, DATA.contractKey(imported.id, 'priv')))) };
    // Pitfall material: keys protected only INDIRECTLY by the storage key (userWithAuth, no policy), and with stClear
    ind = await keys.createUnderStorageKey({ alg: 'ecc256', scheme: 'ecdsa-sha256', attributes: 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign' });
    indst = await keys.createUnderStorageKey({ alg: 'ecc256', scheme: 'ecdsa-sha256', attributes: 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign|stclear' });
    await keys.close();
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('offline policy arithmetic equals the TPM (trial sessions, loadexternal, nvreadpublic)', async () => {
    const tpm = await lab.driver();
    expect(toHex(await tpm.externalKeyName(oemPem))).toBe(toHex(externalEccName(oemPem)));
    expect(toHex(await tpm.nvName(record.nvCounter.index))).toBe(record.nvCounter.name);
    const trial = await tpm.startTrialSession();
    const d = await tpm.policy(trial, [{ kind: 'pcr', bank: 'sha256', pcrs: [14], expectedValue: fromHex(policies[1]!.pcrs.value) },
      { kind: 'nv', index: record.nvCounter.index, operandB: u64be(1), operation: 'ule' }]);
    await tpm.flushSession(trial);
    expect(toHex(d!)).toBe(policies[1]!.policy);
  });

  it('import refusals: blob for another vehicle, key without the direct binding, corrupted duplicate', async () => {
    const keys = await keyService();
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const otherPem = other.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const good = await wrapContractKey({ contractKeyPem: otherPem, deviceExportDir: lab.exportDir });
    await refused(keys.importContractKey({ ...good, storageKeyName: `000b${'11'.repeat(32)}` }), 'KEYS_WRONG_VEHICLE');
    // an MO that forgot the policy: the key would only be bound indirectly (TPM.md §1) — refused before the TPM
    const { wrapForImport, encodeImportBlob, objectName } = await import('../../firmware/keys/duplicate.ts');
    const { privateScalarOf } = await import('../../firmware/keys/duplicate.ts');
    const storagePub = fromHex(record.storageKey.public);
    const unbound = encodeImportBlob(wrapForImport(privateScalarOf(otherPem), { storageKeyPublic: storagePub, authPolicy: new Uint8Array(0) }), objectName(storagePub));
    await refused(keys.importContractKey(unbound), 'KEYS_BLOB_MALFORMED');
    // a duplicate whose outer HMAC does not match: the TPM's integrity check refuses it
    const dup = Buffer.from(good.duplicate, 'base64');
    dup[dup.length - 1] = dup[dup.length - 1]! ^ 0x01;
    await refused(keys.importContractKey({ ...good, duplicate: dup.toString('base64') }), 'TPM_BLOB_INTEGRITY', '0x3DF'); // TPM_RC_INTEGRITY, parameter 3
    await keys.close();
  });

  it('N00 NV counter read before its first increment → TPM_NV_UNINITIALIZED 0x14A', async () => {
    const tpm = await lab.driver();
    await tpm.nvDefineCounter(0x01800103); // 0x01800102 is the store's version counter (store-counter.ts)
    await refused(tpm.nvReadCounter(0x01800103), 'TPM_NV_UNINITIALIZED', '0x14A');
  });

  it('N01 wrong storage-key password (valid policy) → TPM_AUTH_FAIL 0x98E, DA counter +1', async () => {
    const tpm = await lab.driver();
    const before = await tpm.lockoutCounter();
    const passFile = join(lab.dataDir, DATA.storagePassword);
    const good = await readFile(passFile);
    await writeFile(passFile, `00${good.toString('utf8').trim()}\n`);
    try {
      await refused((await keyService()).signWithProvisioningKey(digest), 'TPM_AUTH_FAIL', '0x98E');
    } finally {
      await writeFile(passFile, good, { mode: 0o600 });
    }
    expect(await tpm.lockoutCounter()).toBe(before + 1);
    await tpm.resetDictionaryLockout();
    expect(await tpm.lockoutCounter()).toBe(0);
  });

  it('repeated wrong passwords lock the storage key out → TPM_LOCKOUT 0x921; policy failures do not count', async () => {
    const tpm = await lab.driver();
    const [pcr, nv] = await state(1);
    const s0 = await tpm.startPolicySession(salt);
    await tpm.policy(s0, [pcr!, nv!, { kind: 'authValue' }]);
    await refused(tpm.load(STK, storageAuth(s0), contractBlob, 'n03'), 'TPM_POLICY_FAIL', '0x99D');
    expect(await tpm.lockoutCounter()).toBe(0);
    const wrong = Uint8Array.from(password, (b) => b ^ 0xff);
    for (let i = 0; i < 3; i++) { // swtpm: max 3 failures
      const s = await tpm.startPolicySession(salt);
      await tpm.policy(s, [...(await state(1)), { kind: 'authValue' }]);
      await refused(tpm.load(STK, { kind: 'policy', session: s, secret: wrong }, contractBlob, 'lockout'), 'TPM_AUTH_FAIL', '0x98E');
    }
    const s = await tpm.startPolicySession(salt);
    await tpm.policy(s, [...(await state(1)), { kind: 'authValue' }]);
    await refused(tpm.load(STK, storageAuth(s), contractBlob, 'lockout'), 'TPM_LOCKOUT', '0x921'); // even the right password now
    await tpm.resetDictionaryLockout(); // lab: empty lockout auth (TPM.md §8: set one on the device)
    expect(await tpm.lockoutCounter()).toBe(0);
  });

  it('N02 correct password without a policy session → TPM_AUTH_UNAVAILABLE 0x12F (userWithAuth clear)', async () => {
    const tpm = await lab.driver();
    await refused(tpm.load(STK, { kind: 'password', secret: password }, contractBlob, 'n02'), 'TPM_AUTH_UNAVAILABLE', '0x12F');
  });

  it('N03 PCR + NV + AuthValue without the OEM authorisation → TPM_POLICY_FAIL 0x99D', async () => {
    const tpm = await lab.driver();
    const s = await tpm.startPolicySession(salt);
    const [pcr, nv] = await state(1);
    await tpm.policy(s, [pcr!, nv!, { kind: 'authValue' }]);
    await refused(tpm.load(STK, storageAuth(s), contractBlob, 'n03'), 'TPM_POLICY_FAIL', '0x99D');
  });

  let attPolicy: Uint8Array;
  let attTbs: Uint8Array;
  let attSig: Uint8Array;
  it('N04 forged signature presented as OEM-signed → POLICY_SIGNATURE_INVALID (product) and TPM_SIGNATURE_INVALID 0x2DB (TPM)', async () => {
    const tpm = await lab.driver();
    attPolicy = policyPcr(ZERO_DIGEST, [14], [await tpm.pcrRead('sha256', 14)]);
    attTbs = new Uint8Array(Buffer.concat([attPolicy, fromHex(record.policyRef)]));
    attSig = new Uint8Array(cryptoSign('sha256', attTbs, attacker.privateKey));
    const forged = { ...policies[1]!, signature: Buffer.from(cryptoSign('sha256', Buffer.concat([fromHex(policies[1]!.policy), fromHex(record.policyRef)]), attacker.privateKey)).toString('base64') };
    await refused(installReleasePolicy(await lab.deps(), forged, undefined), 'POLICY_SIGNATURE_INVALID');
    await refused(tpm.verifySignature(oemPem, attTbs, attSig), 'TPM_SIGNATURE_INVALID', '0x2DB');
  });

  it('N05 state policy correctly signed by a non-OEM key → POLICY_FOREIGN_KEY (product) and TPM_POLICY_FAIL 0x99D (TPM)', async () => {
    const foreign = await createSignedPolicy({ bundlePath: bundles.v1!, keyring: lab.bundleCert, policyKeyPem: attacker.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string });
    await refused(installReleasePolicy(await lab.deps(), foreign, undefined), 'POLICY_FOREIGN_KEY');
    const tpm = await lab.driver();
    const { keyName, ticket } = await tpm.verifySignature(attPub, attTbs, attSig); // PolicyAuthorize itself passes
    const s = await tpm.startPolicySession(salt);
    await tpm.policy(s, [{ kind: 'pcr', bank: 'sha256', pcrs: [14] }, { kind: 'authorize', approvedPolicy: attPolicy, policyRef: fromHex(record.policyRef), keyName, ticket }, { kind: 'authValue' }]);
    await refused(tpm.load(STK, storageAuth(s), contractBlob, 'n05'), 'TPM_POLICY_FAIL', '0x99D');
  });

  it('N06 attacker ticket presented under the OEM key name → TPM_TICKET_INVALID 0x4C4', async () => {
    const tpm = await lab.driver();
    const { ticket } = await tpm.verifySignature(attPub, attTbs, attSig);
    const s = await tpm.startPolicySession(salt);
    await tpm.policy(s, [{ kind: 'pcr', bank: 'sha256', pcrs: [14] }]);
    await refused(tpm.policy(s, [{ kind: 'authorize', approvedPolicy: attPolicy, policyRef: fromHex(record.policyRef), keyName: fromHex(record.oemPolicyKey.name), ticket }]),
      'TPM_TICKET_INVALID', '0x4C4');
  });

  it('N07 contract key loaded legitimately, then used without a policy session → TPM_AUTH_UNAVAILABLE 0x12F', async () => {
    const keys = await keyService();
    await keys.arm(); // loads and caches the contract key context in the run dir
    await keys.close();
    const tpm = await lab.driver();
    await refused(tpm.sign({ context: contractCtx }, { kind: 'empty' }, digest), 'TPM_AUTH_UNAVAILABLE', '0x12F');
  });

  it('N08/N09 storage key used for ECDH_ZGen / signing with full valid auth → TPM_KEY_ATTRIBUTES 0x182 / TPM_KEY_USE 0x19C', async () => {
    const tpm = await lab.driver();
    const { ephemeralPublic } = await tpm.ecdhKeyGen(STK); // public-key operation: allowed
    let s = await tpm.startPolicySession(salt);
    await tpm.policy(s, [...(await state(1)), { kind: 'authValue' }]);
    await refused(tpm.ecdhZGen(STK, storageAuth(s), ephemeralPublic), 'TPM_KEY_ATTRIBUTES', '0x182');
    s = await tpm.startPolicySession(salt);
    await tpm.policy(s, [...(await state(1)), { kind: 'authValue' }]);
    await refused(tpm.sign(STK, storageAuth(s), digest), 'TPM_KEY_USE', '0x19C');
  });

  it('N10 RSA restricted storage key used for RSA_Decrypt → TPM_KEY_ATTRIBUTES 0x182', async () => {
    const tpm = await lab.driver();
    const pw = new TextEncoder().encode('rsapw');
    const rsa = await tpm.create(SRK, { kind: 'empty' }, { alg: 'rsa2048', scheme: 'null:aes128cfb', attributes: 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt', authValue: pw });
    const ref = await tpm.load(SRK, { kind: 'empty' }, rsa, 'n10-rsa');
    const ct = await tpm.rsaEncrypt(ref, new TextEncoder().encode('session key'));
    await refused(tpm.rsaDecrypt(ref, { kind: 'password', secret: pw }, ct), 'TPM_KEY_ATTRIBUTES', '0x182');
  });

  it('N11 PolicyNV operator direction: versions 1, 2 pass with counter 1; version 0 → TPM_POLICY_ROLLBACK 0x126', async () => {
    const tpm = await lab.driver();
    for (const v of [1, 2]) {
      const s = await tpm.startPolicySession();
      await tpm.policy(s, [{ kind: 'nv', index: record.nvCounter.index, operandB: u64be(v), operation: 'ule' }]);
      await tpm.flushSession(s);
    }
    const s = await tpm.startPolicySession();
    await refused(tpm.policy(s, [{ kind: 'nv', index: record.nvCounter.index, operandB: u64be(0), operation: 'ule' }]), 'TPM_POLICY_ROLLBACK', '0x126');
  });

  it('N21 pre-armed session: one tpm2-tools process on the critical path; PCR changed after arming → TPM_PCR_CHANGED 0x128', async () => {
    const keys = await keyService();
    await keys.arm();
    const raw = await keys.signWithContractKey(digest);
    expect((await keys.status()).lastSignCriticalPathProcesses).toBe(1);
    const message = new TextEncoder().encode('challenge message');
    const raw2 = await keys.signWithContractKey(sha256(message)); // re-armed after use: again a single process
    expect((await keys.status()).lastSignCriticalPathProcesses).toBe(1);
    expect(cryptoVerify('sha256', message, { key: contractPub, dsaEncoding: 'ieee-p1363' }, raw2)).toBe(true);
    expect(raw.length).toBe(64);
    await keys.arm();
    await (await lab.driver()).pcrExtend('sha256', 14, new Uint8Array(randomBytes(32))); // state changes after arming
    await refused(keys.signWithContractKey(digest), 'TPM_PCR_CHANGED', '0x128');
    await keys.close();
  });

  it('N12–N14 tampered root file system after a normal reboot (TPM Reset)', async () => {
    // contexts an attacker saved in the good boot (outside the run dir)
    await lab.reboot('orderly');
    await boot(bundles.v1!);
    const attacker1 = await lab.driver(join(lab.base, 'attacker'));
    const s = await attacker1.startPolicySession(salt);
    await attacker1.policy(s, [...(await state(1)), { kind: 'authValue' }]);
    await attacker1.load(STK, storageAuth(s), ind, 'cached-ind');
    await attacker1.flushSession(s);

    await lab.reboot('orderly');
    // slot A's root file system changed by one byte: the initramfs measures what is there, the check names it
    await refused(boot(bundles.v1!, { tamperedSlot: true }), 'BOOT_ROOTFS_MISMATCH');
    const bytes = new Uint8Array(await readFile(lab.slotFile));
    const tpm = await lab.driver();
    const pcr = await tpm.pcrRead('sha256', 14);
    expect(toHex(pcr)).toBe(toHex(pcrAfterExtend(sha256(bytes))));
    expect(toHex(pcr)).not.toBe(policies[1]!.pcrs.value);
    await claimBooted(1); // a tampered runtime replaying the genuine v1 policy
    await refused((await keyService()).signWithContractKey(digest), 'TPM_POLICY_NOT_APPROVED', '0x1C4'); // N12
    const s2 = await tpm.startPolicySession(salt);
    await refused(tpm.policy(s2, [{ kind: 'pcr', bank: 'sha256', pcrs: [14], expectedValue: fromHex(policies[1]!.pcrs.value) }]), 'TPM_POLICY_PCR', '0x1C4'); // N13
    const attacker2 = await lab.driver(join(lab.base, 'attacker'));
    await refused(attacker2.sign({ context: 'cached-ind' }, { kind: 'empty' }, digest), 'TPM_CONTEXT_INVALID', '0x1DF'); // N14
  });

  it('a stale cached contract-key context (TPM Reset, run dir survived) is reloaded under the state policy', async () => {
    await lab.reboot('orderly');
    await boot(bundles.v1!);
    const keys = await keyService();
    await keys.arm(); // context cached in the run dir
    await keys.close();
    await lab.reboot('orderly', { keepRunDir: true });
    await boot(bundles.v1!);
    const ctxFile = join(lab.runDir, 'tpm', 'ctx', `${contractCtx}.ctx`);
    const stale = await readFile(ctxFile);
    const fresh = await keyService();
    const message = new TextEncoder().encode('after a reset with a stale context');
    const raw = await fresh.signWithContractKey(sha256(message)); // sign refused with 0x1DF inside, reloaded, signed
    expect(cryptoVerify('sha256', message, { key: contractPub, dsaEncoding: 'ieee-p1363' }, raw)).toBe(true);
    expect((await fresh.status()).lastSignCriticalPathProcesses).toBeGreaterThan(5); // arm (5) + refused sign + flush + reload
    expect(Buffer.compare(await readFile(ctxFile), stale)).not.toBe(0); // the context was saved anew
    await fresh.close();
  });

  it('N15–N17 and the PITFALL demo: attacker-forced TPM Restart (Shutdown STATE) into tampered firmware', async () => {
    await lab.reboot('orderly');
    await boot(bundles.v1!);
    const keys = await keyService();
    await keys.arm(); // the product caches the contract-key context in the run dir (good state)
    await keys.close();
    const att = await lab.driver(join(lab.base, 'attacker'));
    const s = await att.startPolicySession(salt);
    await att.policy(s, [...(await state(1)), { kind: 'authValue' }]);
    await att.load(STK, storageAuth(s), ind, 'cached-ind');
    await att.policy(s, [...(await state(1)), { kind: 'authValue' }]);
    await att.load(STK, storageAuth(s), indst, 'cached-indst');
    await att.flushSession(s);

    await lab.reboot('state', { keepRunDir: true }); // Shutdown(STATE) + Startup(CLEAR): PCRs reset, contexts survive
    await refused(boot(bundles.v1!, { tamperedSlot: true }), 'BOOT_ROOTFS_MISMATCH');
    await claimBooted(1);
    const tpm = await lab.driver();
    expect(toHex(await tpm.pcrRead('sha256', 14))).not.toBe(policies[1]!.pcrs.value);
    await refused(tpm.sign({ context: contractCtx }, { kind: 'empty' }, digest), 'TPM_AUTH_UNAVAILABLE', '0x12F'); // N15
    await refused((await keyService()).signWithContractKey(digest), 'TPM_POLICY_NOT_APPROVED', '0x1C4'); // N16: cached ctx, policy replayed
    const att2 = await lab.driver(join(lab.base, 'attacker'));
    await refused(att2.sign({ context: 'cached-indst' }, { kind: 'empty' }, digest), 'TPM_CONTEXT_INVALID', '0x1DF'); // N17
    // PITFALL (expected to succeed): the indirect-only key's context from the good boot still signs in the tampered state
    const der = await att2.sign({ context: 'cached-ind' }, { kind: 'empty' }, sha256('attacker message'));
    const indPem = eccPublicPem(parseEccPublic(ind.public));
    expect(cryptoVerify('sha256', Buffer.from('attacker message'), createPublicKey(indPem), der)).toBe(true);
  });

  it('DA: power loss after using the DA-protected storage key raises the lockout counter; orderly shutdown does not', async () => {
    await lab.reboot('orderly');
    await boot(bundles.v1!);
    const tpm = await lab.driver();
    const before = await tpm.lockoutCounter();
    const keys = await keyService();
    await keys.signWithContractKey(digest); // loads the contract key through the storage key
    await keys.close();
    await lab.reboot('powerloss');
    const t2 = await lab.driver();
    expect(await t2.lockoutCounter()).toBe(before + 1);
    await t2.resetDictionaryLockout();
    await boot(bundles.v1!);
    const keys2 = await keyService();
    await keys2.signWithContractKey(digest);
    await keys2.close();
    await lab.reboot('orderly');
    expect(await (await lab.driver()).lockoutCounter()).toBe(0);
  });

  it('N18–N20 after OTA to v2 and commit: old policy, genuine v1 rollback, v2 policy on v1 firmware', async () => {
    bundles.v2 = await lab.bundle(2);
    policies[2] = await createSignedPolicy({ bundlePath: bundles.v2, keyring: lab.bundleCert, policyKeyPem: oemKeyPem });
    await boot(bundles.v1!);
    await installReleasePolicy(await lab.deps(), policies[2], undefined); // ticket while still on v1
    await lab.reboot('orderly');
    await boot(bundles.v2);
    const keys = await keyService();
    const message = new TextEncoder().encode('after OTA');
    expect(cryptoVerify('sha256', message, { key: contractPub, dsaEncoding: 'ieee-p1363' }, await keys.signWithContractKey(sha256(message)))).toBe(true);
    expect(await commitRelease({ ...(await lab.deps()), keys })).toMatchObject({ version: 2, from: '1', to: '2' });
    await keys.close();

    const tpm = await lab.driver();
    const s = await tpm.startPolicySession(salt);
    await tpm.policy(s, [{ kind: 'pcr', bank: 'sha256', pcrs: [14] }]);
    await refused(tpm.policy(s, [(await state(1))[1]!]), 'TPM_POLICY_ROLLBACK', '0x126'); // N18

    await lab.reboot('orderly');
    await refused(boot(bundles.v1!), 'BOOT_ROLLBACK'); // the product refuses; the initramfs measured the genuine v1 rootfs
    expect(toHex(await (await lab.driver()).pcrRead('sha256', 14))).toBe(policies[1]!.pcrs.value);
    await claimBooted(1); // old v1 firmware that does not know about the counter
    await refused((await keyService()).signWithContractKey(digest), 'TPM_POLICY_ROLLBACK', '0x126'); // N19
    await claimBooted(2);
    await refused((await keyService()).signWithContractKey(digest), 'TPM_POLICY_NOT_APPROVED', '0x1C4'); // N20

    await lab.reboot('orderly');
    // a signed policy of another release is refused before the TPM sees it
    await refused(lab.boot(bundles.v2, { policy: policies[1] }), 'BOOT_POLICY_MISMATCH');
    // same boot: the hook measured once, the check is repeatable
    expect(await boot(bundles.v2)).toMatchObject({ measurement: { by: 'initramfs', events: 1 }, ticket: 'cached', version: 2 });
    const back = await keyService();
    expect(cryptoVerify('sha256', message, { key: contractPub, dsaEncoding: 'ieee-p1363' }, await back.signWithContractKey(sha256(message)))).toBe(true);
    await back.close(); // flushes its armed session (swtpm has 3 session slots)
  });

  it('the contract key is an xmldsig Signer: a signed AuthorizationReq verifies with its public key', async () => {
    const { sign, verifyDetached } = await import('../../firmware/exi/xmldsig/index.ts');
    const keys = await keyService();
    const body = { AuthorizationReq: { Id: 'id1', GenChallenge: randomBytes(16).toString('hex') } };
    const signature = await sign([body], keys.contractKeySigner());
    expect(verifyDetached(signature, body, createPublicKey(contractPub))).toMatchObject({ references: ['id1'], signatureFormat: 'raw' });
    await keys.close();
  });

  it('nothing is left in the TPM after refusals and uses (no resource manager: the driver flushes, also on failure)', async () => {
    const keys = await keyService();
    await keys.signWithContractKey(digest);
    await keys.status(); // its background re-arm must be done before the state changes (else it is refused and its failure flush hits the next service's session: 0x910)
    await claimBooted(1);
    await refused((await keyService()).signWithContractKey(digest), 'TPM_POLICY_ROLLBACK', '0x126');
    await keys.close();
    const t = await lab.driver();
    expect(await t.handles('transient')).toEqual([]);
    expect(await t.handles('loaded-session')).toEqual([]);
    expect(await t.handles('saved-session')).toEqual([]);
    expect((await t.handles('persistent')).sort()).toEqual([0x81000001, 0x81000101]);
    // a crashed runtime leaves its armed session in a TPM slot; the next runtime reclaims it at start-up
    await claimBooted(2);
    const crashed = await keyService();
    await crashed.signWithContractKey(digest);
    await crashed.status(); // re-armed: its session now sits in the TPM
    expect((await t.handles('saved-session')).length + (await t.handles('loaded-session')).length).toBe(1);
    const next = await KeyService.open(await lab.deps(), { reclaim: true });
    expect((await t.handles('saved-session')).length + (await t.handles('loaded-session')).length).toBe(0);
    expect((await next.signWithContractKey(digest)).length).toBe(64);
    await next.close();
  });
});

