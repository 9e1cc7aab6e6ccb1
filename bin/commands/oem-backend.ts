import { generateKeyPairSync } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { startEmbeddedBroker } from '../../deploy/oem-backend/embedded-broker.ts';
import { createLinkCa, issueLinkCert } from '../../deploy/oem-backend/link-pki.ts';
import { RootCertificatePool } from '../../deploy/oem-backend/pool.ts';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { EvccError } from '../../core/errors.ts';
import { BACKEND_SHARE_GROUP, VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';
import { MqttJsConnector, parseBrokerUrl } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttTlsIdentity } from '../../hal/mqtt/types.ts';
import { createRuntime, type GlobalOptions } from '../runtime.ts';

/**
 * `evcc oem-backend` — the OEM backend reference service and its bench tools (composition root):
 *   evcc oem-backend --pool DIR --broker URL --signing-key FILE [--ca/--cert/--key]   serve root-CA requests
 *   evcc oem-backend keygen --out FILE                 answer-signing key + the public key for vehicle production
 *   evcc oem-backend link-pki --out DIR --vehicle ID…  link CA, broker server cert, backend + vehicle client certs
 *   evcc oem-backend broker [--port N] [--tls-dir DIR] embedded aedes broker with the per-vehicle ACL (bench)
 */
export async function readIdentity(o: { ca?: string; cert?: string; key?: string; keyPassEnv?: string }): Promise<MqttTlsIdentity | undefined> {
  if (!o.ca && !o.cert && !o.key) return undefined;
  if (!o.ca || !o.cert || !o.key) throw new EvccError('CONFIG_INVALID', 'mutual TLS needs --ca, --cert and --key together');
  const read = async (p: string) => {
    try {
      return await readFile(p, 'utf8');
    } catch (err) {
      throw new EvccError('CONFIG_INVALID', `cannot read ${p}`, { path: p }, { cause: err });
    }
  };
  const passphrase = o.keyPassEnv ? process.env[o.keyPassEnv] : undefined;
  if (o.keyPassEnv && !passphrase) throw new EvccError('CONFIG_INVALID', `environment variable ${o.keyPassEnv} is not set`);
  const key = await read(o.key);
  if (!passphrase && !/BEGIN ENCRYPTED PRIVATE KEY/.test(key)) {
    // Allowed for bench link credentials only; a vehicle keeps its link key encrypted (TPM-sealed passphrase).
    process.stderr.write(`evcc: warning: ${o.key} is an unencrypted private key (bench use only)\n`);
  }
  return { ca: await read(o.ca), cert: await read(o.cert), key, ...(passphrase ? { passphrase } : {}) };
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const done = (s: string) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(s);
    };
    const onInt = () => done('SIGINT');
    const onTerm = () => done('SIGTERM');
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
  });
}

interface ServeOptions {
  pool: string;
  broker: string;
  signingKey: string;
  signingKeyPassEnv?: string;
  ca?: string;
  cert?: string;
  key?: string;
  keyPassEnv?: string;
  mqttVersion: string;
  clientId?: string;
  shareGroup: string;
  share: boolean;
  fleet?: string;
  rateLimit: number;
  rateBurst: number;
}

export function registerOemBackend(program: Command, globals: () => GlobalOptions): void {
  const cmd = program.command('oem-backend').description('OEM backend reference service: root-CA answers from a Root Certificate Pool over MQTT');

  cmd
    .command('serve', { isDefault: true })
    .description('connect to the broker and answer root-CA / root-list requests (default subcommand)')
    .requiredOption('--pool <dir>', 'Root Certificate Pool directory (*.pem, *.crt, *.der)')
    .requiredOption('--broker <url>', 'mqtts://host:port (mutual TLS) or mqtt://127.0.0.1:port (embedded bench broker)')
    .requiredOption('--signing-key <file>', 'answer-signing key, PKCS#8 PEM (EC P-256), optionally encrypted')
    .option('--signing-key-pass-env <name>', 'environment variable holding the signing key passphrase')
    .option('--ca <file>', 'CA of the broker certificate (PEM)')
    .option('--cert <file>', 'backend client certificate (PEM, CN = oem-backend)')
    .option('--key <file>', 'backend client key (PKCS#8 PEM, preferably encrypted)')
    .option('--key-pass-env <name>', 'environment variable holding the passphrase of --key')
    .addOption(new Option('--mqtt-version <v>', 'MQTT protocol version').choices(['4', '5']).default('5'))
    .option('--client-id <id>', 'MQTT client id, unique per instance (default oem-backend-<random>)')
    .option('--share-group <name>', 'shared-subscription group of the backend instances ($share/<name>/…)', BACKEND_SHARE_GROUP)
    .option('--no-share', 'plain subscriptions with a persistent session (one instance, broker without $share)')
    .option('--fleet <file>', 'serve only the vehicle ids listed in this file (one per line)')
    .addOption(new Option('--rate-limit <perSecond>', 'per-vehicle requests per second (token bucket)').argParser(Number).default(5))
    .addOption(new Option('--rate-burst <n>', 'per-vehicle burst').argParser(Number).default(20))
    .action(async (o: ServeOptions) => {
      parseBrokerUrl(o.broker);
      if (o.share && !/^[^/+#\s]{1,64}$/.test(o.shareGroup)) throw new EvccError('CONFIG_INVALID', `--share-group "${o.shareGroup}" must be 1–64 characters without / + # or spaces`);
      for (const [flag, v] of [['--rate-limit', o.rateLimit], ['--rate-burst', o.rateBurst]] as const) {
        if (!Number.isFinite(v) || v <= 0) throw new EvccError('CONFIG_INVALID', `${flag} must be a positive number`);
      }
      const rt = await createRuntime(globals());
      const log = rt.log('OEM');
      try {
        const passphrase = o.signingKeyPassEnv ? process.env[o.signingKeyPassEnv] : undefined;
        if (o.signingKeyPassEnv && passphrase === undefined) throw new EvccError('CONFIG_INVALID', `environment variable ${o.signingKeyPassEnv} is not set`);
        const signer = await KeyObjectSigner.fromFile(o.signingKey, passphrase);
        const pool = await RootCertificatePool.load(o.pool, log);
        const fleet = o.fleet
          ? new Set((await readFile(o.fleet, 'utf8')).split('\n').map((l) => l.trim()).filter((l) => VEHICLE_ID_PATTERN.test(l)))
          : undefined;
        const tls = await readIdentity(o);
        const backend = new OemBackend({
          connector: new MqttJsConnector(), url: o.broker, protocolVersion: o.mqttVersion === '4' ? 4 : 5, ...(tls ? { tls } : {}),
          ...(o.clientId ? { clientId: o.clientId } : {}), shareGroup: o.share ? o.shareGroup : false, pool, signer, clock: rt.clock, log, ...(fleet ? { fleet } : {}),
          rateLimit: { perSecond: o.rateLimit, burst: o.rateBurst },
        });
        const onHup = () => void pool.reload().catch((err: unknown) => log.error({ error: String(err) }, 'pool reload failed'));
        process.on('SIGHUP', onHup);
        const stopped = waitForSignal();
        await Promise.race([backend.start(), stopped]);
        log.info({ clientId: backend.clientId, shareGroup: backend.shareGroup ?? null, pool: pool.size, keyId: signer.keyId.slice(0, 16), fleet: fleet?.size }, 'OEM backend ready');
        const why = await stopped;
        process.off('SIGHUP', onHup);
        log.info({ signal: why, ...backend.stats }, 'OEM backend stopping');
        await backend.stop();
      } finally {
        await rt.close();
      }
    });

  cmd
    .command('keygen')
    .description('create the answer-signing key (PKCS#8 PEM, 0600) and print the public key to install in vehicles')
    .requiredOption('--out <file>', 'private key file to write (refuses to overwrite)')
    .option('--pass-env <name>', 'encrypt the key with the passphrase in this environment variable (AES-256-CBC)')
    .option('--public-out <file>', 'also write the public key (SPKI PEM) here')
    .action(async (o: { out: string; passEnv?: string; publicOut?: string }) => {
      const passphrase = o.passEnv ? process.env[o.passEnv] : undefined;
      if (o.passEnv && !passphrase) throw new EvccError('CONFIG_INVALID', `environment variable ${o.passEnv} is not set`);
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const pem = privateKey.export({ type: 'pkcs8', format: 'pem', ...(passphrase ? { cipher: 'aes-256-cbc', passphrase } : {}) }).toString();
      await writeFile(o.out, pem, { mode: 0o600, flag: 'wx' });
      const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      if (o.publicOut) await writeFile(o.publicOut, pub, { mode: 0o644, flag: 'wx' });
      process.stdout.write(pub);
    });

  cmd
    .command('link-pki')
    .description('bench provisioning of the MQTT link: CA, broker server cert, backend and vehicle client certs (PEM, keys 0600)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--vehicle <id...>', 'vehicle ids (certificate CN)', [])
    .option('--server-ip <ip...>', 'broker addresses for the server certificate', ['127.0.0.1'])
    .option('--server-dns <name...>', 'broker host names for the server certificate', ['localhost'])
    .action(async (o: { out: string; vehicle: string[]; serverIp: string[]; serverDns: string[] }) => {
      for (const v of o.vehicle) if (!VEHICLE_ID_PATTERN.test(v)) throw new EvccError('CONFIG_INVALID', `vehicle id not allowed: ${v}`);
      await mkdir(o.out, { recursive: true, mode: 0o700 });
      const ca = await createLinkCa();
      const put = async (name: string, c: { certPem: string; keyPem: string }) => {
        await writeFile(join(o.out, `${name}.pem`), c.certPem, { mode: 0o644 });
        await writeFile(join(o.out, `${name}.key`), c.keyPem, { mode: 0o600 });
      };
      await writeFile(join(o.out, 'ca.pem'), ca.certPem, { mode: 0o644 });
      await put('broker', await issueLinkCert(ca, { commonName: 'broker', server: { ips: o.serverIp, dns: o.serverDns } }));
      await put('oem-backend', await issueLinkCert(ca, { commonName: 'oem-backend' }));
      for (const v of o.vehicle) await put(v, await issueLinkCert(ca, { commonName: v }));
      process.stdout.write(`${o.out}: ca.pem broker.{pem,key} oem-backend.{pem,key} ${o.vehicle.map((v) => `${v}.{pem,key}`).join(' ')}\n`);
    });

  cmd
    .command('broker')
    .description('embedded MQTT 3.1.1 broker (aedes) with the per-vehicle ACL, for benches without mosquitto')
    .option('--port <n>', 'listen port (0 = free)', '1883')
    .option('--host <addr>', 'listen address', '127.0.0.1')
    .option('--tls-dir <dir>', 'serve mutual TLS with ca.pem + broker.pem/broker.key from `link-pki`')
    .action(async (o: { port: string; host: string; tlsDir?: string }) => {
      const port = /^\d{1,5}$/.test(o.port) ? Number(o.port) : NaN;
      if (!(port >= 0 && port <= 65535)) throw new EvccError('CONFIG_INVALID', `--port must be an integer 0…65535, got "${o.port}"`, { port: o.port });
      const rt = await createRuntime(globals());
      const log = rt.log('OEM');
      try {
        const read = async (name: string) => {
          const p = join(o.tlsDir!, name);
          try {
            return await readFile(p, 'utf8');
          } catch (err) {
            throw new EvccError('CONFIG_INVALID', `cannot read ${p}`, { path: p }, { cause: err });
          }
        };
        const tls = o.tlsDir ? { ca: await read('ca.pem'), cert: await read('broker.pem'), key: await read('broker.key') } : undefined;
        const broker = await startEmbeddedBroker({ port, host: o.host, ...(tls ? { tls } : {}), log });
        // Handlers first: a supervisor may send SIGTERM as soon as it reads the "listening" line.
        const stopped = waitForSignal();
        log.info({ url: broker.url }, `embedded broker listening on ${broker.url}`);
        await stopped;
        await broker.close();
      } finally {
        await rt.close();
      }
    });
}
