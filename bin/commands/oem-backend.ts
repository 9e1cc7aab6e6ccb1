import { generateKeyPairSync } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { dynamicSecurityConfig } from '../../deploy/oem-backend/broker-dynsec.ts';
import { startEmbeddedBroker } from '../../deploy/oem-backend/embedded-broker.ts';
import { createLinkCa, issueLinkCert } from '../../deploy/oem-backend/link-pki.ts';
import { RootCertificatePool } from '../../deploy/oem-backend/pool.ts';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { registerAttestationCommands, startAttestationService } from './oem-backend-attestation.ts';
import { BundleServer } from '../../deploy/oem-backend/bundle-server.ts';
import { JobService, releaseFromFiles } from '../../deploy/oem-backend/jobs.ts';
import { SecurityLogCollector, SecurityLogService } from '../../deploy/oem-backend/security-log.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { EvccError } from '../../core/errors.ts';
import { BACKEND_SHARE_GROUP, SHARE_GROUP_PATTERN, VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';
import { MqttJsConnector, parseBrokerUrl } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttTlsIdentity } from '../../hal/mqtt/types.ts';
import { createRuntime, type GlobalOptions } from '../runtime.ts';

/**
 * `evcc oem-backend` — the OEM backend reference service and its bench tools (composition root):
 *   evcc oem-backend --pool DIR --broker URL --signing-key FILE [--ca/--cert/--key]   serve root-CA requests
 *   evcc oem-backend keygen --out FILE                 answer-signing key + the public key for vehicle production
 *   evcc oem-backend link-pki --out DIR --vehicle ID…  link CA, broker server cert, backend + vehicle client certs
 *   evcc oem-backend broker-dynsec --fleet FILE --out FILE  mosquitto dynamic-security roles (backend, each vehicle)
 *   evcc oem-backend broker [--port N] [--tls-dir DIR] embedded aedes broker with the per-vehicle ACL (bench)
 *   evcc oem-backend campaign create|show --jobs-dir DIR …  update campaigns (signed jobs per vehicle, their states)
 * `serve --jobs-dir DIR` answers the vehicles' job topics; `--bundle-dir DIR --bundle-port N` serves the bundles.
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
  attestationDir?: string;
  attestationPeriod: number;
  securityLogDir?: string;
  jobsDir?: string;
  jobSigningKey?: string;
  bundleDir?: string;
  bundlePort: string;
  bundleHost: string;
  bundleCert?: string;
  bundleKey?: string;
}

async function readText(p: string): Promise<string> {
  try {
    return await readFile(p, 'utf8');
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', `cannot read ${p}`, { path: p }, { cause: err });
  }
}

function portOf(flag: string, v: string): number {
  const port = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (!(port >= 0 && port <= 65535)) throw new EvccError('CONFIG_INVALID', `${flag} must be an integer 0…65535, got "${v}"`, { port: v });
  return port;
}

export function registerOemBackend(program: Command, globals: () => GlobalOptions): void {
  const cmd = program.command('oem-backend').description('OEM backend reference service: root-CA answers over MQTT, update campaigns and the bundle server');

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
    .option('--attestation-dir <dir>', 'also verify the vehicles\' attestation quotes with this registry (evcc oem-backend attestation)')
    .addOption(new Option('--attestation-period <s>', 're-attest every registered vehicle this often (seconds; 0 = only after each hello)').argParser(Number).default(3600))
    .option('--security-log-dir <dir>', 'also take the vehicles\' security-log uploads (log/req), verified with their registered log keys (`security-log register`)')
    .option('--jobs-dir <dir>', 'update campaigns: job store (answers jobs/<id>/get|update; campaigns made with `campaign create`)')
    .option('--job-signing-key <file>', 'job-signing key (PKCS#8 PEM, EC P-256; default: --signing-key, jobs have their own signing context)')
    .option('--bundle-dir <dir>', 'serve the *.raucb files of this directory over HTTPS at /bundles/<name> (Range support)')
    .option('--bundle-port <n>', 'bundle server port', '8443')
    .option('--bundle-host <addr>', 'bundle server listen address', '127.0.0.1')
    .option('--bundle-cert <file>', 'bundle server certificate (PEM, server auth; e.g. broker.pem from link-pki)')
    .option('--bundle-key <file>', 'bundle server key (PEM; passphrase from --key-pass-env when encrypted)')
    .action(async (o: ServeOptions) => {
      parseBrokerUrl(o.broker);
      if (o.share && !SHARE_GROUP_PATTERN.test(o.shareGroup)) throw new EvccError('CONFIG_INVALID', `--share-group "${o.shareGroup}" must be 1–64 characters without / + # or spaces`);
      for (const [flag, v] of [['--rate-limit', o.rateLimit], ['--rate-burst', o.rateBurst]] as const) {
        if (!Number.isFinite(v) || v <= 0) throw new EvccError('CONFIG_INVALID', `${flag} must be a positive number`);
      }
      if (o.bundleDir && (!o.bundleCert || !o.bundleKey)) throw new EvccError('CONFIG_INVALID', '--bundle-dir needs --bundle-cert and --bundle-key (HTTPS only)');
      const bundlePort = portOf('--bundle-port', o.bundlePort);
      const rt = await createRuntime(globals());
      const log = rt.log('OEM');
      let bundles: BundleServer | undefined;
      try {
        const passphrase = o.signingKeyPassEnv ? process.env[o.signingKeyPassEnv] : undefined;
        if (o.signingKeyPassEnv && passphrase === undefined) throw new EvccError('CONFIG_INVALID', `environment variable ${o.signingKeyPassEnv} is not set`);
        const signer = await KeyObjectSigner.fromFile(o.signingKey, passphrase);
        const pool = await RootCertificatePool.load(o.pool, log);
        const fleet = o.fleet
          ? new Set((await readFile(o.fleet, 'utf8')).split('\n').map((l) => l.trim()).filter((l) => VEHICLE_ID_PATTERN.test(l)))
          : undefined;
        const tls = await readIdentity(o);
        const jobs = o.jobsDir
          ? new JobService({ store: await FsStore.open(o.jobsDir), signer: o.jobSigningKey ? await KeyObjectSigner.fromFile(o.jobSigningKey, passphrase) : signer, log })
          : undefined;
        if (o.bundleDir) {
          const keyPass = o.keyPassEnv ? process.env[o.keyPassEnv] : undefined;
          bundles = new BundleServer({ dir: o.bundleDir, cert: await readText(o.bundleCert!), key: await readText(o.bundleKey!), ...(keyPass ? { passphrase: keyPass } : {}), host: o.bundleHost, port: bundlePort, log });
          await bundles.start();
        }
        const backend = new OemBackend({
          connector: new MqttJsConnector(), url: o.broker, protocolVersion: o.mqttVersion === '4' ? 4 : 5, ...(tls ? { tls } : {}),
          ...(o.clientId ? { clientId: o.clientId } : {}), shareGroup: o.share ? o.shareGroup : false, pool, signer, clock: rt.clock, log, ...(fleet ? { fleet } : {}),
          rateLimit: { perSecond: o.rateLimit, burst: o.rateBurst }, ...(jobs ? { jobs } : {}),
          ...(o.securityLogDir ? { securityLogs: new SecurityLogService(new SecurityLogCollector({ store: await FsStore.open(o.securityLogDir), log }), log) } : {}),
        });
        const onHup = () => void pool.reload().catch((err: unknown) => log.error({ error: String(err) }, 'pool reload failed'));
        process.on('SIGHUP', onHup);
        const stopped = waitForSignal();
        await Promise.race([backend.start(), stopped]);
        const attestation = o.attestationDir
          ? await startAttestationService({ dir: o.attestationDir, broker: o.broker, protocolVersion: o.mqttVersion === '4' ? 4 : 5, ...(tls ? { tls } : {}), shareGroup: o.share ? o.shareGroup : false, clock: rt.clock, log, periodSeconds: o.attestationPeriod })
          : undefined;
        log.info({ clientId: backend.clientId, shareGroup: backend.shareGroup ?? null, pool: pool.size, keyId: signer.keyId.slice(0, 16), fleet: fleet?.size }, 'OEM backend ready');
        const why = await stopped;
        process.off('SIGHUP', onHup);
        log.info({ signal: why, ...backend.stats }, 'OEM backend stopping');
        await attestation?.stop();
        await backend.stop();
      } finally {
        await bundles?.stop();
        await rt.close();
      }
    });

  registerCampaign(cmd, globals);

  registerAttestationCommands(cmd);

  const securityLog = cmd.command('security-log').description('the vehicles\' security logs as uploaded (deploy/oem-backend/security-log.ts)');
  securityLog.command('register')
    .description('register a vehicle\'s security-log key (its provisioning export\'s security-log.pub.pem): uploads are verified with it')
    .argument('<vehicle-id>')
    .requiredOption('--key <pem>', 'security-log.pub.pem of the vehicle')
    .requiredOption('--dir <dir>', 'the backend\'s security-log directory (serve --security-log-dir)')
    .action(async (vehicleId: string, o: { key: string; dir: string }) => {
      const rt = await createRuntime(globals());
      try {
        const collector = new SecurityLogCollector({ store: await FsStore.open(o.dir), log: rt.log('OEM') });
        process.stdout.write(`${JSON.stringify({ vehicleId, ...(await collector.registerVehicle(vehicleId, await readText(o.key))) })}\n`);
      } finally {
        await rt.close();
      }
    });
  securityLog.command('show')
    .description('what the backend holds of a vehicle\'s security log: entry count, head seq/hash, signed through, unsigned checkpoints')
    .argument('<vehicle-id>')
    .requiredOption('--dir <dir>', 'the backend\'s security-log directory (serve --security-log-dir)')
    .action(async (vehicleId: string, o: { dir: string }) => {
      const rt = await createRuntime(globals());
      try {
        const head = await new SecurityLogCollector({ store: await FsStore.open(o.dir), log: rt.log('OEM') }).head(vehicleId);
        // Stored from the genesis entry on, so the head's seq counts the entries.
        process.stdout.write(`${JSON.stringify({ vehicleId, entries: head ? head.seq + 1 : 0, ...(head ? { head: { seq: head.seq, hash: head.hash }, signedThrough: head.signedThrough, unsignedCheckpoints: head.unsignedCheckpoints, updatedAt: head.updatedAt } : {}) })}\n`);
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
    .command('broker-dynsec')
    .description("mosquitto dynamic-security config for the OEM link: the backend's role (its $share group included), one role per vehicle")
    .requiredOption('--fleet <file>', 'vehicle ids, one per line (# comments)')
    .requiredOption('--out <file>', 'dynamic-security.json to write (0600, refuses to overwrite)')
    .option('--share-group <name>', 'the backend instances\' shared-subscription group', BACKEND_SHARE_GROUP)
    .option('--backend-user <cn>', 'CN of the backend link certificate', 'oem-backend')
    .action(async (o: { fleet: string; out: string; shareGroup: string; backendUser: string }) => {
      let text: string;
      try {
        text = await readFile(o.fleet, 'utf8');
      } catch (err) {
        throw new EvccError('CONFIG_INVALID', `cannot read ${o.fleet}`, { path: o.fleet }, { cause: err });
      }
      const vehicles = text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
      const config = dynamicSecurityConfig({ backendUser: o.backendUser, vehicles, shareGroup: o.shareGroup });
      try {
        await writeFile(o.out, `${JSON.stringify(config, null, 1)}\n`, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        throw new EvccError('CONFIG_INVALID', `cannot write ${o.out} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { path: o.out }, { cause: err });
      }
      process.stdout.write(`${o.out}: ${o.backendUser} + ${vehicles.length} vehicle roles\n`);
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

interface CampaignCreateOptions {
  jobsDir: string;
  signingKey: string;
  signingKeyPassEnv?: string;
  bundle: string;
  policy: string;
  url: string;
  compatible: string;
  vehicle: string[];
  validityDays: string;
  id?: string;
  broker?: string;
  ca?: string;
  cert?: string;
  key?: string;
  keyPassEnv?: string;
  mqttVersion: string;
}

function registerCampaign(cmd: Command, globals: () => GlobalOptions): void {
  const campaign = cmd.command('campaign').description('update campaigns: a signed job per vehicle for one release, and the job states');

  campaign
    .command('create')
    .description('sign a job per vehicle for a release (bundle + its signed state policy), queue them, notify the vehicles')
    .requiredOption('--jobs-dir <dir>', 'job store of the backend (the same as `serve --jobs-dir`)')
    .requiredOption('--signing-key <file>', 'job-signing key, PKCS#8 PEM (EC P-256)')
    .option('--signing-key-pass-env <name>', 'environment variable holding the signing key passphrase')
    .requiredOption('--bundle <file>', 'the signed RAUC bundle (size and SHA-256 go into the jobs)')
    .requiredOption('--policy <file>', 'the release\'s signed state policy (JSON, `evcc oem release`)')
    .requiredOption('--url <url>', 'https:// URL of the bundle on the bundle server')
    .requiredOption('--compatible <string>', 'RAUC compatible string of the target vehicles')
    .requiredOption('--vehicle <id...>', 'vehicle ids')
    .option('--validity-days <n>', 'how long the jobs stay valid', '14')
    .option('--id <campaignId>', 'campaign id (default c<random>)')
    .option('--broker <url>', 'also publish the retained jobs/notify now (else a running `serve --jobs-dir` does at its next start)')
    .option('--ca <file>', 'CA of the broker certificate (PEM)')
    .option('--cert <file>', 'backend client certificate (PEM)')
    .option('--key <file>', 'backend client key (PKCS#8 PEM)')
    .option('--key-pass-env <name>', 'environment variable holding the passphrase of --key')
    .addOption(new Option('--mqtt-version <v>', 'MQTT protocol version').choices(['4', '5']).default('5'))
    .action(async (o: CampaignCreateOptions) => {
      const days = Number(o.validityDays);
      if (!(days > 0 && days <= 365)) throw new EvccError('CONFIG_INVALID', `--validity-days must be 1…365, got "${o.validityDays}"`);
      if (o.broker) parseBrokerUrl(o.broker);
      const passphrase = o.signingKeyPassEnv ? process.env[o.signingKeyPassEnv] : undefined;
      if (o.signingKeyPassEnv && passphrase === undefined) throw new EvccError('CONFIG_INVALID', `environment variable ${o.signingKeyPassEnv} is not set`);
      let policy: unknown;
      try {
        policy = JSON.parse(await readText(o.policy));
      } catch (err) {
        if (err instanceof EvccError) throw err;
        throw new EvccError('CONFIG_INVALID', `${o.policy} is not JSON`, { path: o.policy }, { cause: err });
      }
      const rt = await createRuntime(globals());
      const log = rt.log('OEM');
      try {
        const signer = await KeyObjectSigner.fromFile(o.signingKey, passphrase);
        const jobs = new JobService({ store: await FsStore.open(o.jobsDir), signer, log });
        const release = await releaseFromFiles({ bundlePath: o.bundle, url: o.url, compatible: o.compatible, policy });
        const created = await jobs.createCampaign({ release, vehicles: o.vehicle, validityMs: days * 86_400_000, ...(o.id ? { campaignId: o.id } : {}) });
        if (o.broker) {
          const tls = await readIdentity(o);
          const client = new MqttJsConnector().connect({ url: o.broker, clientId: `oem-backend-campaign-${created.campaignId}`, protocolVersion: o.mqttVersion === '4' ? 4 : 5, ...(tls ? { tls } : {}), reconnectPeriodMs: 500 });
          try {
            const up = await new Promise<boolean>((resolve) => {
              const t = setTimeout(() => resolve(false), 10_000);
              const off = client.onStatus((st) => {
                if (st === 'connected') {
                  clearTimeout(t);
                  off();
                  resolve(true);
                }
              });
            });
            if (!up) throw new EvccError('OTA_BROKER_UNREACHABLE', `broker ${o.broker} not reachable within 10 s (campaign ${created.campaignId} is stored; serve notifies at its start)`);
            for (const v of new Set(o.vehicle)) await jobs.notify(v, client);
          } finally {
            await client.close();
          }
        }
        process.stdout.write(`${JSON.stringify(created, null, 2)}\n`);
      } finally {
        await rt.close();
      }
    });

  campaign
    .command('show')
    .description('print campaigns and the state of each job (status, progress, reason, history)')
    .requiredOption('--jobs-dir <dir>', 'job store of the backend')
    .option('--id <campaignId>', 'one campaign (default: all)')
    .action(async (o: { jobsDir: string; id?: string }) => {
      const rt = await createRuntime(globals());
      try {
        const readOnly = { keyId: '', sign: (): Uint8Array => { throw new EvccError('CONFIG_INVALID', 'campaign show signs nothing'); } };
        const jobs = new JobService({ store: await FsStore.open(o.jobsDir), signer: readOnly, log: rt.log('OEM') });
        const ids = o.id ? [o.id] : await jobs.campaigns();
        const out = [];
        for (const id of ids) {
          const c = await jobs.campaign(id);
          if (!c) throw new EvccError('CONFIG_INVALID', `no campaign ${id} in ${o.jobsDir}`, { campaignId: id });
          out.push({ ...c, jobs: await Promise.all(c.jobs.map(async (j) => ({ ...j, ...summary(await jobs.job(j.jobId)) }))) });
        }
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      } finally {
        await rt.close();
      }
    });
}

function summary(r: Awaited<ReturnType<JobService['job']>>): Record<string, unknown> {
  if (!r) return { status: 'missing' };
  return { status: r.status, progress: r.progress, reason: r.reason, code: r.code, updatedAt: r.updatedAt, history: r.history };
}
