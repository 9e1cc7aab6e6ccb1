import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError, isEvccError } from '../../core/errors.ts';
import { approveRoot } from '../../deploy/oem-backend/approvals.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { jsonBytes, type BootState } from '../../firmware/keys/layout.ts';
import { openVehicleTrustOrDegraded } from '../../firmware/keys/vehicle-trust.ts';
import { chainPem, generateTestPki, issue, type ChainSpec, type IssuedCert, type TestPki } from '../../firmware/pki/generate.ts';
import type { RootApproval } from '../../firmware/pki/root-approval.ts';
import { connectTls } from '../../firmware/tls/connect.ts';
import { SimIpv6Link } from '../../hal/net/sim-net.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { silentLogger } from '../../core/logger.ts';
import { startBenchVehicleTpm, type BenchVehicleTpm } from '../../sim/vehicle-tpm.ts';
import { startSimSecc, type SimSecc } from '../../sim/secc/secc.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { recordingLogger } from './ota-fixtures.ts';

/**
 * The degraded vehicle on swtpm (sim/vehicle-tpm.ts: factory, OEM release, measured boot, MO contract key, the
 * factory root with its OEM approval): rebooted into a tampered bundle, measured boot fails, the TPM keeps the
 * store key and the contract key locked — and the vehicle still verifies its V2G roots by their OEM signatures with
 * the release's backend key, so it authenticates a charger over real TLS (EIM). An entry an attacker added to the
 * store file is not trusted; the next good boot is full mode as before.
 */
const TEST_TIMEOUT_MS = 120_000;

async function refusal(p: Promise<unknown>): Promise<EvccError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(EvccError);
  return err as EvccError;
}

describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl')])('degraded vehicle trust: roots verified by their OEM approvals (swtpm)', () => {
  let base: string;
  let pki: TestPki;
  let vehicle: BenchVehicleTpm;
  const rec = recordingLogger();
  const oem = KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  const attacker = KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  let rootC: IssuedCert;
  let cleanStore: Buffer;
  const link = new SimIpv6Link();
  const seccs: SimSecc[] = [];
  const storePath = () => join(base, 'data', 'pki/store.json');

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'evcc-degraded-'));
    pki = await generateTestPki();
    rootC = await issue({ name: 'v2g-root-c', role: 'v2g-root', subject: 'CN=V2G Root C, O=Attacker' });
    vehicle = await startBenchVehicleTpm({
      baseDir: join(base, 'vehicle'), dataDir: join(base, 'data'), pki, releaseVersion: 2, log: rec.sub,
      backendKeyPem: oem.publicKeyPem, approvalSigner: oem,
    });
    cleanStore = await readFile(storePath());
  }, TEST_TIMEOUT_MS);
  afterAll(async () => {
    for (const s of seccs) await s.close().catch(() => undefined);
    await vehicle?.close();
    await rm(base, { recursive: true, force: true });
  });

  let n = 0;
  async function secc(chain: ChainSpec): Promise<SimSecc> {
    const address = `fe80::d:${++n}`;
    const s = await startSimSecc({
      udp: link.host(`sd${n}`, address), iface: `sd${n}`, address, transport: 'tls12', sdp: 'off', listenHost: '127.0.0.1', link,
      certChainPem: chainPem(chain), keyPem: chain.leaf.keyPem,
    });
    seccs.push(s);
    return s;
  }
  const connectWith = async (chain: ChainSpec): Promise<string> => {
    const s = await secc(chain);
    try {
      const ch = await connectTls({ connector: new NodeTlsConnector(link.resolver()), trust: vehicle.store, log: silentLogger() },
        { secc: { address: s.address, port: s.port }, profile: 'iso2-tls12' });
      await ch.stream.close();
      return 'OK';
    } catch (err) {
      return isEvccError(err) ? err.code : `RAW ${(err as Error).message}`;
    }
  };

  it('healthy: full mode, the factory root carries its OEM approval, the contract key signs', async () => {
    expect(vehicle.trust.mode).toBe('full');
    // verified at install with the release's key (the tagged data-dir copy is installed right after it)
    expect(vehicle.store.listRoots()).toMatchObject([{ subject: pki.a.root.cert.subject, source: 'factory', approvedBy: 'release', approval: { keyId: oem.keyId } }]);
    expect((await vehicle.proveContractKey(new TextEncoder().encode('healthy'))).verified).toBe(true);
  }, TEST_TIMEOUT_MS);

  it('tampered bundle: degraded mode with the reason; only the OEM-approved root is trusted; TLS to a charger still works; the contract key stays locked', async () => {
    // Someone with write access to the data dir adds two roots of their own (the tag cannot be fixed without the key).
    const envelope = JSON.parse(cleanStore.toString('utf8')) as { body: string };
    const body = JSON.parse(envelope.body) as { roots: { der: string; installedAt: string; source: string; approval?: RootApproval }[] };
    const plant = (der: Uint8Array, approval?: RootApproval) => ({ der: Buffer.from(der).toString('base64'), installedAt: new Date().toISOString(), source: 'factory', ...(approval ? { approval } : {}) });
    body.roots.push(plant(rootC.der, approveRoot(attacker, rootC.der)), plant(pki.b.root.der));
    await writeFile(storePath(), JSON.stringify({ ...envelope, body: JSON.stringify(body) }));

    const before = rec.lines.length;
    const trust = await vehicle.reboot({ bundle: 'tampered' });
    const log = rec.lines.slice(before).map((l) => l.slice(13));
    expect(trust.mode).toBe('degraded');
    if (trust.mode !== 'degraded') return;
    expect(trust.reason.code).toBe('KEYS_NOT_BOOTED'); // the boot check refused the tampered root file system: no approved state this boot
    expect(trust.store.mode).toBe('degraded');
    expect(trust.store.listRoots()).toMatchObject([{ subject: pki.a.root.cert.subject, approvedBy: 'release' }]);
    expect(trust.store.dropped).toMatchObject([
      { subject: rootC.cert.subject, reason: expect.stringMatching(/not a trusted OEM backend key/) },
      { subject: pki.b.root.cert.subject, reason: expect.stringMatching(/no OEM approval/) },
    ]);
    expect(trust.store.listContractChains()).toEqual([]);
    // the log says what happened and why
    expect(log.some((l) => /^\[WARN\] BENCH: vehicle: rebooted into the tampered bundle, measured boot FAILED \(BOOT_ROOTFS_MISMATCH\)/.test(l))).toBe(true);
    expect(log.some((l) => /^\[ERROR\] PKI: V2G root entry not trusted: signed by key [0-9a-f]{16}…, not a trusted OEM backend key$/.test(l))).toBe(true);
    expect(log.some((l) => l.startsWith('[WARN] KEYS: vehicle trust degraded (KEYS_NOT_BOOTED): 1 V2G root(s) verified by their OEM approval with the release\'s backend key; contract and provisioning keys stay locked in the TPM — EIM only'))).toBe(true);

    // EIM over TLS: the charger of PKI-A is authenticated; the attacker's root does not anchor anything
    const pkiA: ChainSpec = { name: 'a', leaf: pki.a.seccLeaf, intermediates: [pki.a.cpoSub2, pki.a.cpoSub1], root: pki.a.root, purpose: 'secc-tls' };
    const pkiB: ChainSpec = { name: 'b', leaf: pki.b.seccLeaf, intermediates: [pki.b.cpoSub2, pki.b.cpoSub1], root: pki.b.root, purpose: 'secc-tls' };
    expect(await connectWith(pkiA)).toBe('OK');
    expect(await connectWith(pkiB)).toBe('TLS_UNKNOWN_ROOT');

    // the contract key: no use without a measured boot, and the TPM itself refuses a runtime that claims the good state
    expect((await refusal(vehicle.proveContractKey(new TextEncoder().encode('degraded')))).code).toBe('KEYS_NOT_BOOTED');
    const o = vehicle.outcome.boot;
    const claimed: BootState = { format: 'evcc-boot-state/1', version: o.version, bundleSha256: o.bundleSha256, rootfsSha256: o.rootfsSha256, pcrValue: o.pcr14, bootedAt: new Date().toISOString() };
    await writeFile(join(base, 'vehicle', 'run', 'boot.json'), jsonBytes(claimed));
    const e = await refusal(vehicle.keys.signWithContractKey(new Uint8Array(32)));
    expect({ code: e.code, rc: e.details.rc }).toEqual({ code: 'TPM_POLICY_NOT_APPROVED', rc: '0x1C4' });
    const again = await openVehicleTrustOrDegraded({ keys: vehicle.keys, data: await FsStore.open(join(base, 'data')), log: silentLogger() },
      { releaseBackendKey: { pem: oem.publicKeyPem, origin: 'test release' } });
    expect(again.mode === 'degraded' && again.reason).toEqual({ code: 'TPM_POLICY_NOT_APPROVED', rc: '0x1C4', message: expect.stringContaining('PnC refused') });
    expect(again.store.anchors()).toEqual([pki.a.root.der]);
    // the degraded open wrote nothing: the planted file is as the attacker left it
    expect(JSON.parse(await readFile(storePath(), 'utf8'))).toEqual({ ...envelope, body: JSON.stringify(body) });
  }, TEST_TIMEOUT_MS);

  it('good release, store file still tampered: the TPM grants the key, the tag fails, so degraded (PKI_STORE_TAMPERED) — never the planted roots', async () => {
    const trust = await vehicle.reboot({ bundle: 'release' });
    expect(trust.mode === 'degraded' && trust.reason.code).toBe('PKI_STORE_TAMPERED');
    expect(trust.store.anchors()).toEqual([pki.a.root.der]);
  }, TEST_TIMEOUT_MS);

  it('good release, store restored: full mode as before, contract key signs again', async () => {
    await writeFile(storePath(), cleanStore);
    const trust = await vehicle.reboot({ bundle: 'release' });
    expect(trust.mode).toBe('full');
    expect(trust.store.listRoots()).toMatchObject([{ subject: pki.a.root.cert.subject, approvedBy: 'tpm-tagged' }]);
    await vehicle.keys.arm();
    expect((await vehicle.proveContractKey(new TextEncoder().encode('healthy again'))).verified).toBe(true);
  }, TEST_TIMEOUT_MS);
});
