import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { BootState, jsonBytes, parseJson } from '../../firmware/keys/layout.ts';
import { unsealRuntimeSecret } from '../../firmware/keys/runtime-secret.ts';
import { reencryptLinkKey } from '../../firmware/keys/link-key.ts';
import { openVehicleTrust } from '../../firmware/keys/vehicle-trust.ts';
import type { SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import { vehicleTopics } from '../../firmware/ota/constants.ts';
import { openTrust } from '../../firmware/vehicle/trust.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { OEM_BACKEND_USER, startMosquitto, type MosquittoBroker } from '../support/mosquitto.ts';
import { until } from '../support/until.ts';
import { backendFor, linkKeyFor, registerAtProduction, releaseClaim, spyClient, startVehicle, type AttestedVehicle } from './ota-attest-rig.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * Issue #10 Must show 6 — an OEM link that survives a failed measurement. The link key's passphrase comes from the
 * state-independent link secret (firmware/keys/link-credential.ts), so a vehicle booted with a tampered root file
 * system (measured boot check failed: BOOT_ROOTFS_MISMATCH) still opens its mTLS link to the real mosquitto with the
 * same encrypted key as in the good boot, publishes its retained state as degraded, and answers the attestation
 * challenge — the backend records tampered — while the contract key stays locked: the TPM itself refuses the
 * signature (and the state-bound runtime secret) even to a runtime that forges the good boot record.
 */
const T = 120_000;
const VID = 'degraded-ev-1';

describeWith([tool('swtpm'), tool('tpm2_quote'), tool('mosquitto'), tool('rauc'), tool('openssl')])('a degraded vehicle keeps its OEM link (swtpm + mosquitto)', () => {
  let lab: TpmLab;
  let broker: MosquittoBroker;
  let backend: Awaited<ReturnType<typeof backendFor>>;
  let vehicle: AttestedVehicle | undefined;
  let v1: string;
  let policy: SignedPolicy;
  let linkKey: string;
  let goodPassphrase: string;
  let contractPub: string;

  const deps = async () => ({ data: await FsStore.open(lab.dataDir), run: await FsStore.open(lab.runDir), log: () => silentLogger(), openTpm: () => lab.driver() });
  const bootRecord = async (run: FsStore) => parseJson(BootState, await run.read('boot.json'), 'boot state', 'KEYS_NOT_BOOTED');

  beforeAll(async () => {
    lab = await TpmLab.create();
    await lab.bootedVehicle();
    v1 = join(lab.oemDir, 'v1.raucb');
    broker = await startMosquitto();
    backend = await backendFor(broker, { ttlMs: 20_000 });
    policy = await registerAtProduction(backend.registry, lab, VID);

    // good boot: a contract key (compat import), and the link key made under the passphrase the trust gives
    const keys = await KeyService.open(await lab.deps());
    const contract = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    contractPub = contract.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await keys.importPlaintextContractKey(new TextEncoder().encode(contract.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()));
    const digest = new Uint8Array(32).fill(5);
    const sig = await keys.signWithContractKey(digest);
    expect(sig.length).toBeGreaterThan(60);
    await keys.close();
    const d = await deps();
    const good = await openTrust({ ...d, bootState: () => bootRecord(d.run) }, { reclaim: false, armContractKey: true });
    expect(good.readiness.ready).toBe(true);
    goodPassphrase = good.linkKeyPassphrase!;
    await good.close();
    linkKey = await linkKeyFor(broker, VID, goodPassphrase);
  }, T);
  afterAll(async () => {
    await vehicle?.close().catch(() => undefined);
    await backend?.close().catch(() => undefined);
    await broker?.stop().catch(() => undefined);
    await lab?.close();
  });

  it('a link key from before the link secret (state-bound passphrase): evcc pki link-key rewrap re-encrypts it in place', async () => {
    const keys = await KeyService.open(await lab.deps());
    let stateBound: string;
    try {
      const t = await openVehicleTrust({ keys, data: await FsStore.open(lab.dataDir), log: silentLogger() });
      stateBound = t.stateBoundLinkKeyPassphrase;
      expect(t.linkKeyPassphrase).toBe(goodPassphrase);
    } finally {
      await keys.close();
    }
    expect(stateBound).not.toBe(goodPassphrase);
    const file = join(lab.base, 'legacy-link.key.pem');
    await writeFile(file, reencryptLinkKey(String((await broker.identity(VID)).key), { passphrase: stateBound }), { mode: 0o600 });
    const r = await lab.cli(['pki', 'link-key', 'rewrap', file], { tpm: true });
    expect(r.exitCode, r.stderr).toBe(0);
    const pem = await readFile(file, 'utf8');
    expect(pem).toMatch(/BEGIN ENCRYPTED PRIVATE KEY/);
    expect(createPrivateKey({ key: pem, passphrase: goodPassphrase }).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(() => createPrivateKey({ key: pem, passphrase: stateBound })).toThrow();
    // neither passphrase is anywhere at rest: only the TPM-wrapped link secret and the encrypted key
    for (const root of [lab.dataDir, lab.runDir]) {
      for (const f of await readdir(root, { recursive: true, withFileTypes: true })) {
        if (!f.isFile()) continue;
        const text = (await readFile(join(f.parentPath, f.name))).toString('latin1');
        expect(text.includes(goodPassphrase) || text.includes(stateBound), join(f.parentPath, f.name)).toBe(false);
      }
    }
  }, T);

  it('tampered root file system: measured boot fails, yet the link opens, the state says degraded, attestation answers (tampered); the contract key stays locked', async () => {
    await lab.reboot('orderly');
    await expect(lab.boot(v1, { tamperedSlot: true })).rejects.toMatchObject({ code: 'BOOT_ROOTFS_MISMATCH' });

    const spy = await spyClient(broker, OEM_BACKEND_USER, [vehicleTopics(VID).state]);
    try {
      const from = backend.records.length;
      vehicle = await startVehicle(lab, broker, { vehicleId: VID, encryptedKeyPem: linkKey, claim: () => releaseClaim(lab, v1, 'BOOT_ROOTFS_MISMATCH') });
      // the trust is degraded (no approved boot), but the link credential is the good boot's
      expect(vehicle.trust.readiness).toMatchObject({ ready: false, code: 'KEYS_NOT_BOOTED' });
      expect(vehicle.trust.linkKeyPassphrase).toBe(goodPassphrase);
      expect(await vehicle.link.waitConnected(20_000)).toBe(true);
      await until(() => spy.messages.some((m) => JSON.parse(Buffer.from(m.payload).toString('utf8')).state === 'online'), 15_000, 'retained state online');
      const state = JSON.parse(Buffer.from(spy.messages.find((m) => JSON.parse(Buffer.from(m.payload).toString('utf8')).state === 'online')!.payload).toString('utf8'));
      expect(state).toEqual({ state: 'online', mode: 'eim-only', degraded: { code: 'KEYS_NOT_BOOTED' } });

      const s = await backend.next(VID, from);
      expect(s).toMatchObject({ state: 'tampered', reason: { code: 'ATTEST_ROOTFS_NOT_RELEASED' }, claim: { version: 1, mode: 'degraded', reason: 'BOOT_ROOTFS_MISMATCH' } });
      expect(s.pcr14).not.toBe(policy.pcrs.value);
      expect(vehicle.responder.answered).toBe(1);
    } finally {
      await spy.client.close();
    }

    // the keys bound to the signed state: refused by the TPM even to a runtime that forges the good boot record
    const forged: BootState = { format: 'evcc-boot-state/1', version: 1, bundleSha256: policy.bundle.sha256, rootfsSha256: policy.rootfs.sha256, pcrValue: policy.pcrs.value, bootedAt: new Date().toISOString() };
    await writeFile(join(lab.runDir, 'boot.json'), jsonBytes(forged));
    const keys = await KeyService.open(await lab.deps());
    try {
      await expect(keys.signWithContractKey(new Uint8Array(32))).rejects.toMatchObject({ code: 'TPM_POLICY_NOT_APPROVED', details: { rc: '0x1C4' } });
      // …and so is the state-bound runtime secret the link passphrase used to come from
      await expect(unsealRuntimeSecret({ keys, data: await FsStore.open(lab.dataDir), log: silentLogger() })).rejects.toMatchObject({ code: 'TPM_POLICY_NOT_APPROVED' });
    } finally {
      await keys.close();
    }
  }, T);

  it('back on the signed release: trusted again, the contract key signs, the link credential unchanged', async () => {
    await vehicle?.close();
    vehicle = undefined;
    await lab.reboot('orderly');
    await lab.boot(v1);
    const from = backend.records.length;
    vehicle = await startVehicle(lab, broker, { vehicleId: VID, encryptedKeyPem: linkKey, claim: () => releaseClaim(lab, v1) });
    expect(vehicle.trust.linkKeyPassphrase).toBe(goodPassphrase);
    expect(await backend.next(VID, from)).toMatchObject({ state: 'trusted', version: 1, claim: { mode: 'approved' } });
    const keys = await KeyService.open(await lab.deps());
    try {
      const digest = new Uint8Array(32).fill(9);
      const der = await keys.signWithContractKey(digest);
      expect(der.length).toBeGreaterThan(60);
    } finally {
      await keys.close();
    }
  }, T);
});
