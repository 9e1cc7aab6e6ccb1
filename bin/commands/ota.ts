import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { EvccError } from '../../firmware/errors.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { installBackendKey, loadBackendTrust } from '../../firmware/ota/backend-key.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { rootStoreOf, validateSeccPath } from '../../firmware/ota/pki-adapter.ts';
import { OemRootFetcher } from '../../firmware/ota/root-fetch.ts';
import { syncRootList } from '../../firmware/ota/root-sync.ts';
import { OtaSettings } from '../../firmware/ota/settings.ts';
import { connectWithRootFetch, rootFetchBudget } from '../../firmware/ota/unknown-root.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';
import { connectTls } from '../../firmware/tls/connect.ts';
import { V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS } from '../../firmware/session/timers.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { createRuntime, type GlobalOptions, type Runtime } from '../runtime.ts';
import { readIdentity } from './oem-backend.ts';

/**
 * `evcc ota` — the vehicle's side of the OEM backend link (composition root):
 *   evcc ota install-backend-key FILE            production: install the OEM backend's answer-verification key
 *   evcc ota sync-roots                          proactive mode: fetch the full V2G root list, install what is missing
 *   evcc ota tls-connect --secc ADDR --port N    TLS to a SECC with the unknown-root path (Kilic 2023 Fig. 11 → 12)
 * Link options come from the `ota` config section; flags override it.
 *
 * The certificate store's integrity key comes from the environment variable named by --store-key-env (hex, ≥ 32
 * bytes): a bench arrangement until the TPM-held HMAC guard is wired (firmware/pki/store.ts says production uses one).
 */
interface LinkFlags {
  broker?: string;
  vehicleId?: string;
  ca?: string;
  cert?: string;
  key?: string;
  keyPassEnv?: string;
  mqttVersion?: string;
  dataDir?: string;
  storeKeyEnv: string;
}

function addLinkOptions(c: Command): Command {
  return c
    .option('--broker <url>', 'OEM backend broker (mqtts://host:port); default: config ota.brokerUrl')
    .option('--vehicle-id <id>', 'vehicle id (topic prefix and client certificate CN); default: config vehicleId')
    .option('--ca <file>', 'CA of the broker certificate (PEM)')
    .option('--cert <file>', 'vehicle client certificate (PEM)')
    .option('--key <file>', 'vehicle client key (encrypted PKCS#8 PEM; see --key-pass-env)')
    .option('--key-pass-env <name>', 'environment variable holding the passphrase of --key (unsealed from the TPM by the service wrapper)')
    .addOption(new Option('--mqtt-version <v>', 'MQTT protocol version').choices(['4', '5']))
    .option('--data-dir <dir>', 'persistent data dir (certificate store); default: config dataDir')
    .option('--store-key-env <name>', 'environment variable with the store integrity key (hex)', 'EVCC_STORE_KEY');
}

async function openStore(rt: Runtime, f: LinkFlags): Promise<{ files: FsStore; store: CertificateStore }> {
  const hex = process.env[f.storeKeyEnv];
  if (!hex || !/^([0-9a-fA-F]{2}){32,}$/.test(hex)) {
    throw new EvccError('CONFIG_INVALID', `environment variable ${f.storeKeyEnv} must hold the store integrity key (≥ 32 bytes hex)`);
  }
  const files = await FsStore.open(f.dataDir ?? rt.settings.dataDir);
  const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(new Uint8Array(Buffer.from(hex, 'hex'))), log: rt.log('PKI') });
  return { files, store };
}

async function openLink(rt: Runtime, f: LinkFlags): Promise<{ link: OtaLink; settings: OtaSettings; vehicleId: string }> {
  const settings = parseSettings(OtaSettings, rt.rawConfig.ota ?? {}, 'ota');
  const vehicleId = f.vehicleId ?? rt.settings.vehicleId;
  const tls = await readIdentity({ ca: f.ca ?? settings.caFile, cert: f.cert ?? settings.certFile, key: f.key ?? settings.keyFile, ...(f.keyPassEnv ? { keyPassEnv: f.keyPassEnv } : {}) });
  const url = f.broker ?? settings.brokerUrl;
  if (url.startsWith('mqtts://') && !tls) throw new EvccError('CONFIG_INVALID', 'mqtts:// needs the vehicle link credentials (--ca, --cert, --key)');
  const link = new OtaLink({
    connector: new MqttJsConnector(), url, vehicleId, protocolVersion: f.mqttVersion ? (f.mqttVersion === '4' ? 4 : 5) : settings.protocolVersion,
    ...(tls ? { tls } : {}), clock: rt.clock, log: rt.log('OTA'), reconnectPeriodMs: settings.reconnectPeriodMs, keepaliveSeconds: settings.keepaliveSeconds,
  });
  return { link, settings, vehicleId };
}

export function registerOta(program: Command, globals: () => GlobalOptions): void {
  const cmd = program.command('ota').description('OEM backend link: V2G root fetch and sync (Solution C), backend key');

  cmd
    .command('install-backend-key <file>')
    .description('production step: install the OEM backend answer-verification key (EC P-256 public key, PEM)')
    .option('--data-dir <dir>', 'persistent data dir; default: config dataDir')
    .action(async (file: string, o: { dataDir?: string }) => {
      const rt = await createRuntime(globals());
      try {
        const files = await FsStore.open(o.dataDir ?? rt.settings.dataDir);
        const trust = await installBackendKey(files, await readFile(file, 'utf8'));
        rt.log('OTA').info({ keyId: trust.keyId }, 'OEM backend key installed');
      } finally {
        await rt.close();
      }
    });

  addLinkOptions(cmd.command('sync-roots'))
    .description('fetch the Root Certificate Pool\'s V2G roots from the OEM backend and install the missing ones')
    .addOption(new Option('--budget-ms <ms>', 'time allowed for the sync').argParser(Number))
    .action(async (o: LinkFlags & { budgetMs?: number }) => {
      const rt = await createRuntime(globals());
      const { link, settings, vehicleId } = await openLink(rt, o);
      try {
        const { files, store } = await openStore(rt, o);
        const result = await syncRootList({
          rpc: link.rootListRpc, vehicleId, trust: await loadBackendTrust(files), store: rootStoreOf(store), clock: rt.clock, log: rt.log('OTA'),
          budgetMs: o.budgetMs ?? settings.proactiveSync.budgetMs,
        });
        process.stdout.write(`${JSON.stringify(result)}\n`);
      } finally {
        await link.close();
        await rt.close();
      }
    });

  addLinkOptions(cmd.command('tls-connect'))
    .description('TLS to a SECC; on TLS_UNKNOWN_ROOT fetch the root from the OEM backend, install it, retry once')
    .requiredOption('--secc <address>', 'SECC address (IPv6 link-local without scope, or IPv4 for loopback benches)')
    .requiredOption('--port <n>', 'SECC TLS port', Number)
    .option('--iface <name>', 'interface scoping a link-local SECC address')
    .addOption(new Option('--setup-ms <ms>', 'communication-setup time left at the TLS stage').argParser(Number).default(V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS))
    .addOption(new Option('--fallback <policy>', 'when no root can be had in time').choices(['retry-later', 'eim']))
    .action(async (o: LinkFlags & { secc: string; port: number; iface?: string; setupMs: number; fallback?: 'retry-later' | 'eim' }) => {
      const rt = await createRuntime(globals());
      const start = rt.clock.now();
      const { link, settings, vehicleId } = await openLink(rt, o);
      try {
        const { files, store } = await openStore(rt, o);
        const tlsLog = rt.log('TLS');
        const fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId, trust: await loadBackendTrust(files), clock: rt.clock, log: rt.log('OTA'), validatePath: validateSeccPath });
        const connector = new NodeTlsConnector();
        tlsLog.info(`starting TLS connection to [${o.secc}]:${o.port}${o.iface ? ` on ${o.iface}` : ''}`);
        const result = await connectWithRootFetch({
          connectTls: () => connectTls({ connector, trust: store, log: tlsLog }, { secc: { address: o.secc, port: o.port, ...(o.iface ? { iface: o.iface } : {}) }, profile: 'iso2-tls12' }),
          fetcher, store: rootStoreOf(store), clock: rt.clock, log: { tls: tlsLog, ota: rt.log('OTA') },
          budgetMs: () => rootFetchBudget(start + o.setupMs, rt.clock.now(), { reserveAfterFetchMs: settings.reserveAfterFetchMs, maxMs: settings.rootFetchMaxMs }),
          fallback: o.fallback ?? settings.fallback, peer: `[${o.secc}]:${o.port}`,
        });
        await result.session.stream.close();
        process.stdout.write(`${JSON.stringify({ established: true, states: result.states, installedRoot: result.installedRoot, recoveryMs: result.recoveryMs })}\n`);
      } finally {
        await link.close();
        await rt.close();
      }
    });
}
