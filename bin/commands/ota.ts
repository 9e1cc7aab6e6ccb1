import { Option, type Command } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { rootStoreOf, validateSeccPath } from '../../firmware/ota/pki-adapter.ts';
import { OemRootFetcher } from '../../firmware/ota/root-fetch.ts';
import { syncRootList } from '../../firmware/ota/root-sync.ts';
import { OtaSettings } from '../../firmware/ota/settings.ts';
import { connectWithRootFetch, rootFetchBudget } from '../../firmware/ota/unknown-root.ts';
import type { CertificateStore } from '../../firmware/pki/store.ts';
import { connectTls } from '../../firmware/tls/connect.ts';
import { V2G_EVCC_COMMUNICATION_SETUP_TIMEOUT_MS } from '../../firmware/session/timers.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { createRuntime, type GlobalOptions, type Runtime } from '../runtime.ts';
import { openTrust, type TrustPart } from './charge.ts';
import { readIdentity } from './oem-backend.ts';
import { addBackendKeyInstall } from './pki.ts';

/**
 * `evcc ota` — the vehicle's side of the OEM backend link (composition root):
 *   evcc ota install-backend-key FILE            = `evcc pki backend-key install`: the OEM backend key, TPM-tagged
 *   evcc ota sync-roots                          proactive mode: fetch the full V2G root list, install what is missing
 *                                                (each with its OEM approval; attached to roots that lack one)
 *   evcc ota tls-connect --secc ADDR --port N    TLS to a SECC with the unknown-root path (Kilic 2023 Fig. 11 → 12)
 *   evcc ota update-status                       the OTA update as the vehicle sees it (read-only): the update record,
 *                                                RAUC's slots, booted and primary slot, the anti-rollback counter
 * Link options come from the `ota` config section; flags override it.
 *
 * Trust as the runtime opens it (charge.ts openTrust → firmware/keys openVehicleTrust): the TPM unseals the runtime
 * secret through the OEM-signed state; the certificate store verifies under the derived key, the OEM backend key
 * only with its TPM-derived tag, and an encrypted link key opens with the derived passphrase. So a store written by
 * `evcc pki roots install` is this store. A bench without a TPM names an environment variable holding a store key
 * (`--store-key-env`, logged as a bench arrangement); then the untagged backend key file is used, as in `evcc charge`.
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
  runDir?: string;
  tcti?: string;
  storeKeyEnv?: string;
}

function addLinkOptions(c: Command): Command {
  return c
    .option('--broker <url>', 'OEM backend broker (mqtts://host:port); default: config ota.brokerUrl')
    .option('--vehicle-id <id>', 'vehicle id (topic prefix and client certificate CN); default: config vehicleId')
    .option('--ca <file>', 'CA of the broker certificate (PEM)')
    .option('--cert <file>', 'vehicle client certificate (PEM)')
    .option('--key <file>', 'vehicle client key (encrypted PKCS#8 PEM; see --key-pass-env)')
    .option('--key-pass-env <name>', 'environment variable holding the passphrase of --key; default: derived from the TPM-sealed secret')
    .addOption(new Option('--mqtt-version <v>', 'MQTT protocol version').choices(['4', '5']))
    .option('--data-dir <dir>', 'persistent data dir (certificate store, TPM blobs, OEM backend key); default: config dataDir')
    .option('--run-dir <dir>', 'volatile run dir (boot state, cached key contexts); default: config runDir')
    .option('--tcti <tcti>', 'TPM TCTI; default: config tpm.tcti')
    .option('--store-key-env <name>', 'bench without a TPM: environment variable with the certificate-store integrity key (hex, ≥ 32 bytes); default: the TPM-sealed key');
}

/** The runtime's trust (see above) and a runtime whose data/run dirs follow the flags. */
async function openRuntimeTrust(globals: GlobalOptions, f: LinkFlags): Promise<{ rt: Runtime; trust: TrustPart; store: CertificateStore }> {
  const rt = await createRuntime(globals, { ...(f.dataDir ? { dataDir: f.dataDir } : {}), ...(f.runDir ? { runDir: f.runDir } : {}) });
  try {
    const files = await FsStore.open(rt.settings.dataDir);
    const trust = await openTrust(rt, { keys: true, ...(f.tcti ? { tcti: f.tcti } : {}), ...(f.storeKeyEnv ? { storeKeyEnv: f.storeKeyEnv } : {}) }, files, { reclaim: false, armContractKey: false });
    if (!trust.store) {
      await trust.close();
      const r = trust.readiness;
      // Never an unverified store: without the TPM's answer (or an explicit bench key) there is nothing to trust.
      throw new EvccError('KEYS_TRUST_UNAVAILABLE', `no verified certificate store (${r.ready ? 'UNKNOWN' : r.code}): ${r.ready ? '' : r.message}; on a bench without a TPM name the store key with --store-key-env`, { reason: r.ready ? 'UNKNOWN' : r.code });
    }
    const r = trust.readiness;
    if (trust.source === 'bench-env' && !r.ready) rt.log('KEYS').warn({ code: r.code }, `TPM trust unavailable (${r.code}): ${r.message}`);
    rt.log('PKI').info({ roots: trust.store.rootCount, source: trust.source }, `certificate store verified: ${trust.store.rootCount} V2G root(s)`);
    return { rt, trust, store: trust.store };
  } catch (err) {
    await rt.close();
    throw err;
  }
}

async function openLink(rt: Runtime, f: LinkFlags, trust: TrustPart): Promise<{ link: OtaLink; settings: OtaSettings; vehicleId: string }> {
  const settings = parseSettings(OtaSettings, rt.rawConfig.ota ?? {}, 'ota');
  const vehicleId = f.vehicleId ?? rt.settings.vehicleId;
  const identity = await readIdentity({ ca: f.ca ?? settings.caFile, cert: f.cert ?? settings.certFile, key: f.key ?? settings.keyFile, ...(f.keyPassEnv ? { keyPassEnv: f.keyPassEnv } : {}) });
  // As in the runtime: an encrypted link key opens with the passphrase derived from the TPM-sealed secret.
  const tls = identity && !identity.passphrase && trust.linkKeyPassphrase && typeof identity.key === 'string' && /BEGIN ENCRYPTED PRIVATE KEY/.test(identity.key)
    ? { ...identity, passphrase: trust.linkKeyPassphrase } : identity;
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

  // One implementation: the runtime trusts the backend key only with its TPM-derived tag.
  addBackendKeyInstall(cmd.command('install-backend-key <file>'), globals)
    .description('same as `evcc pki backend-key install`: install the OEM backend key (EC P-256 public key, PEM) with its TPM-derived integrity tag');

  addLinkOptions(cmd.command('sync-roots'))
    .description('fetch the Root Certificate Pool\'s V2G roots from the OEM backend and install the missing ones')
    .addOption(new Option('--budget-ms <ms>', 'time allowed for the sync').argParser(Number))
    .action(async (o: LinkFlags & { budgetMs?: number }) => {
      const { rt, trust, store } = await openRuntimeTrust(globals(), o);
      try {
        const { link, settings, vehicleId } = await openLink(rt, o, trust);
        try {
          const result = await syncRootList({
            rpc: link.rootListRpc, vehicleId, trust: trust.backendTrust, store: rootStoreOf(store), clock: rt.clock, log: rt.log('OTA'),
            budgetMs: o.budgetMs ?? settings.proactiveSync.budgetMs,
          });
          process.stdout.write(`${JSON.stringify(result)}\n`);
        } finally {
          await link.close();
        }
      } finally {
        await trust.close();
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
      const { rt, trust, store } = await openRuntimeTrust(globals(), o);
      const start = rt.clock.now();
      try {
        const { link, settings, vehicleId } = await openLink(rt, o, trust);
        try {
          const tlsLog = rt.log('TLS');
          const fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId, trust: trust.backendTrust, clock: rt.clock, log: rt.log('OTA'), validatePath: validateSeccPath });
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
        }
      } finally {
        await trust.close();
        await rt.close();
      }
    });

  cmd.command('update-status')
    .description('the OTA update state, read-only: the update record (phase, job, target slot, outcome), RAUC\'s slots (booted, primary, good/bad, installed version) and the anti-rollback counter (JSON)')
    .option('--data-dir <dir>', 'persistent data dir; default: config dataDir')
    .option('--rauc-bus <address>', 'D-Bus address of RAUC\'s bus; default: config update.raucBus')
    .option('--tcti <tcti>', 'TPM TCTI for the counter; default: config tpm.tcti')
    .action(async (o: { dataDir?: string; raucBus?: string; tcti?: string }) => {
      const rt = await createRuntime(globals(), o.dataDir ? { dataDir: o.dataDir } : {});
      try {
        const { updateStatus } = await import('../vehicle-update.ts');
        process.stdout.write(`${JSON.stringify(await updateStatus(rt, o), null, 2)}\n`);
      } finally {
        await rt.close();
      }
    });
}
