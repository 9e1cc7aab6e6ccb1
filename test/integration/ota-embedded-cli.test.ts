import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installBackendKey } from '../../firmware/ota/backend-key.ts';
import { chainPem } from '../../firmware/pki/generate.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { SimIpv6Link } from '../../hal/net/sim-net.ts';
import { startSimSecc, type SimSecc } from '../../sim/secc/secc.ts';
import { otaFixture, STORE_KEY, vehicleStore, type OtaFixture } from './ota-fixtures.ts';
import { until } from '../support/until.ts';

/**
 * The embedded bench session's way (no root, no Debian broker): `evcc oem-backend broker` (aedes, MQTT 3.1.1),
 * `evcc oem-backend` and `evcc ota tls-connect` as separate programs on loopback against the SECC simulator on
 * PKI-B — Fig. 11 → 12 without namespaces. Also `evcc ota sync-roots` (proactive mode) over the same broker.
 */
let fx: OtaFixture;
let dir: string;
let secc: SimSecc;
const children: ChildProcess[] = [];
const evcc = join(process.cwd(), 'bin/evcc.ts');

function run(args: string[], env: NodeJS.ProcessEnv = {}): { proc: ChildProcess; out: string[]; err: string[]; exit: Promise<number | null> } {
  // node itself with tsx as an import hook: killing the child really ends it.
  const proc = spawn(process.execPath, ['--import', 'tsx', evcc, '--no-log-fields', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(proc);
  const out: string[] = [];
  const err: string[] = [];
  proc.stdout!.on('data', (b: Buffer) => out.push(...b.toString().split('\n').filter(Boolean)));
  proc.stderr!.on('data', (b: Buffer) => err.push(...b.toString().split('\n').filter(Boolean)));
  return { proc, out, err, exit: new Promise((r) => proc.once('exit', (c) => r(c))) };
}

describe('embedded bench session: aedes broker + evcc oem-backend + evcc ota as programs', () => {
  beforeAll(async () => {
    fx = await otaFixture();
    dir = await mkdtemp(join(tmpdir(), 'evcc-ota-emb-'));
    const link = new SimIpv6Link();
    secc = await startSimSecc({
      udp: link.host('se0', 'fe80::5:9'), iface: 'se0', address: 'fe80::5:9', transport: 'tls12', sdp: 'off', listenHost: '127.0.0.1',
      certChainPem: chainPem({ name: 'b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' }),
      keyPem: fx.pki.b.seccLeaf.keyPem,
    });
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await secc?.close();
    await fx?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('TLS_UNKNOWN_ROOT → root from the backend via aedes → retry established; sync-roots installs the pool', async () => {
    await writeFile(join(dir, 'answer.key'), fx.signerKeyPem, { mode: 0o600 });
    const broker = run(['oem-backend', 'broker', '--port', '0']);
    await until(() => broker.err.some((l) => l.includes('embedded broker listening')), 30_000, 'embedded broker');
    const brokerUrl = broker.err.find((l) => l.includes('embedded broker listening'))!.match(/listening on (mqtt:\/\/\S+)/)![1]!;
    const backend = run(['oem-backend', '--pool', fx.poolDir, '--broker', brokerUrl, '--mqtt-version', '4', '--signing-key', join(dir, 'answer.key')]);
    await until(() => backend.err.some((l) => l.includes('OEM backend ready')), 30_000, 'OEM backend');

    const dataDir = join(dir, 'vehicle');
    const files = await FsStore.open(dataDir);
    await vehicleStore(files, [fx.pki.a.root.der]);
    await installBackendKey(files, fx.signer.publicKeyPem);
    // No TPM here: the bench store key is named explicitly (the default is the TPM-sealed key, as in the runtime).
    const env = { EVCC_STORE_KEY: Buffer.from(STORE_KEY).toString('hex') };
    const bench = ['--store-key-env', 'EVCC_STORE_KEY', '--tcti', 'swtpm:host=127.0.0.1,port=1', '--run-dir', join(dir, 'run')];
    const ev = run(['ota', 'tls-connect', '--secc', '127.0.0.1', '--port', String(secc.port), '--broker', brokerUrl, '--mqtt-version', '4',
      '--vehicle-id', 'bench-ev-1', '--data-dir', dataDir, ...bench], env);
    expect(await ev.exit, ev.err.join('\n')).toBe(0);
    const log = ev.err.map((l) => l.slice(13));
    const at = (re: RegExp) => log.findIndex((l) => re.test(l));
    expect(at(/^\[WARN\] PKI: certificate-store integrity key from the environment \(EVCC_STORE_KEY\): bench arrangement, not TPM-sealed$/)).toBeGreaterThanOrEqual(0);
    expect(at(/^\[ERROR\] TLS: connection failed: unknown root CA CN=V2G Root CA B/)).toBeGreaterThanOrEqual(0);
    expect(at(/^\[INFO\] OTA: V2G root installed$/)).toBeGreaterThan(at(/^\[ERROR\] TLS: connection failed/));
    expect(at(/^\[INFO\] TLS: connection established$/)).toBeGreaterThan(at(/^\[INFO\] OTA: V2G root installed$/));

    // Proactive mode on a vehicle with an empty store: both pool roots arrive.
    const dataDir2 = join(dir, 'vehicle2');
    await installBackendKey(await FsStore.open(dataDir2), fx.signer.publicKeyPem);
    const sync = run(['ota', 'sync-roots', '--broker', brokerUrl, '--mqtt-version', '4', '--vehicle-id', 'bench-ev-2', '--data-dir', dataDir2, ...bench], env);
    expect(await sync.exit, sync.err.join('\n')).toBe(0);
    expect(JSON.parse(sync.out[sync.out.length - 1]!)).toMatchObject({ installed: [fx.pki.a.root.cert.subject, fx.pki.b.root.cert.subject] });

    // Without the TPM and without an explicitly named bench key there is no store to trust: refused, typed.
    const refused = run(['ota', 'sync-roots', '--broker', brokerUrl, '--mqtt-version', '4', '--vehicle-id', 'bench-ev-2', '--data-dir', dataDir2,
      '--tcti', 'swtpm:host=127.0.0.1,port=1', '--run-dir', join(dir, 'run')], env);
    expect(await refused.exit).not.toBe(0);
    expect(refused.err.join('\n')).toMatch(/KEYS_TRUST_UNAVAILABLE/);
  });
});
