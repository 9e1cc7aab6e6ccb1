import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../hal/store/fs-store.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { generateTestPki, type TestPki } from './generate.ts';
import { CertificateStore, HmacIntegrity } from './store.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await generateTestPki();
});
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const key = randomBytes(32);

describe('CertificateStore', () => {
  it('installs, lists, persists and removes roots; install is idempotent', async () => {
    const files = new MemoryStore();
    const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(key) });
    expect(store.listRoots()).toEqual([]);
    const e = await store.installRoot(pki.a.root.der, { source: 'factory' });
    await store.installRoot(pki.a.root.der, { source: 'factory' });
    expect(store.rootCount).toBe(1);
    expect(e.subject).toBe(pki.a.root.cert.subject);
    const reopened = await CertificateStore.open(files, { integrity: new HmacIntegrity(key) });
    expect(reopened.listRoots().map((r) => r.fingerprint)).toEqual([e.fingerprint]);
    expect(await reopened.removeRoot(e.subjectKeyId!)).toBe(true);
    expect(await reopened.removeRoot(e.fingerprint)).toBe(false);
    expect((await CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).rootCount).toBe(0);
  });

  it('bounds the number of roots and refuses what is not a root', async () => {
    const store = await CertificateStore.open(new MemoryStore(), { integrity: new HmacIntegrity(key), maxRoots: 1 });
    await store.installRoot(pki.a.root.der, { source: 'factory' });
    await expect(store.installRoot(pki.b.root.der, { source: 'ota' })).rejects.toMatchObject({ code: 'PKI_STORE_FULL' });
    await expect(store.installRoot(pki.a.cpoSub1.der, { source: 'ota' })).rejects.toMatchObject({ code: 'PKI_NOT_A_ROOT' });
    await expect(store.installRoot(pki.crossBbyA.der, { source: 'ota' })).rejects.toMatchObject({ code: 'PKI_NOT_A_ROOT' });
    await expect(store.installRoot(pki.a.seccLeaf.der, { source: 'ota' })).rejects.toMatchObject({ code: 'PKI_NOT_A_ROOT' });
    await expect(store.installRoot(new Uint8Array([1, 2, 3]), { source: 'ota' })).rejects.toMatchObject({ code: 'PKI_NOT_A_ROOT' });
    expect(store.rootCount).toBe(1);
  });

  it('keeps OEM provisioning and contract chains', async () => {
    const files = new MemoryStore();
    const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(key) });
    await store.setOemProvisioningChain([pki.oem.provisioning.der, pki.oem.sub2.der, pki.oem.sub1.der]);
    await store.putContractChain('DEEVCC000000001', [pki.mo.contract.der, pki.mo.sub2.der, pki.mo.sub1.der]);
    const again = await CertificateStore.open(files, { integrity: new HmacIntegrity(key) });
    expect(again.getOemProvisioningChain()).toHaveLength(3);
    expect(again.listContractChains().map((c) => c.id)).toEqual(['DEEVCC000000001']);
    expect(await again.removeContractChain('DEEVCC000000001')).toBe(true);
  });

  it('refuses a store file tampered on disk (PKI_STORE_TAMPERED) and a foreign key', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-pki-store-'));
    dirs.push(d);
    const files = await FsStore.open(d);
    const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(key) });
    await store.installRoot(pki.a.root.der, { source: 'factory' });
    const path = join(d, 'pki/store.json');
    const envelope = JSON.parse(await readFile(path, 'utf8')) as { body: string };
    const body = JSON.parse(envelope.body) as { roots: { der: string }[] };
    // An attacker adds root B to the file without the integrity key.
    body.roots.push({ ...body.roots[0]!, der: Buffer.from(pki.b.root.der).toString('base64') });
    await writeFile(path, JSON.stringify({ ...envelope, body: JSON.stringify(body) }));
    await expect(CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).rejects.toMatchObject({ code: 'PKI_STORE_TAMPERED' });
    await writeFile(path, '{not json');
    await expect(CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).rejects.toMatchObject({ code: 'PKI_STORE_CORRUPT' });
  });

  it('refuses a store written under another key', async () => {
    const files = new MemoryStore();
    await (await CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).installRoot(pki.a.root.der, { source: 'factory' });
    await expect(CertificateStore.open(files, { integrity: new HmacIntegrity(randomBytes(32)) })).rejects.toMatchObject({ code: 'PKI_STORE_TAMPERED' });
  });
});
