import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { chainPem } from '../../firmware/pki/generate.ts';
import { installBackendKey } from '../../firmware/ota/backend-key.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { OEM_BACKEND_USER, startMosquitto, type MosquittoBroker } from '../support/mosquitto.ts';
import { VethPair } from '../support/netns.ts';
import { describeWith, root, tool } from '../support/prereq.ts';
import { otaFixture, STORE_KEY, vehicleStore, type OtaFixture } from './ota-fixtures.ts';
import { until } from '../support/until.ts';

/**
 * Kilic 2023, Fig. 11 → Fig. 12 as one run over a veth pair (two network namespaces):
 *   SECC namespace: the charger simulator presenting SECC leaf + CPO Sub-CA 2 + Sub-CA 1 of PKI-B.
 *   EV namespace:   `evcc ota tls-connect` (our TLS client with firmware/pki validation and the unknown-root path),
 *                   Debian mosquitto (mTLS + per-vehicle ACL) and `evcc oem-backend` serving the Root Certificate
 *                   Pool; the EV namespace's loopback stands in for the vehicle's uplink.
 * The vehicle starts with V2G root A only. Expected: the first handshake fails with TLS_UNKNOWN_ROOT, the root
 * arrives from oem-backend through mosquitto, is verified and installed, and the retry succeeds — each step in
 * the bench log.
 */
const VID = 'veh-fig12';
let fx: OtaFixture;
let veth: VethPair;
let broker: MosquittoBroker;
let dir: string;
const children: ChildProcess[] = [];
const shown: string[] = [];

function collect(p: ChildProcess): { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  p.stdout?.on('data', (b: Buffer) => out.push(...b.toString().split('\n').filter(Boolean)));
  p.stderr?.on('data', (b: Buffer) => err.push(...b.toString().split('\n').filter(Boolean)));
  return { out, err };
}

// node itself with tsx as an import hook (no wrapper process), so killing a child really ends it.
const node = process.execPath;
const tsx = ['--import', 'tsx'];
const evcc = join(process.cwd(), 'bin/evcc.ts');

describeWith([root, tool('ip'), tool('mosquitto')])('Fig. 11 → Fig. 12 over veth: TLS_UNKNOWN_ROOT → OEM backend via mosquitto → retry succeeds', () => {
  beforeAll(async () => {
    fx = await otaFixture();
    dir = await mkdtemp(join(tmpdir(), 'evcc-fig12-'));
    veth = await VethPair.create();
    broker = await startMosquitto({ netns: veth.ev });
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await broker?.stop();
    await veth?.destroy();
    await fx?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (process.env.EVCC_SHOW_BENCH_LOG) process.stderr.write(`${shown.join('\n')}\n`);
  });

  it('reproduces the paper\'s scenario 2 and its Solution C recovery', async () => {
    // Files: SECC chain + key (PKI-B), backend signing key, link credentials, vehicle data dir (root A + backend key).
    await writeFile(join(dir, 'secc-chain.pem'), chainPem({ name: 'b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' }));
    await writeFile(join(dir, 'secc.key'), fx.pki.b.seccLeaf.keyPem, { mode: 0o600 });
    const signingKey = join(dir, 'oem-answer.key');
    await writeFile(signingKey, fx.signerKeyPem, { mode: 0o600 });
    for (const [name, cn] of [['backend', OEM_BACKEND_USER], ['vehicle', VID]] as const) {
      const id = await broker.identity(cn);
      await writeFile(join(dir, `${name}.pem`), id.cert as string);
      await writeFile(join(dir, `${name}.key`), id.key as string, { mode: 0o600 });
    }
    await writeFile(join(dir, 'link-ca.pem'), broker.ca.certPem);
    const dataDir = join(dir, 'vehicle-data');
    const files = await FsStore.open(dataDir);
    await vehicleStore(files, [fx.pki.a.root.der]);
    await installBackendKey(files, fx.signer.publicKeyPem);

    // SECC (PKI-B) in its namespace, on the veth's link-local address.
    const seAddr = (await veth.exec(veth.se, 'ip', ['-6', '-o', 'addr', 'show', 'dev', veth.seIf, 'scope', 'link'])).match(/inet6 (fe80::[0-9a-f:]+)/)![1]!;
    const secc = veth.spawn(veth.se, node, [...tsx, join(process.cwd(), 'test/integration/ota-secc-runner.ts'), veth.seIf, seAddr, join(dir, 'secc-chain.pem'), join(dir, 'secc.key')]);
    children.push(secc);
    const seccIo = collect(secc);

    // OEM backend, a real program, in the EV namespace next to the broker.
    const backend = veth.spawn(veth.ev, node, [...tsx, evcc, '--no-log-fields', 'oem-backend', '--pool', fx.poolDir, '--broker', broker.url, '--signing-key', signingKey,
      '--ca', join(dir, 'link-ca.pem'), '--cert', join(dir, 'backend.pem'), '--key', join(dir, 'backend.key'), '--client-id', 'oem-backend-fig12']);
    children.push(backend);
    const backendIo = collect(backend);
    await until(() => seccIo.out.some((l) => l.startsWith('READY')), 30_000, 'SECC simulator');
    await until(() => backendIo.err.some((l) => l.includes('OEM backend ready')), 30_000, 'OEM backend');
    const port = seccIo.out.find((l) => l.startsWith('READY'))!.split(' ')[1]!;

    // The vehicle: TLS to the SECC with the unknown-root path.
    const ev = veth.spawn(veth.ev, node, [...tsx, evcc, '--no-log-fields', 'ota', 'tls-connect', '--secc', seAddr, '--iface', veth.evIf, '--port', port,
      '--broker', broker.url, '--vehicle-id', VID, '--ca', join(dir, 'link-ca.pem'), '--cert', join(dir, 'vehicle.pem'), '--key', join(dir, 'vehicle.key'),
      '--data-dir', dataDir, '--run-dir', join(dir, 'run'), '--tcti', 'swtpm:host=127.0.0.1,port=1', '--store-key-env', 'EVCC_STORE_KEY'], // no TPM here: bench key, named explicitly
    { env: { ...process.env, EVCC_STORE_KEY: Buffer.from(STORE_KEY).toString('hex') } });
    children.push(ev);
    const evIo = collect(ev);
    const code = await new Promise<number | null>((r) => ev.once('exit', (c) => r(c)));
    shown.push(...evIo.err);
    const log = evIo.err.map((l) => l.slice(13)); // drop the time stamp
    expect(code, evIo.err.join('\n')).toBe(0);

    // Fig. 11: the handshake fails on the unknown root; Fig. 12: after the fetch the retry is established.
    const step = (re: RegExp) => log.findIndex((l) => re.test(l));
    const failed = step(/^\[ERROR\] TLS: connection failed: unknown root CA CN=V2G Root CA B, O=EVCC Test PKI B/);
    const requested = step(/^\[INFO\] OTA: requesting V2G root from OEM backend$/);
    const installed = step(/^\[INFO\] OTA: V2G root installed$/);
    const established = step(/^\[INFO\] TLS: connection established$/);
    expect([failed, requested, installed, established].every((i) => i >= 0), log.join('\n')).toBe(true);
    expect(failed).toBeLessThan(requested);
    expect(requested).toBeLessThan(installed);
    expect(installed).toBeLessThan(established);
    const result = JSON.parse(evIo.out[evIo.out.length - 1]!) as { established: boolean; states: string[]; installedRoot: { subject: string } };
    expect(result.states).toEqual(['ConnectTls', 'RootMissing', 'FetchRoot', 'InstallRoot', 'Retry', 'Established']);
    expect(result.installedRoot.subject).toBe(fx.pki.b.root.cert.subject);
    // The backend served it from the pool and logged the request.
    await until(() => backendIo.err.some((l) => l.includes('request answered: ok')), 5_000, 'backend request log');
    // Persisted: the vehicle's store now holds roots A and B.
    const reopened = await vehicleStore(await FsStore.open(dataDir), []);
    expect(reopened.listRoots().map((r) => r.subject)).toEqual([fx.pki.a.root.cert.subject, fx.pki.b.root.cert.subject]);
  });
});
