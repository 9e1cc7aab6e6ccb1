import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { TPM_LAYOUT } from '../../firmware/keys/layout.ts';
import { storeCounterName, TpmStoreCounter } from '../../firmware/keys/store-counter.ts';
import { openVehicleTrust } from '../../firmware/keys/vehicle-trust.ts';
import { parseCert } from '../../firmware/pki/cert.ts';
import { issue, type IssuedCert } from '../../firmware/pki/generate.ts';
import { CertificateStore, storeMarkerPath, type StoreVersionCounter } from '../../firmware/pki/store.ts';
import { fromHex, toHex } from '../../firmware/keys/policy.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * Issue #13 item 4 on swtpm: the certificate store's version is bound to a TPM NV counter that only the OEM-approved
 * state can raise. An older copy of store.json with a valid tag (install B, copy the file, remove B, copy it back)
 * is refused; a write whose counter increment a crash cut off is rolled forward, not refused; deleting the file and
 * its marker is no first boot; the owner cannot raise the counter.
 */
const TIMEOUT = 180_000;

async function refusal(p: Promise<unknown>): Promise<EvccError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(EvccError);
  return err as EvccError;
}

describeWith([tool('swtpm'), tool('tpm2_nvdefine'), tool('rauc'), tool('openssl')])('certificate store rollback (TPM NV version counter, swtpm)', () => {
  let lab: TpmLab;
  let keys: KeyService;
  let data: FsStore;
  let rootA: IssuedCert;
  let rootB: IssuedCert;
  const storeFile = () => join(lab.dataDir, 'pki/store.json');
  const counter = () => TpmStoreCounter.of(keys)!;
  const open = (version: StoreVersionCounter = counter()) => CertificateStore.open(data, { integrity: trustIntegrity, version });
  let trustIntegrity: Awaited<ReturnType<typeof openVehicleTrust>>['integrity'];

  beforeAll(async () => {
    lab = await TpmLab.create();
    const done = await lab.bootedVehicle();
    expect(done.created).toContain('store-counter');
    const deps = await lab.deps();
    data = deps.data;
    keys = await KeyService.open(deps);
    rootA = await issue({ name: 'rb-root-a', role: 'v2g-root', subject: 'CN=Rollback Root A' });
    rootB = await issue({ name: 'rb-root-b', role: 'v2g-root', subject: 'CN=Rollback Root B' });
  }, TIMEOUT);
  afterAll(async () => {
    await keys?.close();
    await lab?.close();
  });

  it('provisioning defines the counter with write policy A, read by anyone, and records it', async () => {
    const spec = keys.provisioning.storeCounter!;
    expect(spec.index).toBe(TPM_LAYOUT.storeCounterIndex);
    expect(spec.name).toBe(toHex(storeCounterName(spec.index, fromHex(keys.provisioning.policies.keys))));
    expect(await counter().read()).toBe(BigInt(spec.initialValue));
  }, TIMEOUT);

  it('install B, copy the file, remove B, copy it back: refused as PKI_STORE_ROLLED_BACK (the old file kept its valid tag)', async () => {
    const trust = await openVehicleTrust({ keys, data, log: silentLogger() });
    trustIntegrity = trust.integrity;
    const c0 = await counter().read();
    await trust.store.installRoot(rootA.der, { source: 'factory' });
    await trust.store.installRoot(rootB.der, { source: 'cli' });
    expect(await counter().read()).toBe(c0 + 2n);
    await copyFile(storeFile(), `${storeFile()}.with-b`);
    expect(await trust.store.removeRoot(parseCert(rootB.der).fingerprint)).toBe(true);
    expect(await counter().read()).toBe(c0 + 3n);
    expect((await open()).listRoots().map((r) => r.subject)).toEqual(['CN=Rollback Root A']);

    await copyFile(`${storeFile()}.with-b`, storeFile());
    const err = await refusal(open());
    expect(err.code).toBe('PKI_STORE_ROLLED_BACK');
    expect(err.details).toMatchObject({ fileVersion: String(c0 + 2n), counterValue: String(c0 + 3n) });
    // The vehicle's trust refuses it the same way (KEYS_TRUST_UNAVAILABLE naming the reason): B is not trusted again.
    const viaTrust = await refusal(openVehicleTrust({ keys, data, log: silentLogger() }));
    expect(viaTrust.code).toBe('KEYS_TRUST_UNAVAILABLE');
    expect(viaTrust.details.reason).toBe('PKI_STORE_ROLLED_BACK');
  }, TIMEOUT);

  it('a crash between the durable write and the increment is rolled forward at the next open, not refused', async () => {
    // The rolled-back file is useless now; the store is lost for good: file and marker gone.
    await rm(storeFile());
    await rm(join(lab.dataDir, storeMarkerPath()));
    const missing = await refusal(open());
    expect(missing.code).toBe('PKI_STORE_MISSING'); // no first boot either: the counter proves stores were written
    expect(missing.message).toMatch(/version counter/);

    const real = counter();
    const crashing: StoreVersionCounter = { id: real.id, initial: real.initial, read: () => real.read(), increment: () => Promise.reject(new Error('power cut')) };
    // Recovery of a lost store is a deliberate start over, bound to the counter's current value.
    const value = await real.read();
    const fresh = await CertificateStore.open(data, { integrity: trustIntegrity, version: crashing, startOver: true });
    await expect(fresh.installRoot(rootA.der, { source: 'factory' })).rejects.toThrow('power cut');
    expect(await real.read()).toBe(value); // file written with value + 1, counter not raised

    const reopened = await open();
    expect(reopened.listRoots().map((r) => r.subject)).toEqual(['CN=Rollback Root A']);
    expect(await real.read()).toBe(value + 1n);
    // And the next write goes on from there.
    await reopened.installRoot(rootB.der, { source: 'cli' });
    expect(await real.read()).toBe(value + 2n);
    expect((await open()).rootCount).toBe(2);
  }, TIMEOUT);

  it('a second writer that opened the store earlier gets PKI_STORE_CONFLICT instead of writing an older version', async () => {
    const first = await open();
    const second = await open();
    await first.removeRoot(parseCert(rootB.der).fingerprint);
    const err = await refusal(second.removeRoot(parseCert(rootA.der).fingerprint));
    expect(err.code).toBe('PKI_STORE_CONFLICT');
    expect((await open()).listRoots().map((r) => r.subject)).toEqual(['CN=Rollback Root A']);
  }, TIMEOUT);

  it('the owner cannot raise the counter (policy write only): no denial of service by owner authorisation', async () => {
    const tpm = await lab.driver();
    const before = await counter().read();
    const err = await refusal(tpm.nvIncrement(TPM_LAYOUT.storeCounterIndex));
    expect(err.code).toMatch(/^TPM_/);
    expect(await counter().read()).toBe(before);
  }, TIMEOUT);
});
