/**
 * `evcc bench-session` — the main job: one whole charging session on the embedded bench, no hardware, no root.
 * It runs the product's path: the same stage binding as `evcc charge` and `evcc run` (firmware/vehicle), the same
 * config parsing, the same trust and security policy; only the HAL parts are simulated:
 *
 *   vehicle on swtpm (sim/vehicle-tpm.ts: factory provisioning → OEM-signed release → measured boot → trust) →
 *   pilot (SimPilot) → SLAC on an in-memory PLC segment with two simulated chargers (ours + a neighbour) →
 *   SDP on a simulated IPv6 link → real TLS (or TCP) on loopback to the charger simulator (sim/secc) →
 *   [TLS_UNKNOWN_ROOT → root fetched from the OEM backend reference service over an in-process MQTT broker with mutual
 *   TLS → verified, installed, TLS retried] → SupportedAppProtocol → ISO 15118-2 (PnC with the TPM-signed
 *   Authorization, or EIM) or DIN SPEC 70121 → the battery model charges to its target SoC → SessionStop →
 *   A/B commit raises the anti-rollback counter (only after a good session).
 *
 * On the same broker, from the link's first connect: the vehicle's attestation responder (TPM quote of PCR 14 with
 * the attestation key) answers the OEM backend's verifier, registered at production (attestation key, OEM policy
 * key, signed release), and the signed security log is uploaded to the backend's collector, which verifies it with
 * the vehicle's log key; the report's `attestation` and `securityLog` parts say what the backend concluded.
 *
 * Without swtpm/tpm2-tools/rauc (a laptop) or with --no-tpm the vehicle has no key service: EIM only, said loudly
 * (the integration test fails that path under CI).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Option, type Command } from 'commander';
import type { Logger } from '../../core/logger.ts';
import { BACKEND_IDENTITY, startEmbeddedBroker } from '../../deploy/oem-backend/embedded-broker.ts';
import { createLinkCa, issueLinkCert } from '../../deploy/oem-backend/link-pki.ts';
import { RootCertificatePool } from '../../deploy/oem-backend/pool.ts';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { bootState } from '../../boot/measured-boot.ts';
import { commitRelease } from '../../boot/commit.ts';
import { EvccError } from '../../core/errors.ts';
import { approveRoot } from '../../deploy/oem-backend/approvals.ts';
import { openTrust, type TrustPart } from '../../firmware/vehicle/trust.ts';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { runChargingSession } from '../../firmware/evcc.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { validateSeccPath } from '../../firmware/ota/pki-adapter.ts';
import { OemRootFetcher } from '../../firmware/ota/root-fetch.ts';
import type { BackendTrust } from '../../firmware/ota/signing.ts';
import { derToPem } from '../../firmware/pki/cert.ts';
import { generateTestPki } from '../../firmware/pki/generate.ts';
import { macFromString } from '../../firmware/slac/codec.ts';
import { chargeReportOf, logChargeEnd, type ChargeReport } from '../../firmware/vehicle/report.ts';
import { bindVehicleStages, type VehicleParts, type VehicleSettings } from '../../firmware/vehicle/stages.ts';
import { SimEv } from '../../hal/ev/sim.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { SimIpv6Link } from '../../hal/net/sim-net.ts';
import { NodeTcpConnector } from '../../hal/net/tcp-connector.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { SimPilot } from '../../hal/pilot/sim.ts';
import { requestsHighLevelCommunication } from '../../hal/pilot/types.ts';
import { SimSegment } from '../../hal/plc/sim.ts';
import { CaptureSettings } from '../../firmware/capture/settings.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { RECONSTRUCTED_IPV6_DESCRIPTION, SIM_PLC_DESCRIPTION, TcpCaptureRelay, tapPlcLink, tapUdp6 } from '../../hal/capture/sim-taps.ts';
import { decideKeyLog, openSessionCapture, type CaptureSummary, type SessionCapture } from '../session-capture.ts';
import { messageLogRecord, SessionEventHub } from '../../firmware/capture/records.ts';
import { dashboardPortOption, dashboardSettings, serveBenchDashboard, type BenchSessionHooks, type BenchVehicle } from '../dashboard.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { createSessionDir, removeSessionDirNow, sweepStaleSessionDirs } from '../../hal/store/session-dirs.ts';
import { startSimCharger, startSimEvModem } from '../../sim/evse-slac/index.ts';
import { answerCertificateInstallation, answerCertificateUpdate } from '../../sim/cps/cps.ts';
import { startEmbeddedSecc, vehicleCredentials, type EmbeddedChain } from '../../sim/secc/embedded.ts';
import type { CertificateServiceHook } from '../../sim/secc/session.ts';
import type { CertificateInstallationReqType, CertificateUpdateReqType } from '../../firmware/exi/generated/iso2.ts';
import { missingVehicleTpmTools, startBenchVehicleTpm, type BenchVehicleTpm } from '../../sim/vehicle-tpm.ts';
import { createRuntime, loadConfig, type GlobalOptions } from '../runtime.ts';
import { parseConfig } from './charge.ts';
import { AttestationRegistry, type AttestationState } from '../../deploy/oem-backend/attestation.ts';
import { SecurityLogCollector, SecurityLogService } from '../../deploy/oem-backend/security-log.ts';
import { DEFAULT_EVENT_LOG } from '../../firmware/keys/event-log.ts';
import { DATA, parseJson, ProvisioningRecord } from '../../firmware/keys/layout.ts';
import { backendExport } from '../../firmware/keys/provision.ts';
import { TpmSettings } from '../../firmware/keys/settings.ts';
import { logKeyId, tpmCheckpointSigner, verifySecurityLog, type SecurityLog } from '../../firmware/log/security-log.ts';
import { openVehicleSecurityLog } from '../../firmware/log/vehicle-log.ts';
import type { ReleaseClaim } from '../../firmware/ota/attestation.ts';
import type { Clock } from '../../hal/clock/types.ts';
import type { FileStore } from '../../hal/store/types.ts';
import { startVehicleAttestation } from '../vehicle-attestation.ts';
import { startVehicleSecurityLogUploads } from '../vehicle-security-log.ts';
import { startAttestationService } from './oem-backend-attestation.ts';

export interface BenchSessionOptions {
  tls: '1.2' | '1.3';
  chargerPki: 'a' | 'b' | 'b-cross';
  protocol: 'iso2' | 'din';
  ac?: boolean;
  eim?: boolean;
  /** Charger-simulator scenario (sim/secc/scenarios) by name or path. */
  scenario?: string;
  ota: boolean;
  /** false (--no-tpm): no vehicle TPM stage (no key service: EIM only, said loudly). */
  tpm: boolean;
  /** Fault injection: the vehicle reboots with a tampered root file system in slot A before plug-in (measured boot fails: degraded). */
  tamperedBundle?: boolean;
  /** Battery model time scale (one second counts as N seconds of charging). */
  timeScale?: number;
  keep?: boolean;
  json?: boolean;
  /** false (--no-capture): no session folder (the capture benchmark's baseline). */
  capture?: boolean;
  /** Parent of the session folder; default config capture.dir, else $TMPDIR/evcc-sessions. */
  captureDir?: string;
  /** `--dashboard [port]`: serve the live dashboard and run a bench session per Start (bin/dashboard.ts). */
  dashboard?: string | boolean;
}

const EV_MAC = '02:e7:cc:00:00:01';
const EV_LINK_LOCAL = 'fe80::e7:1';
const OUR_CHARGER = { mac: '02:5e:cc:00:00:01', attenuationDb: 18 };
const NEIGHBOUR = { mac: '02:5e:cc:00:00:02', attenuationDb: 34 };
/**
 * Release the bench OEM ships. Factory provisioning leaves the NV anti-rollback counter at 1 (a new TPM NV counter
 * must be incremented once before it can be read), so committing v1 would raise nothing; v2 makes the commit visible.
 */
const BENCH_RELEASE = 2;

/** The TPM part of the report. */
export type BenchTpmReport =
  | {
    release: number;
    /** Vehicle stage before plug-in (swtpm start → contract key armed), ms. */
    stageMs: number;
    /** PCR 14 after measured boot (sha256 bank, hex): the rootfs image measured by the initramfs hook, from zero. */
    pcr14: string;
    bundleSha256: string;
    /** The root file system image slot A held at boot (SHA-256, hex). */
    rootfsSha256: string;
    /** The boot check's refusal after a reboot (--tampered-bundle): why this boot has no approved state. */
    bootRefused?: { code: string; message: string };
    /** 'signed': the session's AuthorizationReq was signed by the contract key in the TPM (PnC). */
    contractKey: 'signed' | 'unused';
    /** The active contract certificate after the session (PEM): installed in the session, or factory-imported. */
    contractCertificate?: string;
    /** The contract key id the vehicle holds after the session. */
    contractKeyId?: string;
    /** NV anti-rollback counter before and after the A/B commit (after a good session only). */
    counterFrom?: string;
    counter?: string;
  }
  | { skipped: string };

/** The remote-attestation part: the OEM backend's verdict on the vehicle, as its registry holds it after the session. */
export type BenchAttestationReport =
  | {
    verdict: AttestationState;
    reason?: { code: string; message: string };
    /** PCR 14 of the verified quote (sha256 bank, hex). */
    pcr14?: string;
    /** The signed release PCR 14 is the measurement of (trusted), else the release the vehicle claimed. */
    release?: number | null;
    claim?: ReleaseClaim;
    /** Answers the backend refused (nonce, signature, PCR selection); none on a good bench. */
    refused: number;
  }
  | { skipped: string };

/** The security-log part: what the OEM backend holds of the vehicle's signed log after the session. */
export type BenchSecurityLogReport =
  | {
    /** Entries the backend stored (uploaded from the genesis entry on: the vehicle's log is new on every bench). */
    uploaded: number;
    /** Seq of the last entry the backend holds (null: nothing stored), and of the vehicle's own head. */
    backendHeadSeq: number | null;
    vehicleHeadSeq: number;
    /** The backend's copy is intact (hash chain, every signature present checks out) and is the vehicle's own chain. */
    chained: boolean;
    /**
     * Verified with the vehicle's registered log key: chained, and at least one checkpoint signed by that key (a log
     * of unsigned checkpoints only, as a degraded vehicle writes, is intact but proves nothing about its author).
     */
    verified: boolean;
    /** The backend holds the vehicle's log through its head. */
    complete: boolean;
    keyId: string;
    signedCheckpoints: number;
    /** Checkpoints the vehicle could not sign (degraded: the TPM refused the state), and the first one's reason. */
    unsignedCheckpoints: number;
    unsignedReason?: string;
    /** Seq of the last signed checkpoint the backend holds (-1: none). */
    signedThrough: number;
    error?: { code: string; message: string };
  }
  | { skipped: string };

export type BenchSessionReport = ChargeReport & { tpm: BenchTpmReport; attestation: BenchAttestationReport; securityLog: BenchSecurityLogReport; capture?: CaptureSummary };

export function registerBenchSession(program: Command, globals: () => GlobalOptions): void {
  program
    .command('bench-session')
    .description('one whole simulated charging session through the product path (vehicle TPM on swtpm, pilot, SLAC, SDP, TLS + OTA root-CA fetch, ISO 15118-2 PnC or DIN, charge loop to the target SoC, SessionStop, A/B commit) — no hardware, no root')
    .addOption(new Option('--tls <version>', 'TLS profile of the charger: 1.2 (ISO 15118-2) or 1.3 (ISO 15118-20 profile, mutual)').choices(['1.2', '1.3']).default('1.2'))
    .addOption(new Option('--charger-pki <pki>', 'the charger chain ends in root a (known), b (unknown: Solution C) or b-cross (Solution A)').choices(['a', 'b', 'b-cross']).default('b'))
    .addOption(new Option('--protocol <p>', 'iso2: ISO 15118-2 charger over TLS; din: DIN SPEC 70121-only charger over plain TCP').choices(['iso2', 'din']).default('iso2'))
    .option('--ac', 'AC charging (ISO 15118-2 AC_three_phase_core) instead of DC')
    .option('--eim', 'the charger offers external identification only (no Plug & Charge)')
    .option('--scenario <name>', 'charger-simulator scenario (sim/secc/scenarios/<name>.json or a path)')
    .addOption(new Option('--time-scale <n>', 'battery model time scale (one second counts as n seconds of charging)').argParser(Number).default(600))
    .option('--tampered-bundle', 'fault injection: the vehicle reboots with a tampered root file system in its slot before plug-in (the initramfs measures it, the boot check fails: degraded mode, EIM only)')
    .option('--no-ota', 'no OEM backend: an unknown root ends the setup typed')
    .option('--no-tpm', 'no vehicle TPM stage (swtpm): no key service, EIM only')
    .option('--keep', 'keep the session data dir (certificate store, TPM-wrapped keys, swtpm state, bench OEM/MO material) for inspection')
    .option('--json', 'print the session report as JSON on stdout')
    .option('--capture-dir <dir>', 'parent of the session folder (pcapng, TLS key log, decoded message log, bench log, report); default: config capture.dir, else $TMPDIR/evcc-sessions')
    .option('--no-capture', 'no session folder')
    .option('--dashboard [port]', 'serve the live dashboard on 127.0.0.1 (port: config dashboard.port, default 8915; 0: a free one) and run one bench session per Start until Ctrl-C')
    .action(async (opts: BenchSessionOptions) => {
      const port = dashboardPortOption(opts.dashboard);
      if (opts.dashboard !== undefined || dashboardSettings(await loadConfig(globals().config)).enabled) {
        await serveBenchDashboard(globals(), { ...(port !== undefined ? { port } : {}), label: benchLabel(opts) }, (hooks) => runBenchSession(globals(), opts, hooks));
        return;
      }
      const report = await runBenchSession(globals(), opts);
      if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      if (!report.ok) process.exitCode = 1;
    });
}

export async function runBenchSession(g: GlobalOptions, opts: BenchSessionOptions, hooks: BenchSessionHooks = {}): Promise<BenchSessionReport> {
  const rt = await createRuntime(g);
  hooks.onRuntime?.(rt);
  // The dashboard reads the capture's event stream (decoded messages); without a capture the bench feeds it itself.
  const events = hooks.onCaptureEvent ? new SessionEventHub() : undefined;
  if (events && hooks.onCaptureEvent) events.subscribe(hooks.onCaptureEvent);
  const bench = rt.log('BENCH');
  const sim = rt.log('SIM');
  const clock = rt.clock;
  const cleanups: (() => Promise<unknown>)[] = [];
  // A SIGKILLed predecessor ran no clean-up: its dir (bench key material) goes before we make ours (also --no-tpm).
  const swept = await sweepStaleSessionDirs().catch(() => undefined);
  if (swept?.removed.length) bench.warn({ removed: swept.removed, killed: swept.killed }, `removed ${swept.removed.length} dir(s) of killed bench sessions`);
  // Owner record inside: a killed bench session's dir (it holds bench key material) is removed by the next start.
  const dataDir = await createSessionDir('evcc-bench-');
  let capture: SessionCapture | undefined;
  const stopOnSignal = onTerminatingSignal(async (signal) => {
    bench.warn({ signal }, `${signal}: stopping the bench session (swtpm, broker, data dir) before exiting`);
    for (const c of [...cleanups].reverse()) await c().catch(() => undefined);
    // The runtime stays open: a stage still running may log, and a closed log would end the process (uncaught).
  }, () => {
    // Synchronously, right before the process ends: a stage still running (provisioning) cannot recreate the dir.
    if (!opts.keep) removeSessionDirNow(dataDir);
  });
  try {
    bench.info({ dataDir }, 'embedded bench: swtpm, simulated pilot, modem, chargers, SECC, battery, OEM backend and broker; product code everywhere else');
    // The same config parsing as the vehicle (a bench config file may relax field timers, choose AC, …).
    const config = parseConfig({ ...rt.rawConfig, ...(opts.ac ? { session: acSession(rt.rawConfig.session) } : {}) });
    const settings: VehicleSettings = { slac: config.slac, sdp: config.sdp, tls: { ...config.tls, profile: opts.tls === '1.3' ? 'iso20-tls13' : config.tls.profile }, ota: config.ota, session: config.session };
    // The bench always captures, with the TLS key log: it is a bench build by definition (profile 'bench').
    if (opts.capture !== false) {
      const captureSettings = parseSettings(CaptureSettings, { ...config.capture, enabled: true, profile: 'bench', tlsKeyLog: true }, 'capture');
      const keyLog = decideKeyLog(rt, captureSettings, ['evcc bench-session']);
      capture = await openSessionCapture(rt, { parent: opts.captureDir ?? config.capture.dir ?? join(tmpdir(), 'evcc-sessions'), keyLog: keyLog.enabled, keep: captureSettings.keepSessions, ...(events ? { events } : {}) });
    }

    bench.info('generating the ISO 15118-2 test PKI (V2G roots A and B, CPO, OEM, MO, CPS chains)');
    const pki = await generateTestPki();
    // The OEM backend's answer-signing key: the vehicle trusts it before the first session (factory step).
    const signer = opts.ota ? KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()) : undefined;
    const missingTools = opts.tpm ? missingVehicleTpmTools() : [];
    const skipped = !opts.tpm ? '--no-tpm' : missingTools.length ? `missing ${missingTools.join(', ')}` : undefined;
    let vehicle: BenchVehicleTpm | undefined;
    let trust: TrustPart;
    let handedOver: { dataDir: string; runDir: string } | undefined;
    // The vehicle's side of attestation and of the security-log upload (TPM vehicle only: without one there is no
    // attestation key and no log key, nothing the OEM backend could verify).
    let attestationPorts: Omit<Parameters<typeof startVehicleAttestation>[0], 'link' | 'vehicleId' | 'log'> | undefined;
    let securityLog: SecurityLog | undefined;
    let logStop: (() => Promise<void>) | undefined;
    if (skipped === undefined) {
      // Factory and first boot (simulated production line), then the hand-over: from here the vehicle's trust is
      // opened exactly as `evcc run` opens it on the device (firmware/vehicle/trust.ts), on the same swtpm.
      vehicle = await startBenchVehicleTpm({
        baseDir: join(dataDir, 'vehicle'), dataDir: join(dataDir, 'data'), pki, releaseVersion: BENCH_RELEASE, log: (sub) => rt.log(sub),
        contract: 'certificate-installation', // the contract comes by CertificateInstallation in the first PnC session
        ...(signer ? { backendKeyPem: signer.publicKeyPem, approvalSigner: signer } : {}),
      });
      cleanups.push(() => vehicle!.close());
      if (opts.tamperedBundle) await vehicle.reboot({ bundle: 'tampered' });
      const at = await vehicle.handOver();
      handedOver = at;
      const run = await FsStore.open(at.runDir);
      const data = await FsStore.open(at.dataDir);
      const openTpm = () => Tpm2Tools.open({ tcti: at.tcti, runDir: at.runDir, log: rt.log('TPM') });
      // As the runtime starts (openVehicleStack, bin/commands/charge.ts): the security log opens first, so the key
      // service and the store record into it while they open; then it takes the TPM log key (unsigned checkpoints
      // with the TPM's reason in a refused state) and a checkpoint signs what this start recorded, not awaited.
      const secLog = await openVehicleSecurityLog({ data, now: Date.now, log: rt.log('EVCC') });
      securityLog = secLog;
      trust = await openTrust({
        data, run, log: (sub) => rt.log(sub), openTpm,
        bootState: () => bootState(run),
        ...(at.releaseBackendKey ? { releaseBackendKey: at.releaseBackendKey } : {}),
        events: secLog,
      }, { reclaim: true, armContractKey: true });
      const r = trust.readiness;
      secLog.useSigner(trust.keys ? tpmCheckpointSigner(trust.keys) : undefined, r.ready ? undefined : { code: r.code, message: r.message });
      const checkpoint = () => secLog.checkpoint().then(() => undefined, (err: unknown) => rt.log('EVCC').error({ code: (err as EvccError).code, cp: 'LOG-CHECKPOINT-FAILED' }, `security log checkpoint not written: ${(err as Error).message}`));
      const started = checkpoint();
      let stopped: Promise<void> | undefined;
      // The stop checkpoint, once: after the session (while the link is up, so the upload schedule delivers it), or
      // at the clean-up of a bench that ended before.
      logStop = async () => {
        await started;
        stopped ??= checkpoint();
        await stopped;
      };
      const files = benchVehicleFiles(join(dataDir, 'vehicle'));
      attestationPorts = {
        data, readiness: r, ...(trust.tpm ? { tpm: trust.tpm } : {}), openTpm, eventLogPath: files.eventLog, ...(securityLog ? { events: securityLog } : {}),
        bootVersion: async () => (await bootState(run)).version,
        tpmSettings: parseSettings(TpmSettings, { ...((rt.rawConfig.tpm as object | undefined) ?? {}), tcti: at.tcti, bundlePath: files.bundle, keyring: files.keyring }, 'tpm'),
      };
    } else {
      bench.warn({ tpm: 'skipped', reason: skipped }, `NO TPM (${skipped}): no key service — certificate store under a random bench key, no contract key (EIM only), no measured boot`);
      const files = await FsStore.open(join(dataDir, 'data'));
      trust = await openTrust({
        data: files, run: files, log: (sub) => rt.log(sub), bootState: async () => ({ version: 0 }), benchStoreKey: randomBytes(32),
        ...(signer ? { releaseBackendKey: { pem: signer.publicKeyPem, origin: 'bench release' } } : {}),
      }, { reclaim: false, armContractKey: false });
      await trust.store!.installRoot(pki.a.root.der, { source: 'factory', ...(signer ? { approval: approveRoot(signer, pki.a.root.der) } : {}) });
    }
    cleanups.push(() => trust.close());
    if (logStop) cleanups.push(logStop);
    const readiness = trust.readiness;
    const store = trust.store;
    if (!store) throw new EvccError('EVCC_TRUST_UNAVAILABLE', 'bench vehicle has no verified certificate store');
    const backendTrust: BackendTrust | undefined = trust.backendTrust;

    // --- peers -----------------------------------------------------------------------------------------------------
    const segment = new SimSegment();
    const evModem = startSimEvModem(segment, { hostMac: EV_MAC, clock, log: sim });
    cleanups.push(() => evModem.close());
    for (const c of [OUR_CHARGER, NEIGHBOUR]) {
      const charger = startSimCharger(segment, { evseMac: c.mac, attenuationDb: c.attenuationDb, clock, log: sim });
      cleanups.push(() => charger.close());
    }
    const ipLink = new SimIpv6Link();
    // The capture's view of the EV's PLC interface: the frames its station sends and receives, and the IPv6 traffic
    // rebuilt from the EV's UDP sockets and from its TCP byte streams (a loopback relay), each on its own IDB.
    const addressing = { evMac: macFromString(EV_MAC), peerMac: macFromString(OUR_CHARGER.mac), evAddress: EV_LINK_LOCAL };
    const plcSink = capture?.sink('sim-ev', SIM_PLC_DESCRIPTION);
    const ipSink = capture?.sink('sim-ev-ipv6', RECONSTRUCTED_IPV6_DESCRIPTION);
    const relay = ipSink ? await TcpCaptureRelay.start(ipSink, addressing) : undefined;
    if (relay) cleanups.push(() => relay.close());
    const resolver = relay ? relay.resolver(ipLink.resolver()) : ipLink.resolver();
    const chain: EmbeddedChain = opts.chargerPki === 'a' ? 'pki-a' : opts.chargerPki === 'b' ? 'pki-b' : 'pki-b-cross';
    const scenario = opts.scenario ?? defaultScenario(opts);
    // The CPS / MO behind the charger: CertificateInstallation / CertificateUpdate answered with the bench PKI (a new
    // contract per request; direct TPM import when the request's certificate carries the storage-key extension).
    const cps = sim;
    const certificateService: CertificateServiceHook = {
      installation: async (req) => {
        const a = await answerCertificateInstallation(req as CertificateInstallationReqType, { pki });
        cps.info({ emaid: a.contract.emaid, transport: a.transport }, `CertificateInstallation: contract ${a.contract.emaid} issued, key ${a.transport === 'direct' ? 'wrapped for direct TPM import' : 'ISO 15118-2 encrypted'}`);
        return { body: a.body, signature: a.signature, encodeOptions: a.encodeOptions };
      },
      update: async (req) => {
        const a = await answerCertificateUpdate(req as CertificateUpdateReqType, { pki });
        cps.info({ emaid: a.contract.emaid, transport: a.transport }, `CertificateUpdate: contract ${a.contract.emaid} issued, key ${a.transport === 'direct' ? 'wrapped for direct TPM import' : 'ISO 15118-2 encrypted'}`);
        return { body: a.body, signature: a.signature, encodeOptions: a.encodeOptions };
      },
    };
    const secc = await startEmbeddedSecc({ link: ipLink, pki, tls: opts.protocol === 'din' ? 'none' : opts.tls, chain, scenario, clock, log: sim, certificateService });
    cleanups.push(() => secc.close());
    sim.info({ chain, scenario, port: secc.port }, `charger simulator up: scenario ${scenario}, presenting ${opts.protocol === 'din' ? 'no TLS' : chain}`);

    const vehicleId = rt.settings.vehicleId;
    let rootFetcher: OemRootFetcher | undefined;
    let oem: { registry: AttestationRegistry; collector: SecurityLogCollector; collectorFiles: FileStore; production: Production; responding: boolean } | undefined;
    if (signer && backendTrust) {
      const ca = await createLinkCa('evcc bench OEM link CA');
      const brokerCert = await issueLinkCert(ca, { commonName: 'broker', server: { ips: ['127.0.0.1'] } });
      const broker = await startEmbeddedBroker({ tls: { ca: ca.certPem, cert: brokerCert.certPem, key: brokerCert.keyPem }, log: sim });
      cleanups.push(() => broker.close());
      const poolDir = join(dataDir, 'oem-rcp');
      const poolFiles = await FsStore.open(poolDir);
      await poolFiles.writeAtomic('v2g-root-a.pem', derToPem(pki.a.root.der), { mode: 0o644 });
      await poolFiles.writeAtomic('v2g-root-b.pem', derToPem(pki.b.root.der), { mode: 0o644 });
      const backendId = await issueLinkCert(ca, { commonName: BACKEND_IDENTITY });
      const backendTls = { ca: ca.certPem, cert: backendId.certPem, key: backendId.keyPem };
      const oemLog = rt.log('OEM');
      const attestationDir = join(dataDir, 'oem-attestation');
      const registry = await AttestationRegistry.open(attestationDir);
      const collectorFiles = await FsStore.open(join(dataDir, 'oem-security-logs'));
      const collector = new SecurityLogCollector({ store: collectorFiles, log: oemLog });
      const production = attestationPorts ? await registerAtProduction({ data: attestationPorts.data, vehicleId, release: BENCH_RELEASE, registry, collector, log: bench }) : {};
      const backend = new OemBackend({
        connector: new MqttJsConnector(), url: broker.url, protocolVersion: 4, clientId: 'oem-backend-bench',
        pool: await RootCertificatePool.load(poolDir), signer, clock, log: oemLog, tls: backendTls,
        securityLogs: new SecurityLogService(collector, oemLog),
      });
      await backend.start();
      cleanups.push(() => backend.stop());
      // The verifier as `evcc oem-backend serve --attestation-dir` runs it, a second client of the same instance: one
      // instance (aedes has no shared subscriptions anyway), challenged after each hello only (no periodic round).
      const verifier = await startAttestationService({ dir: attestationDir, broker: broker.url, protocolVersion: 4, tls: backendTls, shareGroup: false, clock, log: oemLog, periodSeconds: 0 });
      cleanups.push(() => verifier.stop());
      const vehicleLinkId = await issueLinkCert(ca, { commonName: vehicleId });
      const link = new OtaLink({
        connector: new MqttJsConnector(), url: broker.url, vehicleId, protocolVersion: 4, clock, log: rt.log('OTA'),
        tls: { ca: ca.certPem, cert: vehicleLinkId.certPem, key: vehicleLinkId.keyPem },
      });
      cleanups.push(() => link.close());
      rootFetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId, trust: backendTrust, clock, log: rt.log('OTA'), validatePath: validateSeccPath });
      // The responder and the uploads on the link, as the runtime starts them (openVehicleStack): the same modules.
      let responding = false;
      if (attestationPorts) {
        const stop = await startVehicleAttestation({ ...attestationPorts, link, vehicleId, log: rt.log('OTA') });
        if (stop) cleanups.push(stop);
        responding = stop !== undefined;
      }
      if (securityLog) cleanups.push(startVehicleSecurityLogUploads({ link, vehicleId, securityLog, clock, log: rt.log('OTA') }));
      oem = { registry, collector, collectorFiles, production, responding };
    }

    // --- the vehicle's HAL parts, simulated; everything else is the product's binding ------------------------------
    const pilot = new SimPilot();
    const ev = new SimEv({ clock, log: rt.log('EV') }, { ...config.ev.sim, timeScale: opts.timeScale ?? 600, contactorDelayMs: 20 });
    cleanups.push(() => ev.close());
    const keys = trust.keys;
    let messageSeq = 0;
    const parts: VehicleParts = {
      clock, wallClock: () => new Date(), log: (sub) => rt.log(sub), iface: 'sim-ev',
      openPlcLink: async () => (plcSink ? tapPlcLink(segment.attach(EV_MAC, 'ev'), plcSink) : segment.attach(EV_MAC, 'ev')),
      udp: ipSink ? tapUdp6(ipLink.host('sim-ev', EV_LINK_LOCAL), ipSink, addressing) : ipLink.host('sim-ev', EV_LINK_LOCAL),
      tls: new NodeTlsConnector(resolver), tcp: new NodeTcpConnector(resolver),
      pilot, ev, evccId: macFromString(EV_MAC), store,
      ...(keys && readiness.ready ? { keys } : {}), moRoots: [pki.mo.root.der],
      ...(rootFetcher ? { rootFetcher } : {}),
      ...(opts.tls === '1.3' ? { vehicleCredentials: vehicleCredentials(pki) } : {}),
      ...(capture ? { onMessage: capture.onMessage, ...(capture.keyLog ? { keyLog: capture.keyLog } : {}) } : {}),
      ...(!capture && events ? { onMessage: (r) => events.emit({ type: 'message', record: messageLogRecord(r, ++messageSeq, Date.now()) }) } : {}),
    };
    const bound = bindVehicleStages(parts, settings, readiness, {
      waitForPlugIn: (ctx) => new Promise<void>((resolve, reject) => {
        const off = pilot.onChange((r) => {
          if (!requestsHighLevelCommunication(r)) return;
          off();
          rt.log('PILOT').info({ state: r.state, duty: r.dutyPercent }, `state ${r.state}, ${r.dutyPercent} % duty: high-level communication requested`);
          resolve();
        });
        ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
        setTimeout(() => pilot.plugIn(5), 50);
      }),
    });
    cleanups.push(() => bound.release());
    const evStart = ev.status();
    // The dashboard's view of this vehicle (read-only: the store is listed, never written).
    const snapshot = async (): Promise<BenchVehicle> => {
      const contract = await activeContract(trust);
      return {
        mode: 'bench', config: { ...config, unknownKeys: undefined }, readiness, trustSource: trust.source, security: bound.security, store,
        boot: vehicle && readiness.ready ? { version: vehicle.outcome.boot.version, pcr14: vehicle.outcome.boot.pcr14, bundleSha256: vehicle.outcome.boot.bundleSha256 } : { error: skipped ?? (readiness.ready ? 'unknown' : readiness.message) },
        tpm: vehicle ? {} : { skipped: skipped ?? 'unknown' },
        ...(contract ? { activeContractId: contract.id } : {}),
        socPercent: () => ev.status().socPercent, requestStop: () => ev.requestStop(),
      };
    };
    if (hooks.onVehicle) hooks.onVehicle(await snapshot(), 'before');
    const session = await runChargingSession({ stages: bound.stages, clock, log: rt.log('EVCC'), ...(hooks.signal ? { signal: hooks.signal } : {}) });
    const report = chargeReportOf(session, { security: bound.security, evStart, evEnd: ev.status(), roots: store.listRoots().map((r) => r.subject) });
    logChargeEnd(rt.log('EVCC'), report);
    hooks.onReport?.(report);
    if (hooks.onVehicle) hooks.onVehicle(await snapshot(), 'after');
    // The runtime's stop checkpoint, written while the link is still up: the upload schedule delivers it meanwhile.
    await logStop?.();
    const tpm: BenchTpmReport = vehicle && handedOver ? await commitAfterSession(vehicle, handedOver, trust, report, bench) : { skipped: skipped ?? 'unknown' };
    const noLink = '--no-ota: no OEM link';
    const attestation: BenchAttestationReport = skipped !== undefined ? { skipped } : !oem ? { skipped: noLink }
      : !oem.responding || !oem.production.attestationKey ? { skipped: 'no attestation key provisioned' }
        : await attestationOutcome(oem.registry, vehicleId, clock, bench);
    const securityLogPart: BenchSecurityLogReport = skipped !== undefined || !securityLog ? { skipped: skipped ?? 'no security log' } : !oem ? { skipped: `${noLink} (the log stays on the vehicle)` }
      : !oem.production.logKeyPem ? { skipped: 'no security-log key provisioned' }
        : await securityLogOutcome({ securityLog, collector: oem.collector, files: oem.collectorFiles, vehicleId, logKeyPem: oem.production.logKeyPem, clock, bench });
    const out: BenchSessionReport = { ...report, tpm, attestation, securityLog: securityLogPart };
    if (capture) {
      // The relay's last FIN/ACKs belong in the capture before it closes.
      await relay?.close();
      const summary = await capture.finish(out);
      capture = undefined;
      return { ...out, capture: summary };
    }
    return out;
  } finally {
    stopOnSignal();
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    // A bench that failed before its report still leaves its folder (log, capture so far).
    await capture?.finish({ ok: false }).catch(() => undefined);
    if (!opts.keep) await rm(dataDir, { recursive: true, force: true });
    else bench.info({ dataDir }, 'data dir kept');
    await rt.close();
  }
}

/**
 * SIGTERM / SIGINT while a bench session runs: `stop` (children) runs first, bounded by SIGNAL_CLEANUP_MS, then `last`
 * (synchronous: the dir) and the signal is raised again with its default action, so the process ends by that signal
 * as a caller expects.
 * (SIGKILL cannot be caught: swtpm dies with us through its parent-death signal, the dir goes at the next start.)
 * Returns the function that removes the handlers (the session ended by itself).
 */
const SIGNAL_CLEANUP_MS = 5_000;
function onTerminatingSignal(stop: (signal: NodeJS.Signals) => Promise<void>, last: () => void): () => void {
  const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];
  let stopping = false;
  const remove = () => signals.forEach((s) => process.removeListener(s, handler));
  // Stays registered until the end: execa's signal-exit handler re-raises a signal at once when it finds itself the
  // only listener, which would end the process before the clean-up. A second signal meanwhile is absorbed.
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, SIGNAL_CLEANUP_MS).unref());
    void Promise.race([stop(signal).catch(() => undefined), deadline]).then(() => {
      try {
        last();
      } finally {
        // Every listener goes (signal-exit's too: its children are our short tool runs), so the default action ends
        // the process at once — before a stage that `last` cut off (swtpm gone) reports its failure as an error.
        for (const s of signals) process.removeAllListeners(s);
        process.kill(process.pid, signal);
      }
    });
  };
  signals.forEach((s) => process.on(s, handler));
  return () => {
    if (!stopping) remove();
  };
}

/** The bench case in one line, for the dashboard (Kilic, Fig. 12: the test case name next to Start). */
function benchLabel(o: BenchSessionOptions): string {
  const protocol = o.protocol === 'din' ? 'DIN SPEC 70121 DC EIM, TCP' : `ISO 15118-2 ${o.ac ? 'AC' : 'DC'} ${o.eim ? 'EIM' : 'PnC'}, TLS ${o.tls}`;
  return [protocol, o.protocol === 'din' ? undefined : `charger PKI ${o.chargerPki}`, o.ota ? 'OEM fetch on' : 'OEM fetch off', o.scenario ? `scenario ${o.scenario}` : undefined, o.tamperedBundle ? 'tampered bundle' : undefined]
    .filter(Boolean).join(' · ');
}

function defaultScenario(o: BenchSessionOptions): string {
  if (o.protocol === 'din') return 'din-only';
  return `normal-${o.ac ? 'ac' : 'dc'}-${o.eim ? 'eim' : 'pnc'}`;
}

function acSession(raw: unknown): Record<string, unknown> {
  const s = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const iso2 = (s.iso2 && typeof s.iso2 === 'object' ? s.iso2 : {}) as Record<string, unknown>;
  return { ...s, iso2: { ...iso2, energyTransferMode: 'AC_three_phase_core' } };
}

/**
 * The A/B commit gate: only a session that completed (and, with PnC, was authorised by a contract-key signature
 * the charger verified) lets `evcc boot commit` raise the anti-rollback counter.
 */
async function commitAfterSession(vehicle: BenchVehicleTpm, at: { dataDir: string; runDir: string }, trust: TrustPart, report: ChargeReport, bench: Logger): Promise<BenchTpmReport> {
  const active = await activeContract(trust);
  const factory = vehicle.outcome.contractKey;
  const contractCertificate = active?.certificatePem ?? factory?.certificatePem;
  const contractKeyId = active?.id ?? factory?.id;
  const base = {
    release: vehicle.outcome.boot.version, stageMs: vehicle.outcome.stageMs, pcr14: vehicle.outcome.boot.pcr14, bundleSha256: vehicle.outcome.boot.bundleSha256, rootfsSha256: vehicle.outcome.boot.rootfsSha256,
    ...(vehicle.outcome.bootRefused ? { bootRefused: vehicle.outcome.bootRefused } : {}),
    contractKey: (report.payment === 'Contract' && report.ok ? 'signed' : 'unused') as 'signed' | 'unused',
    ...(contractCertificate ? { contractCertificate } : {}), ...(contractKeyId ? { contractKeyId } : {}),
  };
  if (!report.ok) {
    bench.warn({ tpm: 'not-committed' }, `vehicle: session did not complete: release v${base.release} NOT committed`);
    return base;
  }
  if (!trust.keys || !trust.tpm) {
    bench.warn({ tpm: 'not-committed', code: trust.readiness.ready ? undefined : trust.readiness.code }, `vehicle: no key service in this state: release v${base.release} NOT committed`);
    return base;
  }
  // `evcc boot commit` (evcc-commit.service) with the runtime's key service: logs `BOOT: release vN committed …`.
  const commit = await commitRelease({ tpm: trust.tpm, data: await FsStore.open(at.dataDir), run: await FsStore.open(at.runDir), log: bench, keys: trust.keys });
  return { ...base, counterFrom: commit.from, counter: commit.to };
}


/** The contract the runtime's key service holds now (installed in the session, or at the factory): key id, leaf PEM. */
async function activeContract(trust: TrustPart): Promise<{ id: string; certificatePem: string } | undefined> {
  if (!trust.keys || !trust.store) return undefined;
  const id = (await trust.keys.status().catch(() => undefined))?.activeContractKey;
  const leaf = id ? trust.store.listContractChains().find((c) => c.id === id)?.chain[0] : undefined;
  return id && leaf ? { id, certificatePem: derToPem(leaf) } : undefined;
}

/**
 * Where the bench vehicle (sim/vehicle-tpm.ts, under its base dir) keeps what a device has at fixed paths: the
 * initramfs event log (the device's /run is the sim's boot-run dir, emptied at each power cycle) and the installed
 * release bundle with the OEM keyring (the release claim of a boot that failed its check reads them).
 */
function benchVehicleFiles(baseDir: string): { eventLog: string; bundle: string; keyring: string } {
  return {
    eventLog: join(baseDir, 'boot-run', relative('/run', DEFAULT_EVENT_LOG)),
    bundle: join(baseDir, 'oem', `v${BENCH_RELEASE}.raucb`),
    keyring: join(baseDir, 'oem', 'bundle.cert.pem'),
  };
}

interface Production {
  attestationKey?: boolean;
  logKeyPem?: string;
}

/**
 * Production at the OEM (what test/integration/ota-attest-rig.ts does for the lab, and `evcc oem-backend attestation
 * register / oem-policy-key / add-release` and `security-log register` do for a fleet): the vehicle's attestation key
 * and security-log key from its provisioning export, the OEM policy key and the signed release. The bench OEM's
 * policy key pair and release are made inside the vehicle's factory stage, which hands no OEM material out; the
 * vehicle holds byte-identical copies (installed at provisioning and by its boot check), so the bench OEM takes
 * those — addRelease re-verifies the release's signature with the policy key all the same.
 */
async function registerAtProduction(o: { data: FileStore; vehicleId: string; release: number; registry: AttestationRegistry; collector: SecurityLogCollector; log: Logger }): Promise<Production> {
  const exported = backendExport(parseJson(ProvisioningRecord, await o.data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED'));
  const out: Production = {};
  const ak = exported['attestation.tpm2b_pub'];
  if (ak instanceof Uint8Array) {
    const registered = await o.registry.registerVehicle(o.vehicleId, ak);
    const policyKey = await o.data.read(DATA.oemPolicyKey);
    if (!policyKey) throw new EvccError('KEYS_NOT_PROVISIONED', 'the bench vehicle holds no OEM policy key');
    await o.registry.setOemPolicyKey(Buffer.from(policyKey).toString('utf8'));
    const policy = await o.data.read(DATA.release(o.release, 'signed-policy.json'));
    if (!policy) throw new EvccError('KEYS_NOT_BOOTED', `the bench vehicle holds no signed state policy of release v${o.release}`);
    const p = await o.registry.addRelease(JSON.parse(Buffer.from(policy).toString('utf8')));
    o.log.info({ vehicleId: o.vehicleId, akName: registered.akName, release: p.version, pcr14: p.pcrs.value },
      `OEM production: attestation key of ${o.vehicleId} registered from its provisioning export; OEM policy key set, signed release v${p.version} added (PCR 14 ${p.pcrs.value.slice(0, 16)}…)`);
    out.attestationKey = true;
  }
  const logKey = exported['security-log.pub.pem'];
  if (typeof logKey === 'string') {
    await o.collector.registerVehicle(o.vehicleId, logKey);
    out.logKeyPem = logKey;
  }
  return out;
}

/** Reads until `done` or `timeoutMs` has passed; the last value either way. */
async function settle<T>(read: () => Promise<T>, done: (v: T) => boolean, clock: Clock, timeoutMs: number): Promise<T> {
  const end = clock.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v) || clock.now() >= end) return v;
    await clock.sleep(100);
  }
}

/** The vehicle says hello when its link comes up, long before the session ends: a verdict missing by then is a finding. */
const ATTEST_VERDICT_WAIT_MS = 10_000;
/** The upload schedule notices the stop checkpoint within its watch period (2 s) and uploads it. */
const LOG_UPLOAD_WAIT_MS = 10_000;

async function attestationOutcome(registry: AttestationRegistry, vehicleId: string, clock: Clock, bench: Logger): Promise<BenchAttestationReport> {
  const s = await settle(() => registry.state(vehicleId), (v) => v !== undefined && v.state !== 'pending', clock, ATTEST_VERDICT_WAIT_MS);
  if (!s) throw new EvccError('ATTEST_VEHICLE_UNKNOWN', `vehicle ${vehicleId} is not registered for attestation`, { vehicleId });
  const refused = s.history.filter((h) => h.state === 'refused').length;
  const out: BenchAttestationReport = {
    verdict: s.state, refused,
    ...(s.reason ? { reason: s.reason } : {}), ...(s.pcr14 ? { pcr14: s.pcr14 } : {}),
    ...(s.version !== undefined ? { release: s.version } : {}), ...(s.claim ? { claim: s.claim } : {}),
  };
  if (s.state === 'trusted') bench.info({ verdict: s.state, release: s.version, pcr14: s.pcr14 }, `attestation: the OEM backend judged the vehicle trusted: PCR 14 ${s.pcr14?.slice(0, 16)}… is the measurement of signed release v${s.version}`);
  else bench.warn({ verdict: s.state, code: s.reason?.code, release: s.version, refused }, `attestation: the OEM backend judged the vehicle ${s.state}${s.reason ? `: ${s.reason.message}` : ' (no verdict)'}`);
  return out;
}

/**
 * After the stop checkpoint: waits for the upload schedule to deliver the vehicle's head, then checks the backend's
 * copy with the registered log key — the backend verified each upload before storing it; this re-proves the stored
 * whole and that it is the vehicle's own chain.
 */
async function securityLogOutcome(o: { securityLog: SecurityLog; collector: SecurityLogCollector; files: FileStore; vehicleId: string; logKeyPem: string; clock: Clock; bench: Logger }): Promise<BenchSecurityLogReport> {
  const mine = o.securityLog.head;
  const held = await settle(() => o.collector.head(o.vehicleId), (h) => h?.seq === mine.seq, o.clock, LOG_UPLOAD_WAIT_MS);
  const base = { backendHeadSeq: held?.seq ?? null, vehicleHeadSeq: mine.seq, complete: held?.seq === mine.seq && held.hash === mine.hash, keyId: logKeyId(o.logKeyPem) };
  // The stored file of the collector's layout (deploy/oem-backend/security-log.ts): the entries as received.
  const stored = held ? await o.files.read(`security-logs/${o.vehicleId}.jsonl`) : undefined;
  let out: BenchSecurityLogReport;
  try {
    if (!held || !stored) throw new EvccError('LOG_VEHICLE_UNKNOWN', `the OEM backend holds nothing of the security log of ${o.vehicleId}`, { vehicleId: o.vehicleId });
    const proved = verifySecurityLog(Buffer.from(stored).toString('utf8'), o.logKeyPem);
    const ours = o.securityLog.entriesFrom(held.seq)[0];
    const chained = proved.head === held.hash && ours?.seq === held.seq && ours.hash === held.hash;
    const reason = proved.unsignedCheckpoints[0]?.reason;
    out = {
      ...base, uploaded: proved.entries, chained, verified: chained && proved.signedCheckpoints > 0,
      signedCheckpoints: proved.signedCheckpoints, unsignedCheckpoints: proved.unsignedCheckpoints.length, ...(reason ? { unsignedReason: reason } : {}), signedThrough: proved.signedThrough,
    };
  } catch (err) {
    const e = err as EvccError;
    out = { ...base, uploaded: 0, chained: false, verified: false, signedCheckpoints: 0, unsignedCheckpoints: 0, signedThrough: -1, error: { code: e.code ?? 'INTERNAL', message: e.message } };
  }
  const fields = { uploaded: out.uploaded, backendHeadSeq: out.backendHeadSeq, vehicleHeadSeq: out.vehicleHeadSeq, verified: out.verified, signedThrough: out.signedThrough };
  const summary = `${out.uploaded} entries uploaded, the OEM backend holds them through seq ${out.backendHeadSeq}`;
  if (out.verified && out.complete) {
    o.bench.info(fields, `security log: ${summary}, verified with the vehicle's log key ${out.keyId.slice(0, 16)}… (${out.signedCheckpoints} signed checkpoint(s)${out.unsignedCheckpoints ? `, ${out.unsignedCheckpoints} unsigned` : ''})`);
  } else if (out.chained && out.complete) {
    o.bench.warn({ ...fields, unsigned: out.unsignedReason }, `security log: ${summary}, chain intact but NOT signed by the vehicle's log key: ${out.unsignedCheckpoints} unsigned checkpoint(s)${out.unsignedReason ? ` (${out.unsignedReason})` : ''}`);
  } else if (out.chained) {
    o.bench.warn(fields, `security log: ${summary}, only part of the vehicle's log (head seq ${out.vehicleHeadSeq})`);
  } else {
    o.bench.warn({ ...fields, code: out.error?.code }, `security log: the OEM backend's copy is NOT verified: ${out.error ? out.error.message : 'it is not the vehicle\'s chain'}`);
  }
  return out;
}
