import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dynamicSecurityConfig } from '../../deploy/oem-backend/broker-dynsec.ts';
import { BROKER_MAX_PACKET_BYTES } from '../../deploy/oem-backend/embedded-broker.ts';
import { createLinkCa, issueLinkCert, type LinkCa, type LinkCredential } from '../../deploy/oem-backend/link-pki.ts';
import type { MqttTlsIdentity } from '../../hal/mqtt/types.ts';

/**
 * A real Debian mosquitto for tests and benches (PLATFORM.md "MQTT broker in tests"): one mTLS listener on
 * 127.0.0.1:<free port>, `require_certificate` + `use_identity_as_username` (the client certificate's CN is the
 * user), and an ACL that confines each vehicle to `evcc/v1/<its CN>/#` while the OEM backend user may use every
 * vehicle's topics. Certificates come from a fresh link CA in a temp dir. `stop()` kills the broker and removes
 * the dir; `kill()` + `start()` bring it back on the same port (for reconnect tests).
 */
export const OEM_BACKEND_USER = 'oem-backend';

export interface MosquittoBroker {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly ca: LinkCa;
  /** TLS identity for a client whose certificate CN is `commonName` (a vehicle id or the backend user). */
  identity(commonName: string): Promise<MqttTlsIdentity>;
  /** Lines mosquitto logged so far (connections, ACL denials). */
  readonly log: string[];
  /** The broker process while it runs (CPU accounting in benches). */
  readonly pid: number | undefined;
  stop(): Promise<void>;
  /** Kills the broker process but keeps the config and the port, so `start()` can bring it back. */
  kill(): Promise<void>;
  start(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function portOpen(port: number, netns?: string): Promise<boolean> {
  if (netns) {
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', netns, 'bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: 'ignore' });
      p.once('exit', (code) => resolve(code === 0));
      p.once('error', () => resolve(false));
    });
  }
  return new Promise((resolve) => {
    const c = netConnect({ host: '127.0.0.1', port }, () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export interface MosquittoOptions {
  /** Extra ACL lines (appended). */
  extraAcl?: string[];
  /** Mosquitto's max_inflight / max_queued tuning for the throughput bench. */
  maxQueuedMessages?: number;
  /** mosquitto's max_connections (default -1, unlimited; the open-file limit caps it too). */
  maxConnections?: number;
  /** Run the broker inside this network namespace (its loopback), e.g. a VethPair's EV side. */
  netns?: string;
  /**
   * Authorise with the dynamic-security plugin instead of the acl_file (deploy/oem-backend/broker-dynsec.ts): it
   * checks subscriptions too. Only these vehicle ids (and the backend user) get any access.
   */
  dynsecVehicles?: string[];
}

/** Where Debian installs mosquitto's dynamic-security plugin (per architecture); undefined when absent. */
export function dynsecPluginPath(): string | undefined {
  return ['x86_64-linux-gnu', 'aarch64-linux-gnu', 'arm-linux-gnueabihf'].map((t) => `/usr/lib/${t}/mosquitto_dynamic_security.so`).find((p) => existsSync(p));
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<MosquittoBroker> {
  const dir = await mkdtemp(join(tmpdir(), 'evcc-mosq-'));
  const ca = await createLinkCa('evcc test link CA');
  const server = await issueLinkCert(ca, { commonName: 'mosquitto', server: { ips: ['127.0.0.1'], dns: ['localhost'] } });
  await writeFile(join(dir, 'ca.pem'), ca.certPem, { mode: 0o600 });
  await writeFile(join(dir, 'server.pem'), server.certPem, { mode: 0o600 });
  await writeFile(join(dir, 'server.key'), server.keyPem, { mode: 0o600 });
  const acl = [
    // Each vehicle (user = certificate CN) reads and writes only its own prefix [ARCHITECTURE.md §4].
    'pattern readwrite evcc/v1/%u/#',
    `user ${OEM_BACKEND_USER}`,
    'topic readwrite evcc/v1/#',
    ...(options.extraAcl ?? []),
    '',
  ].join('\n');
  await writeFile(join(dir, 'acl'), acl, { mode: 0o600 });
  const plugin = options.dynsecVehicles ? dynsecPluginPath() : undefined;
  if (options.dynsecVehicles) {
    if (!plugin) throw new Error('mosquitto dynamic-security plugin not installed');
    const config = dynamicSecurityConfig({ backendUser: OEM_BACKEND_USER, vehicles: options.dynsecVehicles });
    await writeFile(join(dir, 'dynamic-security.json'), JSON.stringify(config, null, 1), { mode: 0o600 });
  }
  const log: string[] = [];
  let port = 0;
  let child: ChildProcess | undefined;
  const identities = new Map<string, MqttTlsIdentity>();

  const writeConfig = async () => {
    const conf = [
      // Started as root, mosquitto drops privileges before reading the cert files (PLATFORM.md).
      'user root',
      'per_listener_settings false',
      'persistence false',
      'log_dest stdout',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      'log_timestamp false',
      'allow_anonymous false',
      ...(plugin ? [`plugin ${plugin}`, `plugin_opt_config_file ${join(dir, 'dynamic-security.json')}`] : [`acl_file ${join(dir, 'acl')}`]),
      `max_queued_messages ${options.maxQueuedMessages ?? 10000}`,
      `max_connections ${options.maxConnections ?? -1}`,
      // Small request/answer packets: without this, Nagle + delayed ACK add ~40 ms per hop.
      'set_tcp_nodelay true',
      // Size cap as in deploy/oem-backend/mosquitto.conf (the value lives in embedded-broker.ts).
      `max_packet_size ${BROKER_MAX_PACKET_BYTES}`,
      `listener ${port} 127.0.0.1`,
      `cafile ${join(dir, 'ca.pem')}`,
      `certfile ${join(dir, 'server.pem')}`,
      `keyfile ${join(dir, 'server.key')}`,
      'require_certificate true',
      'use_identity_as_username true',
      'tls_version tlsv1.2',
      '',
    ].join('\n');
    await writeFile(join(dir, 'mosquitto.conf'), conf, { mode: 0o600 });
  };

  /** Spawns mosquitto on the configured port; true once it accepts connections, false if it exited. */
  const launch = async (): Promise<boolean> => {
    const args = ['-c', join(dir, 'mosquitto.conf')];
    // `ip netns exec` execs mosquitto in place, so the child pid is the broker's own.
    const proc = options.netns
      ? spawn('ip', ['netns', 'exec', options.netns, 'mosquitto', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('mosquitto', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let exited = false;
    proc.once('exit', () => {
      exited = true;
      if (child === proc) child = undefined;
    });
    const collect = (b: Buffer) => log.push(...b.toString('utf8').split('\n').filter(Boolean));
    proc.stdout!.on('data', collect);
    proc.stderr!.on('data', collect);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !exited) {
      if (await portOpen(port, options.netns)) return true;
      await new Promise((r) => setTimeout(r, 25));
    }
    proc.kill('SIGKILL');
    return false;
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  };

  // A parallel test may take the probed port before mosquitto binds it: then pick another one.
  let started = false;
  for (let attempt = 0; attempt < 4 && !started; attempt++) {
    port = await freePort();
    await writeConfig();
    started = await launch();
  }
  if (!started) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`mosquitto did not start: ${log.slice(-5).join(' | ')}`);
  }
  return {
    get url() {
      return `mqtts://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    get pid() {
      return child?.pid;
    },
    dir,
    ca,
    log,
    async identity(commonName: string) {
      let id = identities.get(commonName);
      if (!id) {
        const c: LinkCredential = await issueLinkCert(ca, { commonName });
        id = { ca: ca.certPem, cert: c.certPem, key: c.keyPem };
        identities.set(commonName, id);
      }
      return id;
    },
    kill,
    async start() {
      // Same port: clients reconnect to the URL they know.
      if (!child && !(await launch())) throw new Error(`mosquitto did not restart: ${log.slice(-5).join(' | ')}`);
    },
    async stop() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
