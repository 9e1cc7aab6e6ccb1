import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FsStore } from '../../hal/store/fs-store.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { approveRoot } from '../../deploy/oem-backend/approvals.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { recordingLogger } from '../../test/integration/ota-fixtures.ts';
import { parseCert } from './cert.ts';
import { generateTestPki, issue, type IssuedCert, type TestPki } from './generate.ts';
import { RootApprovalVerifier, type RootApproval } from './root-approval.ts';
import { CertificateStore, HmacIntegrity, storeMarkerPath, type StoreVersionCounter } from './store.ts';

let pki: TestPki;
let rootC: IssuedCert;
beforeAll(async () => {
  pki = await generateTestPki();
  rootC = await issue({ name: 'v2g-root-c', role: 'v2g-root', subject: 'CN=V2G Root C, O=Other CA' });
});

const newSigner = () => KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
/** The OEM backend key; `other` is "another key" (an attacker's, or a foreign OEM's). */
const oem = newSigner();
const other = newSigner();
const verifier = new RootApprovalVerifier([{ publicKey: createPublicKey(oem.publicKeyPem), keyId: oem.keyId, origin: 'release' }]);

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

interface StoredRootJson { der: string; installedAt: string; source: string; approval?: RootApproval }

/** Rewrites the roots of a store file as someone with file access would: re-tagged with `retag`, or the tag left stale. */
async function plant(files: MemoryStore, mutate: (roots: StoredRootJson[]) => void, retag?: HmacIntegrity): Promise<void> {
  const envelope = JSON.parse(Buffer.from((await files.read('pki/store.json'))!).toString('utf8')) as { body: string; tag: string };
  const body = JSON.parse(envelope.body) as { roots: StoredRootJson[] };
  mutate(body.roots);
  const text = JSON.stringify(body);
  const tag = retag ? Buffer.from(await retag.tag(new TextEncoder().encode(text))).toString('hex') : envelope.tag;
  await files.writeAtomic('pki/store.json', JSON.stringify({ ...envelope, body: text, tag }));
}
const entry = (der: Uint8Array, approval?: RootApproval): StoredRootJson => ({
  der: Buffer.from(der).toString('base64'), installedAt: new Date().toISOString(), source: 'attacker', ...(approval ? { approval } : {}),
});

describe('CertificateStore: OEM approvals per root entry', () => {
  it('full mode: the approval is stored with the root, verified at every open and listed with the key that verified it', async () => {
    const files = new MemoryStore();
    const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier });
    const approval = approveRoot(oem, pki.a.root.der);
    const e = await store.installRoot(pki.a.root.der, { source: 'factory', approval });
    expect(e).toMatchObject({ approval, approvedBy: 'release' });
    expect(approval.validUntil).toBe(pki.a.root.cert.notAfter.toISOString()); // the OEM vouches no longer than the root is valid
    const again = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier });
    expect(again.listRoots()).toMatchObject([{ fingerprint: e.fingerprint, approvedBy: 'release', approval }]);
    expect(again.dropped).toEqual([]);
    // a store without a verifier keeps the approval as it came (the next open with the OEM key checks it)
    expect((await CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).listRoots()[0]).toMatchObject({ approval });
    expect((await CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).listRoots()[0]!.approvedBy).toBeUndefined();
  });

  it('install refuses an approval by another key, for another root, or expired; requireApproval refuses none', async () => {
    const now = new Date();
    const store = await CertificateStore.open(new MemoryStore(), { integrity: new HmacIntegrity(key), approvals: verifier, now: () => now });
    await expect(store.installRoot(pki.a.root.der, { source: 'ota', approval: approveRoot(other, pki.a.root.der) }))
      .rejects.toMatchObject({ code: 'PKI_ROOT_APPROVAL_INVALID', details: { reason: expect.stringMatching(/not a trusted OEM backend key/) } });
    await expect(store.installRoot(pki.a.root.der, { source: 'ota', approval: approveRoot(oem, pki.b.root.der) }))
      .rejects.toMatchObject({ code: 'PKI_ROOT_APPROVAL_INVALID', details: { reason: 'OEM signature does not verify' } });
    const expired = approveRoot(oem, pki.a.root.der, { validUntil: new Date(now.getTime() - 1000) });
    await expect(store.installRoot(pki.a.root.der, { source: 'ota', approval: expired }))
      .rejects.toMatchObject({ code: 'PKI_ROOT_APPROVAL_INVALID', details: { reason: expect.stringMatching(/expired/) } });
    const forgedPurpose = { ...approveRoot(oem, pki.a.root.der), purpose: 'contract-root' } as unknown as RootApproval;
    await expect(store.installRoot(pki.a.root.der, { source: 'ota', approval: forgedPurpose })).rejects.toMatchObject({ code: 'PKI_ROOT_APPROVAL_INVALID' });
    expect(store.rootCount).toBe(0);
    const strict = await CertificateStore.open(new MemoryStore(), { integrity: new HmacIntegrity(key), approvals: verifier, requireApproval: true });
    await expect(strict.installRoot(pki.a.root.der, { source: 'cli' })).rejects.toMatchObject({ code: 'PKI_ROOT_UNAPPROVED' });
  });

  it('a root installed without an approval gets the OEM approval attached when it comes (e.g. the next root-list sync)', async () => {
    const files = new MemoryStore();
    const rec = recordingLogger();
    const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier, log: rec.sub('PKI') });
    await store.installRoot(pki.a.root.der, { source: 'factory' });
    expect(rec.lines.some((l) => l.includes('[WARN] PKI: V2G root has no OEM approval: trusted only while the store integrity key is available'))).toBe(true);
    const approval = approveRoot(oem, pki.a.root.der);
    const e = await store.installRoot(pki.a.root.der, { source: 'ota-sync:1', approval });
    expect(e).toMatchObject({ source: 'factory', approval, approvedBy: 'release' });
    expect(store.rootCount).toBe(1);
    const degraded = await CertificateStore.openDegraded(files, { approvals: verifier });
    expect(degraded.listRoots().map((r) => r.fingerprint)).toEqual([e.fingerprint]);
  });

  it('full mode drops an entry whose approval fails, even under a good tag (PKI error line); a statement by a key it does not hold is kept unverified', async () => {
    const files = new MemoryStore();
    const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier });
    await store.installRoot(pki.a.root.der, { source: 'factory', approval: approveRoot(oem, pki.a.root.der) });
    await plant(files, (roots) => {
      roots.push(entry(pki.b.root.der, approveRoot(oem, pki.a.root.der))); // the OEM's statement for A, pasted onto B
      roots.push(entry(rootC.der, approveRoot(other, rootC.der))); // e.g. written before an OEM key rotation
    }, new HmacIntegrity(key));
    const rec = recordingLogger();
    const reopened = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier, log: rec.sub('PKI') });
    expect(reopened.listRoots().map((r) => [r.subject, r.approvedBy])).toEqual([[pki.a.root.cert.subject, 'release'], [rootC.cert.subject, undefined]]);
    expect(reopened.dropped).toMatchObject([{ subject: pki.b.root.cert.subject, reason: 'OEM signature does not verify' }]);
    expect(rec.lines.some((l) => l.endsWith('[ERROR] PKI: V2G root entry not trusted: OEM signature does not verify'))).toBe(true);
    expect(rec.lines.some((l) => /\[WARN\] PKI: V2G root kept, its OEM approval unverified: signed by key [0-9a-f]{16}…, not a trusted OEM backend key/.test(l))).toBe(true);
    // without the store key, that unverified one is not trusted either
    expect((await CertificateStore.openDegraded(files, { approvals: verifier })).anchors()).toEqual([pki.a.root.der]);
  });
});

describe('CertificateStore: degraded mode (no integrity key)', () => {
  /** A store written in full mode: A approved by the OEM, B without approval, plus its provisioning and contract chains. */
  async function fullStore(): Promise<MemoryStore> {
    const files = new MemoryStore();
    const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier });
    await store.installRoot(pki.a.root.der, { source: 'factory', approval: approveRoot(oem, pki.a.root.der) });
    await store.installRoot(pki.b.root.der, { source: 'cli' });
    await store.setOemProvisioningChain([pki.oem.provisioning.der, pki.oem.sub2.der, pki.oem.sub1.der]);
    await store.putContractChain('DEEVCC000000001', [pki.mo.contract.der, pki.mo.sub2.der, pki.mo.sub1.der]);
    return files;
  }

  it('trusts exactly the roots whose OEM approval verifies: unapproved, forged, re-signed-for-another-root and garbage entries are dropped', async () => {
    const files = await fullStore();
    const approvalA = approveRoot(oem, pki.a.root.der);
    // An attacker with data-dir access (the tag cannot be checked in this state, so it is left stale):
    await plant(files, (roots) => {
      roots.push(entry(rootC.der, approveRoot(other, rootC.der))); // signed by another key
      roots.push(entry(rootC.der, { ...approvalA })); // the OEM's genuine statement for A, pasted onto C
      roots.push(entry(rootC.der)); // no approval at all
      roots.push({ der: 'not base64 DER', installedAt: 'x', source: 'attacker' });
      roots.push(entry(pki.a.cpoSub1.der, approveRoot(oem, pki.a.cpoSub1.der))); // OEM-signed, but no root: never an anchor
    });
    const rec = recordingLogger();
    const store = await CertificateStore.openDegraded(files, { approvals: verifier, log: rec.sub('PKI') });
    expect(store.mode).toBe('degraded');
    expect(store.listRoots()).toMatchObject([{ subject: pki.a.root.cert.subject, approvedBy: 'release', source: 'factory' }]);
    expect(store.anchors()).toEqual([pki.a.root.der]);
    expect(store.dropped.map((d) => d.reason)).toEqual([
      'no OEM approval (trusted only with the store integrity key)', // B
      expect.stringMatching(/not a trusted OEM backend key/),
      'OEM signature does not verify',
      'no OEM approval (trusted only with the store integrity key)',
      'not a certificate',
      'not self-signed',
    ]);
    const errors = rec.lines.filter((l) => l.includes('[ERROR] PKI: V2G root entry not trusted'));
    expect(errors).toHaveLength(4);
    expect(rec.lines.some((l) => l.includes('[INFO] PKI: certificate store opened in degraded mode: 1 of 7 V2G root(s) verified by their OEM approval'))).toBe(true);
    // nothing in the file vouches for the PnC material in this state
    expect(store.getOemProvisioningChain()).toBeUndefined();
    expect(store.listContractChains()).toEqual([]);
  });

  it('a verifier with another key trusts nothing (never an unverified store)', async () => {
    const files = await fullStore();
    const foreign = new RootApprovalVerifier([{ publicKey: createPublicKey(other.publicKeyPem), keyId: other.keyId, origin: 'release' }]);
    const store = await CertificateStore.openDegraded(files, { approvals: foreign });
    expect(store.rootCount).toBe(0);
  });

  it('is read-only: the file is never rewritten; a root needs its OEM approval and lasts for the run; chains are refused', async () => {
    const files = await fullStore();
    const before = Buffer.from((await files.read('pki/store.json'))!);
    const store = await CertificateStore.openDegraded(files, { approvals: verifier });
    await expect(store.installRoot(rootC.der, { source: 'ota:1' })).rejects.toMatchObject({ code: 'PKI_ROOT_UNAPPROVED' });
    await expect(store.installRoot(rootC.der, { source: 'ota:1', approval: approveRoot(other, rootC.der) })).rejects.toMatchObject({ code: 'PKI_ROOT_APPROVAL_INVALID' });
    const c = await store.installRoot(rootC.der, { source: 'ota:1', approval: approveRoot(oem, rootC.der) });
    expect(c.approvedBy).toBe('release');
    expect(store.rootCount).toBe(2);
    expect(await store.removeRoot(c.fingerprint)).toBe(true);
    await expect(store.setOemProvisioningChain([pki.oem.provisioning.der])).rejects.toMatchObject({ code: 'PKI_STORE_READ_ONLY' });
    await expect(store.putContractChain('X1', [pki.mo.contract.der])).rejects.toMatchObject({ code: 'PKI_STORE_READ_ONLY' });
    await expect(store.removeContractChain('DEEVCC000000001')).rejects.toMatchObject({ code: 'PKI_STORE_READ_ONLY' });
    expect(Buffer.from((await files.read('pki/store.json'))!).equals(before)).toBe(true);
    // the next good boot still verifies the untouched file under its key, chains and all
    const full = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier });
    expect(full.rootCount).toBe(2);
    expect(full.listContractChains().map((x) => x.id)).toEqual(['DEEVCC000000001']);
  });

  it('a file that is not a store is PKI_STORE_CORRUPT in degraded mode too', async () => {
    const files = new MemoryStore();
    await files.writeAtomic('pki/store.json', '{"format":"evcc-pki-store/1","body":"[1,2]","tag":"00"}');
    await expect(CertificateStore.openDegraded(files, { approvals: verifier })).rejects.toMatchObject({ code: 'PKI_STORE_CORRUPT' });
  });
});

describe('CertificateStore: canonical DER and a lost store file', () => {
  it('refuses a root with trailing bytes (it would be a twin with its own fingerprint); a twin already in a file is dropped', async () => {
    const files = new MemoryStore();
    const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier });
    const twin = new Uint8Array([...pki.a.root.der, 0x00, 0x00]);
    await expect(store.installRoot(twin, { source: 'cli' })).rejects.toMatchObject({ code: 'PKI_NOT_A_ROOT', details: { reason: '2 byte(s) after the certificate' } });
    await store.installRoot(pki.a.root.der, { source: 'factory', approval: approveRoot(oem, pki.a.root.der) });
    // written under a good tag (an older runtime without the check), and OEM-"approved" by its own fingerprint
    await plant(files, (roots) => roots.push(entry(twin, approveRoot(oem, twin))), new HmacIntegrity(key));
    const reopened = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), approvals: verifier });
    expect(reopened.anchors()).toEqual([pki.a.root.der]);
    expect(reopened.dropped).toMatchObject([{ reason: '2 byte(s) after the certificate' }]);
    expect((await CertificateStore.openDegraded(files, { approvals: verifier })).anchors()).toEqual([pki.a.root.der]);
  });

  it('a missing store file is a first boot only until the store was created; then PKI_STORE_MISSING in both modes', async () => {
    const files = new MemoryStore();
    const first = await CertificateStore.open(files, { integrity: new HmacIntegrity(key) });
    expect(first.rootCount).toBe(0);
    expect(await files.exists(storeMarkerPath())).toBe(false); // opening alone creates nothing
    await first.installRoot(pki.a.root.der, { source: 'factory' });
    expect(await files.exists(storeMarkerPath())).toBe(true);
    await files.remove('pki/store.json');
    await expect(CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).rejects.toMatchObject({ code: 'PKI_STORE_MISSING' });
    await expect(CertificateStore.openDegraded(files, { approvals: verifier })).rejects.toMatchObject({ code: 'PKI_STORE_MISSING' });
    // starting over is a deliberate act: remove the marker
    await files.remove(storeMarkerPath());
    expect((await CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).rootCount).toBe(0);
  });

  it('a store written before the marker existed gets it at the next verified open', async () => {
    const files = new MemoryStore();
    await (await CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).installRoot(pki.a.root.der, { source: 'factory' });
    await files.remove(storeMarkerPath());
    await CertificateStore.open(files, { integrity: new HmacIntegrity(key) });
    expect(await files.exists(storeMarkerPath())).toBe(true);
  });
});

/** A monotonic counter in memory (the TPM's NV counter in test/integration/hardening-store-rollback.test.ts). */
class MemoryCounter implements StoreVersionCounter {
  readonly id = 'memory';
  value: bigint;
  failNext = false;
  constructor(readonly initial: bigint) {
    this.value = initial;
  }
  async read(): Promise<bigint> {
    return this.value;
  }
  async increment(): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('power cut before the increment');
    }
    this.value++;
  }
}

describe('CertificateStore bound to a version counter (rollback)', () => {
  const open = (files: MemoryStore, counter: StoreVersionCounter) => CertificateStore.open(files, { integrity: new HmacIntegrity(key), version: counter });

  it('an older copy of the file with a valid tag is PKI_STORE_ROLLED_BACK; the current one opens', async () => {
    const files = new MemoryStore();
    const counter = new MemoryCounter(7n);
    const store = await open(files, counter);
    await store.installRoot(pki.a.root.der, { source: 'factory' });
    await store.installRoot(pki.b.root.der, { source: 'cli' });
    const withB = await files.read('pki/store.json');
    await store.removeRoot(parseCert(pki.b.root.der).fingerprint);
    expect(counter.value).toBe(10n);
    expect((await open(files, counter)).rootCount).toBe(1);
    await files.writeAtomic('pki/store.json', withB!);
    await expect(open(files, counter)).rejects.toMatchObject({ code: 'PKI_STORE_ROLLED_BACK', details: { fileVersion: '9', counterValue: '10' } });
    // Without the counter (the bench arrangement) the same old file is accepted: that is what the counter adds.
    expect((await CertificateStore.open(files, { integrity: new HmacIntegrity(key) })).rootCount).toBe(2);
  });

  it('a write whose increment was cut off is rolled forward once; the counter then matches', async () => {
    const files = new MemoryStore();
    const counter = new MemoryCounter(1n);
    const store = await open(files, counter);
    counter.failNext = true;
    await expect(store.installRoot(pki.a.root.der, { source: 'factory' })).rejects.toThrow('power cut');
    expect(store.rootCount).toBe(0); // not acknowledged in this run
    expect(counter.value).toBe(1n);
    const rec = recordingLogger('debug');
    const reopened = await CertificateStore.open(files, { integrity: new HmacIntegrity(key), version: counter, log: rec.sub('PKI') });
    expect(reopened.rootCount).toBe(1);
    expect(counter.value).toBe(2n);
    expect(rec.lines.some((l) => l.includes('raising it now'))).toBe(true);
    expect((await open(files, counter)).rootCount).toBe(1);
  });

  it('a file ahead of the counter by more than one write is PKI_STORE_TAMPERED; a versionless file only while the counter is at its initial value', async () => {
    const files = new MemoryStore();
    const counter = new MemoryCounter(5n);
    const legacy = await CertificateStore.open(files, { integrity: new HmacIntegrity(key) });
    await legacy.installRoot(pki.a.root.der, { source: 'factory' });
    const versionless = await files.read('pki/store.json');
    const bound = await open(files, counter); // a store from before the counter: accepted, counter still initial
    await bound.installRoot(pki.b.root.der, { source: 'cli' });
    expect(counter.value).toBe(6n);
    await files.writeAtomic('pki/store.json', versionless!);
    await expect(open(files, counter)).rejects.toMatchObject({ code: 'PKI_STORE_ROLLED_BACK', details: { fileVersion: 'none' } });
    const behind = new MemoryCounter(3n);
    const other = new MemoryStore();
    const s = await open(other, new MemoryCounter(3n));
    await s.installRoot(pki.a.root.der, { source: 'factory' });
    await s.installRoot(pki.b.root.der, { source: 'factory' });
    await expect(open(other, behind)).rejects.toMatchObject({ code: 'PKI_STORE_TAMPERED' });
  });

  it('deleting the file and its marker is no first boot once the counter moved (PKI_STORE_MISSING); a second writer gets PKI_STORE_CONFLICT', async () => {
    const files = new MemoryStore();
    const counter = new MemoryCounter(1n);
    const first = await open(files, counter);
    const second = await open(files, counter);
    await first.installRoot(pki.a.root.der, { source: 'factory' });
    await expect(second.installRoot(pki.b.root.der, { source: 'cli' })).rejects.toMatchObject({ code: 'PKI_STORE_CONFLICT' });
    await files.remove('pki/store.json');
    await files.remove(storeMarkerPath());
    await expect(open(files, counter)).rejects.toMatchObject({ code: 'PKI_STORE_MISSING' });
    expect((await open(new MemoryStore(), new MemoryCounter(1n))).rootCount).toBe(0); // a real first boot
  });
});
