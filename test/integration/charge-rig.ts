import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { installBackendKey } from '../../firmware/ota/backend-key.ts';
import { chainPem } from '../../firmware/pki/generate.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { OEM_BACKEND_USER, startMosquitto, type MosquittoBroker } from '../support/mosquitto.ts';
import { otaFixture, STORE_KEY, vehicleStore, type OtaFixture } from './ota-fixtures.ts';
import { evccArgs, SlacRig } from './slac-rig.ts';
import { until } from '../support/until.ts';

/**
 * A charger and an OEM backend on real links, for `evcc charge` / `evcc run` (tests and the charge bench): two
 * network namespaces joined by a veth pair (the PLC segment).
 *   charger namespace (veth-se): `evcc sim evse-slac` (charger SLAC host), the EV's modem simulator, and the SECC
 *                                simulator (SDP + TLS 1.2 + SupportedAppProtocol) presenting a PKI-B chain;
 *   EV namespace (veth-ev):      the vehicle's programs, the charger's modem simulator (see sim/modem), and on
 *                                the namespace's loopback (standing in for the vehicle's uplink) Debian mosquitto
 *                                (mTLS, per-vehicle ACL) with `evcc oem-backend` serving V2G roots A and B.
 */
export const VID = 'veh-charge-netns';

export interface Io {
  out: string[];
  err: string[];
}

export function lines(p: ChildProcess): Io {
  const io: Io = { out: [], err: [] };
  createInterface({ input: p.stdout! }).on('line', (l) => io.out.push(l));
  createInterface({ input: p.stderr! }).on('line', (l) => io.err.push(l));
  return io;
}

/** The bench store key (no TPM) for `--store-key-env EVCC_STORE_KEY`. */
export const storeKeyEnv = (): NodeJS.ProcessEnv => ({ ...process.env, EVCC_STORE_KEY: Buffer.from(STORE_KEY).toString('hex') });

export class ChargeRig {
  readonly children: ChildProcess[] = [];
  secc: Io = { out: [], err: [] };
  backend: Io = { out: [], err: [] };

  private constructor(readonly fx: OtaFixture, readonly rig: SlacRig, readonly broker: MosquittoBroker, readonly dir: string) {}

  static async start(): Promise<ChargeRig> {
    const fx = await otaFixture();
    const dir = await mkdtemp(join(tmpdir(), 'evcc-charge-'));
    let rig: SlacRig | undefined;
    let broker: MosquittoBroker | undefined;
    try {
      rig = await SlacRig.start({ charger: 'evcc-sim' });
      broker = await startMosquitto({ netns: rig.pair.ev });
      const r = new ChargeRig(fx, rig, broker, dir);
      await r.boot();
      return r;
    } catch (err) {
      await broker?.stop();
      await rig?.destroy();
      await fx.cleanup();
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private async boot(): Promise<void> {
    const { fx, dir, broker } = this;
    const { pair } = this.rig;
    // SECC (PKI-B: leaf + CPO Sub-CA 2 + Sub-CA 1) in the charger namespace.
    await writeFile(join(dir, 'secc-chain.pem'), chainPem({ name: 'b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' }));
    await writeFile(join(dir, 'secc.key'), fx.pki.b.seccLeaf.keyPem, { mode: 0o600 });
    // The charger verifies PnC signatures with the contract chain, anchored in the MO root.
    await writeFile(join(dir, 'mo-root.pem'), fx.pki.mo.root.pem);
    const seccChild = spawn('ip', ['netns', 'exec', pair.se, process.execPath, '--import', 'tsx', join(process.cwd(), 'bin/secc-sim.ts'), '--log-level', 'info',
      'sim-secc', '--iface', pair.seIf, '--scenario', 'normal-dc-pnc', '--transport', 'tls12', '--cert', join(dir, 'secc-chain.pem'), '--key', join(dir, 'secc.key'),
      '--contract-roots', join(dir, 'mo-root.pem')], { stdio: ['ignore', 'pipe', 'pipe'], cwd: process.cwd() });
    this.children.push(seccChild);
    this.secc = lines(seccChild);

    // Link credentials (per-vehicle client certificate), the OEM backend in the EV namespace next to the broker.
    for (const [name, cn] of [['backend', OEM_BACKEND_USER], ['vehicle', VID]] as const) {
      const id = await broker.identity(cn);
      await writeFile(join(dir, `${name}.pem`), id.cert as string);
      await writeFile(join(dir, `${name}.key`), id.key as string, { mode: 0o600 });
    }
    await writeFile(join(dir, 'link-ca.pem'), broker.ca.certPem);
    await writeFile(join(dir, 'oem-answer.key'), fx.signerKeyPem, { mode: 0o600 });
    this.backend = lines(this.spawnIn(pair.ev, ['--no-log-fields', 'oem-backend', '--pool', fx.poolDir, '--broker', broker.url, '--signing-key', join(dir, 'oem-answer.key'),
      '--ca', join(dir, 'link-ca.pem'), '--cert', join(dir, 'backend.pem'), '--key', join(dir, 'backend.key'), '--client-id', 'oem-backend-charge']));

    await until(() => this.secc.out.some((l) => l.includes('"ready"')), 30_000, 'SECC simulator');
    await until(() => this.backend.err.some((l) => l.includes('OEM backend ready')), 30_000, 'OEM backend');
  }

  /** The evcc CLI as one node process in a namespace (no tsx wrapper: signals reach it). */
  spawnIn(ns: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const [node, argv] = evccArgs(args);
    const c = spawn('ip', ['netns', 'exec', ns, node, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: process.cwd() });
    this.children.push(c);
    return c;
  }

  /** A vehicle data dir (factory root A, the OEM backend key, no TPM provisioning) and its config file. */
  async vehicle(name: string, extra: Record<string, unknown> = {}): Promise<{ config: string; dataDir: string }> {
    const { dir, fx, broker } = this;
    const dataDir = join(dir, `${name}-data`);
    const files = await FsStore.open(dataDir);
    await vehicleStore(files, [fx.pki.a.root.der]);
    await installBackendKey(files, fx.signer.publicKeyPem);
    const config = join(dir, `${name}.json`);
    await writeFile(config, JSON.stringify({
      vehicleId: VID, dataDir, runDir: join(dir, `${name}-run`), plcInterface: this.rig.pair.evIf,
      ota: { brokerUrl: broker.url, protocolVersion: 5, caFile: join(dir, 'link-ca.pem'), certFile: join(dir, 'vehicle.pem'), keyFile: join(dir, 'vehicle.key'), fallback: 'eim' },
      // The battery model charges 20 → 80 % in a few seconds (a real vehicle's BMS port has no time scale).
      ev: { sim: { timeScale: 1200 } },
      ...extra,
    }));
    return { config, dataDir };
  }

  /** The vehicle's retained state topic as the OEM backend sees it (a client in the EV namespace, backend identity). */
  async retainedState(): Promise<Record<string, unknown>> {
    const id = await this.broker.identity(OEM_BACKEND_USER);
    const script = `import mqtt from 'mqtt';
const c = mqtt.connect(${JSON.stringify(this.broker.url)}, { protocolVersion: 5, ca: ${JSON.stringify(id.ca)}, cert: ${JSON.stringify(id.cert)}, key: ${JSON.stringify(id.key)}, clientId: 'state-probe', reconnectPeriod: 0 });
c.on('connect', () => c.subscribe(${JSON.stringify(`evcc/v1/${VID}/state`)}));
c.on('message', (_t, p) => { process.stdout.write(p.toString() + '\\n'); c.end(true, () => process.exit(0)); });
setTimeout(() => process.exit(2), 5000);`;
    const child = spawn('ip', ['netns', 'exec', this.rig.pair.ev, process.execPath, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], cwd: process.cwd() });
    this.children.push(child);
    const io = lines(child);
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    await new Promise((r) => setTimeout(r, 20));
    if (code !== 0) throw new Error(`state probe failed (${code}): ${io.err.join('\n')}`);
    return JSON.parse(io.out[0]!) as Record<string, unknown>;
  }

  async destroy(): Promise<void> {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await this.broker.stop();
    await this.rig.destroy();
    await this.fx.cleanup();
    await rm(this.dir, { recursive: true, force: true });
  }
}
