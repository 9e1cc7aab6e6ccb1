import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { KeyService, statePolicySteps } from '../../firmware/keys/key-service.ts';
import { fromHex } from '../../firmware/keys/policy.ts';
import { DATA, jsonBytes, type BootState } from '../../firmware/keys/layout.ts';
import { provisionTpm } from '../../firmware/keys/provision.ts';
import { RUNTIME_SECRET_PURPOSES, TpmSealedIntegrity, unsealRuntimeSecret } from '../../firmware/keys/runtime-secret.ts';
import { BACKEND_KEY_TAG_PATH, openVehicleTrust } from '../../firmware/keys/vehicle-trust.ts';
import type { SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import { BACKEND_KEY_PATH, installBackendKey } from '../../firmware/ota/backend-key.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';
import { commitRelease } from '../../boot/commit.ts';
import { installReleasePolicy } from '../../boot/measured-boot.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { TPM_TRANSPORTS, TpmLab, transportPrereqs } from './tpm-lab.ts';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { TpmBusTap } from './tpm-secret-bus-tap.ts';
import { filesUnder } from '../support/files.ts';

/**
 * The TPM-sealed runtime secret and the vehicle trust built on it, against a real swtpm, in process (no CLI start-up):
 * provision → release → boot → unseal → store written and verified; tampered state, rollback after commit → the TPM
 * refuses the unseal with its RC and the store cannot be opened (KEYS_TRUST_UNAVAILABLE, PnC refused); the secret
 * and its derived keys never appear in the data or run dir.
 */

async function refused(p: Promise<unknown>): Promise<EvccError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(EvccError);
  return err as EvccError;
}

/** A self-signed V2G-root-like CA (P-256, ecdsa-with-SHA256, CA:TRUE, keyCertSign) made by openssl, DER. */
async function opensslRoot(dir: string, name: string): Promise<Uint8Array> {
  const key = join(dir, `${name}.key.pem`);
  const der = join(dir, `${name}.der`);
  await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-outform', 'DER', '-out', der,
    '-subj', `/CN=${name}/O=Test V2G/DC=V2G`, '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return new Uint8Array(await readFile(der));
}

// Both transports (tpm-lab.ts): direct swtpm TCTI, and tpm2-abrmd in front of it as /dev/tpmrm0 on the device.
for (const transport of TPM_TRANSPORTS) describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl'), ...transportPrereqs(transport)])(`TPM-sealed runtime secret and vehicle trust (swtpm, ${transport})`, () => {
  let lab: TpmLab;
  let oemPem: string;
  let oemKeyPem: string;
  const bundles: Record<number, string> = {};
  const policies: Record<number, SignedPolicy> = {};
  let rootA: Uint8Array;
  let rootB: Uint8Array;

  async function keyService(): Promise<KeyService> {
    return KeyService.open(await lab.deps(), { reclaim: true });
  }
  /** Opens the trust as the runtime does and closes its key service. */
  async function withTrust<T>(fn: (t: Awaited<ReturnType<typeof openVehicleTrust>>) => Promise<T>): Promise<T> {
    const deps = await lab.deps();
    const keys = await KeyService.open(deps, { reclaim: true });
    try {
      return await fn(await openVehicleTrust({ keys, data: deps.data, log: deps.log }));
    } finally {
      await keys.close();
    }
  }
  async function trustRefusal(): Promise<EvccError> {
    return refused(withTrust(async () => undefined));
  }
  /** The run dir's boot state as a tampered or old runtime that skipped the checks would leave it. */
  async function claimBooted(v: number): Promise<void> {
    const p = policies[v]!;
    const s: BootState = { format: 'evcc-boot-state/1', version: v, bundleSha256: p.bundle.sha256, rootfsSha256: p.rootfs.sha256, pcrValue: p.pcrs.value, bootedAt: new Date().toISOString() };
    await writeFile(join(lab.runDir, 'boot.json'), jsonBytes(s));
  }
  async function boot(v: number): Promise<unknown> {
    return lab.boot(bundles[v]!, { policy: policies[v] });
  }

  beforeAll(async () => {
    lab = await TpmLab.create({ transport });
    oemPem = await readFile(lab.oemPolicyPub, 'utf8');
    oemKeyPem = await readFile(lab.oemPolicyKey, 'utf8');
    for (const v of [1, 2]) {
      bundles[v] = await lab.bundle(v);
      policies[v] = await createSignedPolicy({ bundlePath: bundles[v]!, keyring: lab.bundleCert, policyKeyPem: oemKeyPem });
    }
    rootA = await opensslRoot(lab.oemDir, 'V2G Root A');
    rootB = await opensslRoot(lab.oemDir, 'V2G Root B');
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('provision → release → boot → unseal: the store is written and verified with the TPM-derived key', async () => {
    const first = await provisionTpm(await lab.deps(), { oemPolicyKeyPem: oemPem });
    expect(first.created).toEqual(['srk', 'nv-counter', 'storage-key', 'attestation-key', 'link-secret']);
    expect(first.record.runtimeSecret).toBeUndefined(); // pending: the storage key needs the approved state
    expect((await trustRefusal()).details).toMatchObject({ reason: 'KEYS_RUNTIME_SECRET_MISSING' });
    expect((await (await KeyService.open(await lab.deps())).status()).runtimeSecret).toBe('pending');

    await boot(1);
    const second = await provisionTpm(await lab.deps(), { oemPolicyKeyPem: oemPem });
    expect(second.created).toEqual(['oem-provisioning-key', 'runtime-secret', 'store-counter', 'security-log-key']);
    expect(second.record.runtimeSecret?.name).toMatch(/^000b[0-9a-f]{64}$/);
    expect((await provisionTpm(await lab.deps(), { oemPolicyKeyPem: oemPem })).created).toEqual([]); // idempotent
    expect((await (await KeyService.open(await lab.deps())).status()).runtimeSecret).toBe('present');

    const { passphrase, backendKeyId } = await withTrust(async (t) => {
      expect(t.store.rootCount).toBe(0);
      await t.store.installRoot(rootA, { source: 'factory' });
      await t.store.installRoot(rootB, { source: 'factory' });
      const backend = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
      const trust = await t.installBackendKey(backend);
      return { passphrase: t.linkKeyPassphrase, backendKeyId: trust.keyId };
    });
    expect(passphrase).toMatch(/^[0-9a-f]{64}$/);

    // a later start (new key service, new driver): same secret, store verifies, backend key tag verifies
    await withTrust(async (t) => {
      expect(t.store.listRoots().map((r) => r.subject).sort()).toEqual(['CN=V2G Root A, O=Test V2G, DC=V2G', 'CN=V2G Root B, O=Test V2G, DC=V2G'].sort());
      expect(t.store.listRoots().every((r) => r.source === 'factory')).toBe(true);
      expect(t.linkKeyPassphrase).toBe(passphrase);
      expect(t.backendTrust?.keyId).toBe(backendKeyId);
    });

    // the link key: an encrypted PKCS#8 made with the derived passphrase opens with it, and only with it
    const link = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }) as string;
    expect(createPrivateKey({ key: link, passphrase }).asymmetricKeyType).toBe('ec');
    expect(() => createPrivateKey({ key: link, passphrase: passphrase.replace(/^./, (c) => (c === '0' ? '1' : '0')) })).toThrow();

    // the file is tagged under the TPM scheme: a bench env-key guard cannot read it, nor forge it
    const stored = JSON.parse(await readFile(join(lab.dataDir, 'pki/store.json'), 'utf8')) as { scheme: string };
    expect(stored.scheme).toBe(TpmSealedIntegrity.SCHEME);
    const e = await refused(CertificateStore.open(await (await lab.deps()).data, { integrity: new HmacIntegrity(new Uint8Array(32).fill(7)) }));
    expect(e.code).toBe('PKI_STORE_TAMPERED');
  });

  it('an interrupted provisioning (blob written, record not) is completed by adopting the blob; a foreign blob is refused', async () => {
    const recordPath = join(lab.dataDir, DATA.record);
    const good = await readFile(recordPath, 'utf8');
    const rec = JSON.parse(good) as { runtimeSecret?: { name: string } };
    const name = rec.runtimeSecret!.name;
    delete rec.runtimeSecret;
    await writeFile(recordPath, JSON.stringify(rec));
    // (restored by the adoption below; if that fails, the rest of this file fails with it, loudly)
    const pubPath = join(lab.dataDir, DATA.runtimeSecret('pub'));
    const pub = await readFile(pubPath);
    // the OEM provisioning key's public area is no sealed data object: never adopted
    await writeFile(pubPath, await readFile(join(lab.dataDir, DATA.provisioningKey('pub'))));
    try {
      const e = await refused(provisionTpm(await lab.deps(), { oemPolicyKeyPem: oemPem }));
      expect(e.code).toBe('KEYS_PROVISION_CONFLICT');
      expect(e.message).toContain('not a keyedhash object');
    } finally {
      await writeFile(pubPath, pub);
    }
    const r = await provisionTpm(await lab.deps(), { oemPolicyKeyPem: oemPem });
    expect(r.created).toEqual(['runtime-secret']);
    expect(r.record.runtimeSecret?.name).toBe(name); // the same sealed object: the store still verifies
    await withTrust(async (t) => expect(t.store.rootCount).toBe(2));
  });

  it('the secret and its derived keys never appear in the data or run dir (raw, hex, base64)', async () => {
    const deps = await lab.deps();
    const keys = await KeyService.open(deps, { reclaim: true });
    const raw = await keys.unsealWithStatePolicy({
      public: new Uint8Array(await readFile(join(lab.dataDir, DATA.runtimeSecret('pub')))),
      private: new Uint8Array(await readFile(join(lab.dataDir, DATA.runtimeSecret('priv')))),
    }, 'scan-runtime-secret');
    await keys.close();
    expect(raw.length).toBe(32);
    const { hkdfSync } = await import('node:crypto');
    const derived = Object.values(RUNTIME_SECRET_PURPOSES).map((info) => new Uint8Array(hkdfSync('sha256', raw, new Uint8Array(0), info, 32)));
    const needles: { what: string; bytes: Buffer }[] = [];
    for (const [what, b] of [['secret', raw], ...derived.map((d, i) => [`derived ${Object.keys(RUNTIME_SECRET_PURPOSES)[i]}`, d] as const)] as const) {
      const buf = Buffer.from(b);
      needles.push({ what, bytes: buf }, { what: `${what} hex`, bytes: Buffer.from(buf.toString('hex')) }, { what: `${what} HEX`, bytes: Buffer.from(buf.toString('hex').toUpperCase()) },
        { what: `${what} base64`, bytes: Buffer.from(buf.toString('base64').replace(/=+$/, '')) }, { what: `${what} base64url`, bytes: Buffer.from(buf.toString('base64url')) });
    }
    const files = [...(await filesUnder(lab.dataDir)), ...(await filesUnder(lab.runDir))];
    expect(files.some((f) => f.endsWith('keys/runtime-secret.priv'))).toBe(true);
    expect(files.some((f) => f.endsWith('pki/store.json'))).toBe(true);
    expect(files.filter((f) => /runtime-secret.*\.ctx$/.test(f))).toEqual([]); // the loaded context is gone after the unseal
    const findings: string[] = [];
    for (const f of files) {
      const content = await readFile(f);
      for (const n of needles) if (content.includes(n.bytes)) findings.push(`${f}: ${n.what}`);
    }
    expect(findings).toEqual([]);
    // the scanner finds a planted copy
    await writeFile(join(lab.runDir, 'planted'), Buffer.concat([Buffer.from('x'), Buffer.from(raw)]));
    expect((await readFile(join(lab.runDir, 'planted'))).includes(needles[0]!.bytes)).toBe(true);
    raw.fill(0);
  });

  it('on the TPM bus the secret travels only encrypted (salted session: parameter encryption); unsalted it would show', async () => {
    const bus = await TpmBusTap.start(lab.swtpm.port, lab.swtpm.ctrlPort);
    const tpm = await Tpm2Tools.open({ tcti: bus.tcti, runDir: join(lab.base, 'tap-run') });
    try {
      const deps = { ...(await lab.deps()), tpm };
      const keys = await KeyService.open(deps, { reclaim: true });
      const blob = { public: new Uint8Array(await readFile(join(lab.dataDir, DATA.runtimeSecret('pub')))), private: new Uint8Array(await readFile(join(lab.dataDir, DATA.runtimeSecret('priv')))) };
      bus.clear();
      const secret = await keys.unsealWithStatePolicy(blob, 'tap-secret');
      const unsealTraffic = bus.bytes;
      expect(unsealTraffic.length).toBeGreaterThan(1000);
      expect(unsealTraffic.includes(Buffer.from(secret))).toBe(false);
      expect(unsealTraffic.includes(Buffer.from(secret.subarray(0, 8)))).toBe(false);
      // sealing (provisioning) too: the data goes to the TPM inside an encrypted TPM2_Create parameter
      const fresh = new Uint8Array(randomBytes(32));
      bus.clear();
      await keys.sealUnderStorageKey(fresh, fromHex(keys.provisioning.policies.keys));
      expect(bus.bytes.length).toBeGreaterThan(1000);
      expect(bus.bytes.includes(Buffer.from(fresh.subarray(0, 8)))).toBe(false);
      await keys.close();

      // control: the same unseal through an UNSALTED policy session puts the 32 bytes on the bus in clear
      const record = keys.provisioning;
      const steps = statePolicySteps(policies[1]!, new Uint8Array(await readFile(join(lab.dataDir, DATA.release(1, 'ticket.bin')))));
      const password = fromHex((await readFile(join(lab.dataDir, DATA.storagePassword), 'utf8')).trim());
      const salted = await tpm.startPolicySession({ handle: record.srk.handle, name: fromHex(record.srk.name) });
      await tpm.policy(salted, [...steps, { kind: 'authValue' }]);
      const ctx = await tpm.load({ persistent: record.storageKey.handle }, { kind: 'policy', session: salted, secret: password }, blob, 'tap-control');
      await tpm.flushSession(salted);
      const plain = await tpm.startPolicySession();
      await tpm.policy(plain, steps);
      bus.clear();
      expect(Buffer.from(await tpm.unseal(ctx, { kind: 'policy', session: plain })).equals(Buffer.from(secret))).toBe(true);
      expect(bus.bytes.includes(Buffer.from(secret))).toBe(true);
      await tpm.flushSession(plain);
      await tpm.forgetContext('tap-control');
      secret.fill(0);
    } finally {
      await tpm.close();
      await bus.close();
    }
  });

  it('the sealed object is bound to policy A itself: empty auth → 0x12F, PCR+NV without the OEM authorisation → 0x99D', async () => {
    const deps = await lab.deps();
    const tpm = deps.tpm;
    const record = (await KeyService.open(deps)).provisioning;
    const salt = { handle: record.srk.handle, name: fromHex(record.srk.name) };
    const password = fromHex((await readFile(join(lab.dataDir, DATA.storagePassword), 'utf8')).trim());
    const steps = statePolicySteps(policies[1]!, new Uint8Array(await readFile(join(lab.dataDir, DATA.release(1, 'ticket.bin')))));
    const blob = { public: new Uint8Array(await readFile(join(lab.dataDir, DATA.runtimeSecret('pub')))), private: new Uint8Array(await readFile(join(lab.dataDir, DATA.runtimeSecret('priv')))) };
    const s = await tpm.startPolicySession(salt);
    await tpm.policy(s, [...steps, { kind: 'authValue' }]);
    const ctx = await tpm.load({ persistent: record.storageKey.handle }, { kind: 'policy', session: s, secret: password }, blob, 'attacker-secret');
    try {
      // loaded in a good state by someone who knows the storage password: still no unseal without policy A
      const e1 = await refused(tpm.unseal(ctx, { kind: 'empty' }));
      expect({ code: e1.code, rc: e1.details.rc }).toEqual({ code: 'TPM_AUTH_UNAVAILABLE', rc: '0x12F' });
      const s2 = await tpm.startPolicySession(salt);
      await tpm.policy(s2, steps.slice(0, 2));
      const e2 = await refused(tpm.unseal(ctx, { kind: 'policy', session: s2 }));
      expect({ code: e2.code, rc: e2.details.rc }).toEqual({ code: 'TPM_POLICY_FAIL', rc: '0x99D' });
    } finally {
      await tpm.forgetContext('attacker-secret');
      await tpm.flushAll();
    }
  });

  it('tampered store or backend key: refused, never silently trusted', async () => {
    const path = join(lab.dataDir, 'pki/store.json');
    const good = await readFile(path, 'utf8');
    const env = JSON.parse(good) as { body: string };
    // an attacker with file access adds their root to the body without the key: tag no longer matches
    const body = JSON.parse(env.body) as { roots: { der: string }[] };
    body.roots.push({ ...body.roots[0]!, der: Buffer.from(rootB).toString('base64') });
    await writeFile(path, JSON.stringify({ ...env, body: JSON.stringify(body) }));
    const e = await trustRefusal();
    expect(e.code).toBe('KEYS_TRUST_UNAVAILABLE');
    expect(e.details).toMatchObject({ reason: 'PKI_STORE_TAMPERED' });
    await writeFile(path, good);

    // the sealed blob itself corrupted on disk: the TPM's integrity check refuses to load it
    const privPath = join(lab.dataDir, DATA.runtimeSecret('priv'));
    const priv = await readFile(privPath);
    const bad = Buffer.from(priv);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0x01;
    await writeFile(privPath, bad);
    try {
      expect((await trustRefusal()).details).toMatchObject({ reason: 'TPM_BLOB_INTEGRITY', rc: expect.stringMatching(/^0x[0-9A-F]DF$/) });
    } finally {
      await writeFile(privPath, priv, { mode: 0o600 });
    }

    // backend key swapped through the untagged ota path: no longer trusted (the store still opens)
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const goodKey = await readFile(join(lab.dataDir, BACKEND_KEY_PATH));
    await installBackendKey((await lab.deps()).data, attacker);
    await withTrust(async (t) => {
      expect(t.backendTrust).toBeUndefined();
      expect(t.store.rootCount).toBe(2);
    });
    await writeFile(join(lab.dataDir, BACKEND_KEY_PATH), goodKey);
    await withTrust(async (t) => expect(t.backendTrust).toBeDefined());
    expect(await readFile(join(lab.dataDir, BACKEND_KEY_TAG_PATH), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
  });

  it('tampered root file system booted: the TPM refuses the unseal (0x1C4) → the store cannot be opened, PnC refused', async () => {
    await lab.reboot('orderly');
    // the initramfs measured slot A with one byte changed: no approved state for this boot
    const bootErr = await refused(lab.boot(bundles[1]!, { tamperedSlot: true }));
    expect(bootErr.code).toBe('BOOT_ROOTFS_MISMATCH');
    expect((await trustRefusal()).details).toMatchObject({ reason: 'KEYS_NOT_BOOTED' });
    // a tampered runtime that claims the good v1 state anyway: the TPM itself refuses
    await claimBooted(1);
    const keys = await keyService();
    const tpmErr = await refused(unsealRuntimeSecret({ keys, data: (await lab.deps()).data, log: (await lab.deps()).log }));
    await keys.close();
    expect({ code: tpmErr.code, rc: tpmErr.details.rc }).toEqual({ code: 'TPM_POLICY_NOT_APPROVED', rc: '0x1C4' });
    const e = await trustRefusal();
    expect(e.code).toBe('KEYS_TRUST_UNAVAILABLE');
    expect(e.details).toEqual({ reason: 'TPM_POLICY_NOT_APPROVED', rc: '0x1C4' });
    expect(e.message).toContain('PnC refused');
    // and the store file alone is useless without the key
    expect((await refused(CertificateStore.open((await lab.deps()).data, { integrity: new HmacIntegrity(new Uint8Array(32)) }))).code).toBe('PKI_STORE_TAMPERED');
  });

  it('OTA v1 → v2 keeps the secret; after commit a rollback to v1 is refused by the TPM (0x126)', async () => {
    await installReleasePolicy(await lab.deps(), policies[2], 2);
    await lab.reboot('orderly');
    await boot(2);
    await withTrust(async (t) => expect(t.store.rootCount).toBe(2)); // same secret under the new release
    const deps = await lab.deps();
    const keys = await KeyService.open(deps, { reclaim: true });
    try {
      expect(await commitRelease({ ...deps, keys })).toMatchObject({ version: 2, to: '2' });
    } finally {
      await keys.close();
    }
    await lab.reboot('orderly');
    expect((await refused(boot(1))).code).toBe('BOOT_ROLLBACK');
    await claimBooted(1); // old firmware that skips the counter check and replays its genuine v1 policy
    const e = await trustRefusal();
    expect(e.details).toEqual({ reason: 'TPM_POLICY_ROLLBACK', rc: '0x126' });

    await lab.reboot('orderly');
    await boot(2);
    await withTrust(async (t) => expect(t.store.listRoots()).toHaveLength(2));
  });
});
