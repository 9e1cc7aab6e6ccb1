/**
 * `evcc charge` — one charging-session setup on real links, starting at once (the bench operator or the HIL harness
 * has plugged in). Composition root of the vehicle's real stack, shared with `evcc run` (run.ts):
 *
 *   AF_PACKET SLAC on IF (or QCA7000 over UART) → SDP on IF's link-local scope → TLS with firmware/pki validation →
 *   on TLS_UNKNOWN_ROOT: Solution C over the OEM broker (mutual TLS, per-vehicle certificate) → verified, installed,
 *   retried → SupportedAppProtocol.
 *
 * Trust: the key service unseals the vehicle trust (firmware/keys openVehicleTrust: certificate-store integrity key,
 * link-key passphrase, tagged OEM backend key) through the OEM-signed state, and arms the contract key. A bench
 * without a TPM names an environment variable with a store key instead (`--store-key-env`, said loudly).
 *
 * Security policy (explicit, logged, in the report): PnC needs the armed contract key, which exists only when
 * measured boot succeeded and the TPM accepts the OEM-signed state (ARCHITECTURE.md §3 steps 1 and 7). When it
 * refuses, the session goes on EIM-only (ExternalPayment) and says why — in the log, the `--json` report and the
 * OEM backend's retained state. The TLS requirement is never relaxed for PnC; this runtime opens no plain-TCP
 * channel at all (an SECC that offers only TCP ends the session, typed), and without a verified store (TPM refused,
 * no bench key) TLS cannot authenticate the SECC, so the session ends typed (EVCC_TRUST_UNAVAILABLE) rather than
 * trusting an unverified store.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { EvccError, isEvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { StageContext } from '../../firmware/evcc.ts';
import type { KeyService } from '../../firmware/keys/key-service.ts';
import { TpmSettings } from '../../firmware/keys/settings.ts';
import { RELEASE_BACKEND_KEY_FILE } from '../../firmware/ota/backend-key.ts';
import type { OtaLink } from '../../firmware/ota/link.ts';
import type { OemRootFetcher } from '../../firmware/ota/root-fetch.ts';
import type { OtaSettings } from '../../firmware/ota/settings.ts';
import type { BackendTrust } from '../../firmware/ota/signing.ts';
import type { CertificateStore } from '../../firmware/pki/store.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { macFromString } from '../../firmware/slac/codec.ts';
import type { VehicleCredentials } from '../../firmware/tls/connect.ts';
import { parseVehicleConfig } from '../../firmware/vehicle/config.ts';
import { contractFromStore } from '../../firmware/vehicle/contract.ts';
import type { KeyReadiness } from '../../firmware/vehicle/policy.ts';
import { chargeReportOf, logChargeEnd, type ChargeReport } from '../../firmware/vehicle/report.ts';
import { tpmCheckpointSigner, type SecurityEvents, type SecurityLog } from '../../firmware/log/security-log.ts';
import type { SessionHistory } from '../../firmware/log/session-history.ts';
import { historyRecordOf, openVehicleHistory, openVehicleSecurityLog } from '../../firmware/log/vehicle-log.ts';
import type { VehicleParts, VehicleSettings } from '../../firmware/vehicle/stages.ts';
import { openTrust as openTrustWith, type TrustPart, type TrustSource } from '../../firmware/vehicle/trust.ts';
import { SimEv } from '../../hal/ev/sim.ts';
import { EvSettings } from '../../hal/ev/settings.ts';
import type { EvPort } from '../../hal/ev/types.ts';
import type { MqttTlsIdentity } from '../../hal/mqtt/types.ts';
import { OsInterfaces } from '../../hal/net/os-interfaces.ts';
import { NodeTcpConnector } from '../../hal/net/tcp-connector.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { NodeUdp6 } from '../../hal/net/udp6.ts';
import type { PlcLink } from '../../hal/plc/types.ts';
import { PilotSettings } from '../../hal/pilot/settings.ts';
import type { PilotBoard } from '../../hal/pilot/types.ts';
import type { Tpm } from '../../hal/tpm/types.ts';
import type { MessageRecord } from '../../firmware/session/driver.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { createRuntime, type GlobalOptions, type Runtime } from '../runtime.ts';
import type { AfPacketTap } from '../../hal/capture/af-packet-tap.ts';
import { captureParentDir, decideKeyLog } from '../capture-policy.ts';
import type { CaptureSummary, SessionCapture } from '../session-capture.ts';

export type { ChargeReport, KeyReadiness };

// ---- configuration ------------------------------------------------------------------------------------------------

/** The HAL sections this composition root reads besides the firmware's (firmware/vehicle/config.ts). */
export const HAL_CONFIG_SECTIONS = { pilot: PilotSettings, ev: EvSettings } as const;
export type VehicleConfig = ReturnType<typeof parseConfig>;
export const parseConfig = (raw: Record<string, unknown>) => parseVehicleConfig(raw, HAL_CONFIG_SECTIONS);

// ---- the vehicle's stack -------------------------------------------------------------------------------------------

export interface StackFlags {
  iface?: string;
  uart?: string;
  mac?: string;
  baud: number;
  dataDir?: string;
  runDir?: string;
  tcti?: string;
  /** false: no TPM (bench without a TPM HAT): the session is EIM-only, and says so. */
  keys: boolean;
  /** false: no OEM link (an unknown root ends in the configured fallback). */
  ota: boolean;
  broker?: string;
  ca?: string;
  cert?: string;
  key?: string;
  keyPassEnv?: string;
  /** Bench without a TPM: environment variable holding the store integrity key. */
  storeKeyEnv?: string;
  vehicleCert?: string;
  vehicleKey?: string;
  keylog?: string;
}

export function addStackOptions(c: Command): Command {
  return c
    .option('-i, --iface <name>', 'network interface of the PLC modem (AF_PACKET SLAC, SDP, TLS); default: config plcInterface')
    .option('--uart <path>', 'SLAC through a QCA7000 UART in user space (needs --mac); SDP and TLS still need a netdev (--iface) that reaches the modem, e.g. a bench bridge — with the kernel qcauart driver use --iface alone')
    .option('--mac <mac>', 'host MAC on the PLC segment (UART only)')
    .addOption(new Option('--baud <rate>', 'UART baud rate').argParser(Number).default(115200))
    .option('--data-dir <dir>', 'persistent data dir (certificate store, TPM blobs, OEM backend key); default: config dataDir')
    .option('--run-dir <dir>', 'volatile run dir (boot state, cached key contexts); default: config runDir')
    .option('--tcti <tcti>', 'TPM TCTI; default: config tpm.tcti')
    .option('--no-keys', 'no TPM key service (bench without a TPM): EIM only, stated in log and report')
    .option('--no-ota', 'no OEM backend link: an unknown V2G root ends in the configured fallback')
    .option('--broker <url>', 'OEM backend broker; default: config ota.brokerUrl')
    .option('--ca <file>', 'CA of the broker certificate (PEM); default: config ota.caFile')
    .option('--cert <file>', 'vehicle link certificate (PEM); default: config ota.certFile')
    .option('--key <file>', 'vehicle link key (encrypted PKCS#8 PEM); default: config ota.keyFile')
    .option('--key-pass-env <name>', 'environment variable holding the passphrase of the link key; default: derived from the TPM-sealed secret')
    .option('--store-key-env <name>', 'bench without a TPM: environment variable with the certificate-store integrity key (hex, ≥ 32 bytes); default: the TPM-sealed key')
    .option('--vehicle-cert <pem>', 'TLS 1.3 profile: vehicle certificate chain (PEM, leaf first)')
    .option('--vehicle-key <pem>', 'TLS 1.3 profile: vehicle PKCS#8 key (software key: Node TLS cannot use a TPM key)')
    .option('--keylog <file>', 'append SSLKEYLOGFILE lines (bench builds only: lets Wireshark decrypt the session)');
}

export interface OtaPart {
  link: OtaLink;
  fetcher?: OemRootFetcher;
  settings: OtaSettings;
  vehicleId: string;
}

export interface VehicleStack {
  rt: Runtime;
  iface: string;
  /** The signed security log (firmware/log/security-log.ts): TPM refusals, root installs, boot checks, OTA steps. */
  securityLog: SecurityLog;
  /** The encrypted session history: writable only with the full trust's key (HISTORY_UNAVAILABLE when degraded). */
  history: SessionHistory;
  /** Verified store; absent when the TPM refused and no bench key was named (then no TLS is possible). */
  store?: CertificateStore;
  trustSource: TrustSource;
  files: FsStore;
  ota?: OtaPart;
  /** The OEM backend's answer-verification key (TPM-tagged, or the bench file), when one verified. */
  backendTrust?: BackendTrust;
  keys?: KeyService;
  /** The TPM driver the key service uses (health check and commit of an OTA update), when one opened. */
  tpm?: Tpm;
  /** The key service's answer at start (a refusal is an answer: degraded mode). */
  keyReadiness: KeyReadiness;
  settings: VehicleSettings;
  config: VehicleConfig;
  /** The key-log policy's verdict (CAPTURE_KEYLOG_REFUSED was thrown at start for a refused one). */
  keyLogAllowed: boolean;
  close(): Promise<void>;
}

/** Where the certificate store's integrity key (and the link-key passphrase) came from. */
export type { TrustPart, TrustSource };

/** What the trust needs from the flags (shared with `evcc ota`, which opens the same trust without a session). */
export type TrustFlags = Pick<StackFlags, 'keys' | 'tcti' | 'storeKeyEnv'>;

/**
 * The trust ports of this controller (firmware/vehicle/trust.ts decides): tpm2-tools on the configured TCTI, the
 * boot record measured boot left, the release's OEM backend key, and — bench only — a named store-key variable.
 */
export async function openTrust(rt: Runtime, f: TrustFlags, files: FsStore, o: { reclaim: boolean; armContractKey: boolean; events?: SecurityEvents }): Promise<TrustPart> {
  let benchStoreKey: Uint8Array | undefined;
  if (f.storeKeyEnv) {
    const hex = process.env[f.storeKeyEnv];
    if (!hex || !/^([0-9a-fA-F]{2}){32,}$/.test(hex)) {
      throw new EvccError('CONFIG_INVALID', `environment variable ${f.storeKeyEnv} must hold the certificate-store integrity key (≥ 32 bytes hex)`);
    }
    benchStoreKey = new Uint8Array(Buffer.from(hex, 'hex'));
  }
  const tpmSettings = parseSettings(TpmSettings, { ...((rt.rawConfig.tpm as object | undefined) ?? {}), ...(f.tcti ? { tcti: f.tcti } : {}) }, 'tpm');
  const run = await FsStore.open(rt.settings.runDir);
  const releasePem = await readFile(RELEASE_BACKEND_KEY_FILE).catch(() => undefined);
  return openTrustWith({
    data: files, run, log: (sub) => rt.log(sub),
    ...(f.keys ? { openTpm: async () => (await import('../../hal/tpm/tpm2-tools.ts')).Tpm2Tools.open({ tcti: tpmSettings.tcti, runDir: rt.settings.runDir, log: rt.log('TPM') }) } : {}),
    bootState: async () => (await import('../../boot/measured-boot.ts')).bootState(run),
    ...(releasePem ? { releaseBackendKey: { pem: new Uint8Array(releasePem), origin: RELEASE_BACKEND_KEY_FILE } } : {}),
    ...(benchStoreKey ? { benchStoreKey, benchStoreKeyOrigin: f.storeKeyEnv! } : {}),
    ...(o.events ? { events: o.events } : {}),
  }, o);
}

async function readPem(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', `cannot read ${path}`, { path }, { cause: err });
  }
}

async function openOta(rt: Runtime, f: StackFlags, trust: TrustPart, settings: OtaSettings, stateExtras: Record<string, unknown>): Promise<OtaPart | undefined> {
  const log = rt.log('OTA');
  if (!f.ota || !settings.enabled) {
    log.warn('OEM backend link disabled: an unknown V2G root cannot be fetched (Solution C off)');
    return undefined;
  }
  const vehicleId = rt.settings.vehicleId;
  const ca = f.ca ?? settings.caFile;
  const cert = f.cert ?? settings.certFile;
  const keyFile = f.key ?? settings.keyFile;
  const url = f.broker ?? settings.brokerUrl;
  let tls: MqttTlsIdentity | undefined;
  if (ca || cert || keyFile) {
    if (!ca || !cert || !keyFile) throw new EvccError('CONFIG_INVALID', 'the OEM link needs ota.caFile, ota.certFile and ota.keyFile together');
    const key = await readPem(keyFile);
    const passphrase = f.keyPassEnv ? process.env[f.keyPassEnv] : trust.linkKeyPassphrase;
    if (f.keyPassEnv && !passphrase) throw new EvccError('CONFIG_INVALID', `environment variable ${f.keyPassEnv} is not set`);
    const encrypted = /BEGIN ENCRYPTED PRIVATE KEY/.test(key);
    if (encrypted && !passphrase) {
      // The passphrase comes from the state-independent link secret (firmware/keys/link-credential.ts); only a vehicle
      // provisioned before it (passphrase from the state-bound runtime secret) or a TPM failure ends up here.
      log.error({ keyFile }, 'OEM link key is encrypted and its passphrase is unavailable (no link secret, or the TPM refused): no OEM link, the degraded state cannot be reported');
      return undefined;
    }
    if (!encrypted) log.warn({ keyFile }, 'OEM link key is not encrypted (bench use only)');
    tls = { ca: await readPem(ca), cert: await readPem(cert), key, ...(encrypted && passphrase ? { passphrase } : {}) };
  }
  if (url.startsWith('mqtts://') && !tls) throw new EvccError('CONFIG_INVALID', 'mqtts:// needs the vehicle link credentials (ota.caFile, ota.certFile, ota.keyFile)');
  // Loaded only when the link is configured (mqtt.js and the OTA client are a large part of a cold start).
  const [{ OtaLink }, { MqttJsConnector }, { OemRootFetcher }, { validateSeccPath }] = await Promise.all([
    import('../../firmware/ota/link.ts'), import('../../hal/mqtt/mqtt-js.ts'), import('../../firmware/ota/root-fetch.ts'), import('../../firmware/ota/pki-adapter.ts'),
  ]);
  const link = new OtaLink({
    connector: new MqttJsConnector(), url, vehicleId, protocolVersion: settings.protocolVersion, ...(tls ? { tls } : {}),
    clock: rt.clock, log, reconnectPeriodMs: settings.reconnectPeriodMs, keepaliveSeconds: settings.keepaliveSeconds, stateExtras,
  });
  if (!trust.backendTrust) {
    // Answers we cannot verify are worth nothing: no fetcher, the unknown-root path ends in the fallback.
    log.error('no verified OEM backend key: root-CA answers cannot be verified, Solution C off');
    return { link, settings, vehicleId };
  }
  const fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId, trust: trust.backendTrust, clock: rt.clock, log, validatePath: validateSeccPath });
  return { link, fetcher, settings, vehicleId };
}

/**
 * Builds the vehicle's long-lived parts: settings, trust (key service, certificate store, armed contract key), OEM
 * link. `reclaim`: the service (sole TPM user) flushes what a crashed predecessor left in the TPM; `evcc charge`
 * does not.
 */
export async function openVehicleStack(globals: GlobalOptions, f: StackFlags, o: { reclaim: boolean }): Promise<VehicleStack> {
  const overrides: Record<string, unknown> = {};
  if (f.dataDir) overrides.dataDir = f.dataDir;
  if (f.runDir) overrides.runDir = f.runDir;
  const rt = await createRuntime(globals, overrides);
  const closers: (() => Promise<unknown>)[] = [];
  try {
    const config = parseConfig(rt.rawConfig);
    if (config.unknownKeys.length) {
      throw new EvccError('CONFIG_INVALID', `config keys not read by the runtime: ${config.unknownKeys.join(', ')}`, { keys: config.unknownKeys });
    }
    const settings: VehicleSettings = { slac: config.slac, sdp: config.sdp, tls: config.tls, ota: config.ota, session: config.session };
    // A key log is decided before anything else opens: a production config refuses it (typed, exit 1).
    const keyLogRoutes = [
      ...(f.keylog ? ['--keylog'] : []), ...(config.tls.keyLogFile ? ['tls.keyLogFile'] : []),
      ...(config.capture.enabled && config.capture.tlsKeyLog ? ['capture.tlsKeyLog'] : []),
    ];
    const keyLogAllowed = decideKeyLog(rt, config.capture, keyLogRoutes).enabled;
    const iface = f.iface ?? rt.settings.plcInterface;
    if (f.uart && !f.mac) throw new EvccError('CONFIG_INVALID', '--uart needs --mac (the host MAC on the PLC segment)');
    const files = await FsStore.open(rt.settings.dataDir);
    // The security log opens first, so the key service and the store record into it while they open.
    const securityLog = await openVehicleSecurityLog({ data: files, now: Date.now, log: rt.log('EVCC') });
    const trust = await openTrust(rt, f, files, { reclaim: o.reclaim, armContractKey: true, events: securityLog });
    closers.push(() => trust.close());
    // A checkpoint at start signs what evcc boot recorded this boot (unsigned, with the TPM's reason, in a state the OEM
    // did not approve), and one at stop; not awaited: READY does not wait for a cold TPM signature.
    const r = trust.readiness;
    securityLog.useSigner(trust.keys ? tpmCheckpointSigner(trust.keys) : undefined, r.ready ? undefined : { code: r.code, message: r.message });
    const checkpoint = () => securityLog.checkpoint().catch((err: unknown) => rt.log('EVCC').error({ code: (err as EvccError).code, cp: 'LOG-CHECKPOINT-FAILED' }, `security log checkpoint not written: ${(err as Error).message}`));
    const started = checkpoint();
    // One stop checkpoint: written by the upload's stop while the OEM link is up (so it reaches the backend now,
    // not at the next start), else here.
    let stopped: Promise<unknown> | undefined;
    const stopCheckpoint = () => (stopped ??= started.then(checkpoint));
    closers.push(stopCheckpoint);
    const history = openVehicleHistory({
      data: files, historyKey: trust.historyKey, ...(trust.historyKey ? {} : { unavailableReason: r.ready ? 'KEYS_TRUST_UNAVAILABLE' : r.code }),
      random: (n) => new Uint8Array(randomBytes(n)), log: rt.log('EVCC'), events: securityLog,
    }, trust.keys ? `tpm:${trust.keys.provisioning.storageKey.name}` : 'unprovisioned');
    const keysLog = rt.log('KEYS');
    if (r.ready) keysLog.info({ version: r.version, contractKey: r.contractKey }, r.contractKey ? `contract key armed (release v${r.version}): Plug & Charge available` : `no contract yet (release v${r.version}): Plug & Charge by CertificateInstallation`);
    else keysLog.warn({ code: r.code }, `key service refused: ${r.message} — degraded mode, EIM only`);
    if (trust.store) rt.log('PKI').info({ roots: trust.store.listRoots().map((x) => x.subject), source: trust.source }, `certificate store verified: ${trust.store.listRoots().length} V2G root(s)`);
    else rt.log('PKI').error({ code: r.ready ? undefined : r.code }, 'no verified certificate store: the SECC cannot be authenticated (TLS impossible) in this state');

    // The OEM backend learns of the degraded mode from the retained state (ARCHITECTURE.md §3 step 1).
    const stateExtras: Record<string, unknown> = r.ready ? { mode: 'pnc' } : { mode: 'eim-only', degraded: { code: r.code } };
    const ota = await openOta(rt, f, trust, settings.ota, stateExtras);
    if (ota) closers.push(() => ota.link.close());
    if (ota && f.keys) {
      // Attestation answers in every state: the link credential and the attestation key do not depend on it.
      const tpmSettings = parseSettings(TpmSettings, { ...((rt.rawConfig.tpm as object | undefined) ?? {}), ...(f.tcti ? { tcti: f.tcti } : {}) }, 'tpm');
      const { startVehicleAttestation } = await import('../vehicle-attestation.ts');
      const stop = await startVehicleAttestation({
        link: ota.link, vehicleId: ota.vehicleId, data: files, readiness: r, ...(trust.tpm ? { tpm: trust.tpm } : {}), tpmSettings, log: rt.log('OTA'), events: securityLog,
        bootVersion: async () => (await (await import('../../boot/measured-boot.ts')).bootState(await FsStore.open(rt.settings.runDir))).version,
        openTpm: async () => (await import('../../hal/tpm/tpm2-tools.ts')).Tpm2Tools.open({ tcti: tpmSettings.tcti, runDir: rt.settings.runDir, log: rt.log('TPM') }),
      });
      if (stop) closers.push(stop);
    }
    if (ota) {
      // Gated on the link only: a degraded vehicle's unsigned checkpoints must reach the backend too.
      const { startVehicleSecurityLogUploads } = await import('../vehicle-security-log.ts');
      closers.push(startVehicleSecurityLogUploads({ link: ota.link, vehicleId: ota.vehicleId, securityLog, clock: rt.clock, log: rt.log('OTA'), finalCheckpoint: stopCheckpoint }));
    }
    return {
      rt, iface, files, settings, config, keyReadiness: r, trustSource: trust.source, keyLogAllowed, securityLog, history,
      ...(trust.store ? { store: trust.store } : {}), ...(trust.backendTrust ? { backendTrust: trust.backendTrust } : {}), ...(ota ? { ota } : {}), ...(trust.keys ? { keys: trust.keys } : {}), ...(trust.tpm ? { tpm: trust.tpm } : {}),
      async close() {
        for (const c of closers.reverse()) await c().catch(() => undefined);
        await rt.close();
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await rt.close();
    throw err;
  }
}

export async function openPlcLink(f: StackFlags, iface: string): Promise<PlcLink> {
  if (f.uart) return (await import('../../hal/plc/qca-uart.ts')).QcaUartLink.open({ path: f.uart, mac: f.mac!, baudRate: f.baud });
  return (await import('../../hal/plc/af-packet.ts')).AfPacketLink.open(iface);
}

/** The EV port of this controller: the battery model until a BMS port exists (said in the log). */
export function openEvPort(stack: VehicleStack): EvPort {
  const ev = new SimEv({ clock: stack.rt.clock, log: stack.rt.log('EV') }, stack.config.ev.sim);
  stack.rt.log('EV').warn({ port: stack.config.ev.port, capacityWh: ev.limits.energyCapacityWh }, 'EV port: battery model (no BMS link on this controller)');
  return ev;
}

/**
 * The real HAL parts of this controller for firmware/vehicle's stage binding: AF_PACKET (or QCA7000 UART) SLAC,
 * the netdev's link-local scope for SDP, TLS and TCP, the pilot board when the service has one, the TPM key service.
 */
export async function realVehicleParts(stack: VehicleStack, f: StackFlags & { linkUp?: boolean }, o: { pilot?: PilotBoard; ev: EvPort }): Promise<VehicleParts> {
  const { rt, iface } = stack;
  const vehicleCredentials: VehicleCredentials | undefined = f.vehicleCert && f.vehicleKey
    ? { certChainPem: await readPem(f.vehicleCert), keyPem: await readPem(f.vehicleKey) } : undefined;
  if (stack.settings.tls.profile === 'iso20-tls13' && !vehicleCredentials) {
    throw new EvccError('CONFIG_INVALID', 'tls.profile iso20-tls13 (mutual) needs --vehicle-cert and --vehicle-key');
  }
  // Allowed (and announced) by the key-log policy in openVehicleStack, or refused there.
  const keyLogFile = stack.keyLogAllowed ? f.keylog ?? stack.settings.tls.keyLogFile : undefined;
  const net = new OsInterfaces();
  const mac = f.uart ? macFromString(f.mac!) : (await net.lookup(iface)).mac;
  const keys = stack.keys;
  const ready = stack.keyReadiness.ready;
  return {
    clock: rt.clock, wallClock: () => new Date(), log: (sub) => rt.log(sub), iface,
    ...(f.linkUp ? {} : { openPlcLink: () => openPlcLink(f, iface) }),
    udp: new NodeUdp6(), localAddress: () => net.waitLinkLocal(iface, 5_000),
    tls: new NodeTlsConnector(), tcp: new NodeTcpConnector(),
    ...(o.pilot ? { pilot: o.pilot } : {}),
    ev: o.ev, evccId: mac,
    ...(keys && ready ? { keys } : {}),
    ...(stack.store ? { store: stack.store } : {}),
    ...(stack.ota?.fetcher ? { rootFetcher: stack.ota.fetcher } : {}),
    ...(vehicleCredentials ? { vehicleCredentials } : {}),
    ...(keyLogFile ? { keyLog: (line: string) => appendFileSync(keyLogFile, line.endsWith('\n') ? line : `${line}\n`, { mode: 0o600 }) } : {}),
  };
}

/** The session in the encrypted history (full trust only; a degraded vehicle said once at start that it keeps none). */
async function keepInHistory(stack: VehicleStack, report: ChargeReport, startedAt: string): Promise<void> {
  if (!stack.history.readable) return;
  const k = stack.keyReadiness;
  const emaid = report.payment === 'Contract' && stack.store && k.ready && k.contractKey ? contractFromStore(stack.store, k.contractKey)?.emaid : undefined;
  await stack.history.append(historyRecordOf(report, { startedAt, endedAt: new Date().toISOString(), ...(emaid ? { emaid } : {}) }))
    .catch((err: unknown) => stack.rt.log('EVCC').error({ code: (err as EvccError).code }, `session not kept in the history: ${(err as Error).message}`));
}

/**
 * One plug-in on the stack, through the one stage binding (firmware/vehicle). `waitForPlugIn` is the trigger (pilot
 * board in the service, immediate in `evcc charge`).
 */
export async function runRealSession(stack: VehicleStack, f: StackFlags & { linkUp?: boolean }, o: { waitForPlugIn: (ctx: StageContext) => Promise<void>; signal?: AbortSignal; pilot?: PilotBoard; ev: EvPort; onMessage?: (r: MessageRecord) => void }): Promise<ChargeReport & { capture?: CaptureSummary }> {
  let parts = await realVehicleParts(stack, f, o);
  const capture = await openRealCapture(stack, f, parts);
  if (capture) parts = capture.parts;
  // The live dashboard (bin/dashboard.ts) sees the decoded messages too.
  const alsoTo = o.onMessage;
  if (alsoTo) {
    const first = parts.onMessage;
    parts = { ...parts, onMessage: (r) => { first?.(r); alsoTo(r); } };
  }
  // The session side (stage binding, session engines, EXI codecs) loads at the first plug-in, not at start-up:
  // the service reaches READY (waiting for plug-in) without it (issue #12, bench/startup.bench.ts).
  const [{ bindVehicleStages }, { runChargingSession }] = await Promise.all([import('../../firmware/vehicle/stages.ts'), import('../../firmware/evcc.ts')]);
  const bound = bindVehicleStages(parts, stack.settings, stack.keyReadiness, { waitForPlugIn: o.waitForPlugIn });
  const evStart = o.ev.status();
  const startedAt = new Date().toISOString();
  let report: ChargeReport | undefined;
  try {
    const r = await runChargingSession({ stages: bound.stages, clock: stack.rt.clock, log: stack.rt.log('EVCC'), ...(o.signal ? { signal: o.signal } : {}) });
    report = chargeReportOf(r, { security: bound.security, evStart, evEnd: o.ev.status(), roots: stack.store?.listRoots().map((x) => x.subject) ?? [] });
    await keepInHistory(stack, report, startedAt);
    return report;
  } finally {
    await bound.release();
    if (capture) {
      capture.close();
      const summary = await capture.session.finish(report ?? { ok: false }).catch(() => undefined);
      if (report && summary) Object.assign(report, { capture: summary });
    }
  }
}

/**
 * Config `capture.enabled`: a session folder for this plug-in, fed by an AF_PACKET ETH_P_ALL tap on the PLC netdev
 * (SLAC, SDP, TCP/TLS as the kernel saw them) — with a UART modem, its SLAC frames are tapped at the link instead.
 * A capture that cannot start is logged and the session runs without it.
 */
async function openRealCapture(stack: VehicleStack, f: StackFlags & { linkUp?: boolean }, parts: VehicleParts): Promise<{ parts: VehicleParts; session: SessionCapture; close(): void } | undefined> {
  const c = stack.config.capture;
  if (!c.enabled) return undefined;
  const { rt, iface } = stack;
  let session: SessionCapture;
  try {
    const { openSessionCapture } = await import('../session-capture.ts');
    session = await openSessionCapture(rt, { parent: captureParentDir(rt, c), keyLog: stack.keyLogAllowed && c.tlsKeyLog, keep: c.keepSessions });
  } catch (err) {
    rt.log('EVCC').warn({ cp: 'CAPTURE_FAILED', code: (err as { code?: string }).code }, `session capture off for this session: ${(err as Error).message}`);
    return undefined;
  }
  let tap: AfPacketTap | undefined;
  try {
    const { AfPacketTap } = await import('../../hal/capture/af-packet-tap.ts');
    tap = await AfPacketTap.open(iface, session.sink(iface, `AF_PACKET ETH_P_ALL tap on ${iface}: every frame of the PLC interface as the kernel sent and received it`));
  } catch (err) {
    rt.log('EVCC').warn({ cp: 'CAPTURE_FAILED', code: (err as { code?: string }).code }, `no packet capture for this session: ${(err as Error).message}`);
  }
  const uartSink = f.uart ? session.sink(`uart:${f.uart}`, `QCA7000 UART ${f.uart}: HomePlug frames exchanged with the modem in user space`) : undefined;
  const fileKeyLog = parts.keyLog;
  const keyLog = session.keyLog && fileKeyLog ? (l: string) => { session.keyLog!(l); fileKeyLog(l); } : session.keyLog ?? fileKeyLog;
  const openPlc = parts.openPlcLink;
  return {
    session,
    parts: {
      ...parts, onMessage: session.onMessage, ...(keyLog ? { keyLog } : {}),
      ...(openPlc && uartSink ? { openPlcLink: async () => (await import('../../hal/capture/sim-taps.ts')).tapPlcLink(await openPlc(), uartSink) } : {}),
    },
    close: () => tap?.close(),
  };
}

export { logChargeEnd as logSessionEnd };

// ---- evcc charge ---------------------------------------------------------------------------------------------------

export function registerCharge(program: Command, globals: () => GlobalOptions): void {
  addStackOptions(program.command('charge'))
    .description('one charging session on real links, starting now (plugged in): SLAC, SDP, TLS (+ OEM root fetch) or TCP, SupportedAppProtocol, ISO 15118-2 or DIN SPEC 70121 to SessionStop')
    .option('--link-up', 'the PLC link is up already (bench: link up by other means, or an ethernet cable to the charger controller): skip SLAC')
    .option('--json', 'print the session report as JSON on stdout')
    .action(async (opts: StackFlags & { json?: boolean; linkUp?: boolean }) => {
      if (opts.uart && !opts.mac) throw new EvccError('CONFIG_INVALID', '--uart needs --mac (the host MAC on the PLC segment)');
      const stack = await openVehicleStack(globals(), opts, { reclaim: false });
      const ac = new AbortController();
      const stop = () => ac.abort(new EvccError('ABORTED', 'interrupted'));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const ev = openEvPort(stack);
      try {
        const report = await runRealSession(stack, opts, {
          signal: ac.signal, ev,
          waitForPlugIn: async () => stack.rt.log('PILOT').info('trigger: now (operator plugged in; no pilot board read)'),
        });
        logChargeEnd(stack.rt.log('EVCC'), report);
        if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        if (!report.ok) {
          process.stderr.write(`evcc: ${report.endReason.code}: ${report.endReason.message}\n`);
          process.exitCode = 1;
        }
      } finally {
        await ev.close().catch(() => undefined);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        await stack.close();
      }
    });
}
