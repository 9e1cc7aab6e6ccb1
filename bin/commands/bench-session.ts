/**
 * `evcc bench-session` — the main job: one full charging-session setup on the embedded default, with no hardware
 * and no root. Composition root of the simulated bench:
 *
 *   vehicle on swtpm (sim/vehicle-tpm.ts: factory provisioning → OEM-signed release → measured boot → trust
 *   unsealed → MO contract key imported and armed) →
 *   pilot (SimPilot) → SLAC on an in-memory PLC segment with two simulated chargers (ours + a neighbour) →
 *   SDP on a simulated IPv6 link → real TLS on loopback to the SECC simulator whose chain ends in a V2G root the
 *   vehicle lacks (PKI-B) → TLS_UNKNOWN_ROOT → root fetched from the OEM backend reference service over an
 *   in-process MQTT broker (mutual TLS, per-vehicle ACL) → verified, installed, TLS retried → SupportedAppProtocol →
 *   the contract key signs through the pre-armed TPM session (verified with the contract certificate) → A/B commit
 *   raises the anti-rollback counter.
 *
 * Without swtpm/tpm2-tools/rauc (a laptop) or with --no-tpm the session runs on a random in-memory store key and
 * says so loudly (WARN line, `tpm: { skipped }` in the report); the integration test fails that path under CI.
 *
 * Every part is the product's own code; only the peers (chargers, modem, SECC, backend, broker) are simulators.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { BACKEND_IDENTITY, startEmbeddedBroker } from '../../deploy/oem-backend/embedded-broker.ts';
import { createLinkCa, issueLinkCert } from '../../deploy/oem-backend/link-pki.ts';
import { RootCertificatePool } from '../../deploy/oem-backend/pool.ts';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { EvccError } from '../../core/errors.ts';
import { runChargingSession, type ChargingStages, type SessionReport } from '../../firmware/evcc.ts';
import type { Logger } from '../../core/logger.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { rootStoreOf, validateSeccPath } from '../../firmware/ota/pki-adapter.ts';
import { OemRootFetcher } from '../../firmware/ota/root-fetch.ts';
import { backendTrustFromPem } from '../../firmware/ota/signing.ts';
import { connectWithRootFetch, rootFetchBudget } from '../../firmware/ota/unknown-root.ts';
import { derToPem } from '../../firmware/pki/cert.ts';
import { generateTestPki } from '../../firmware/pki/generate.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';
import { discoverSecc } from '../../firmware/sdp/client.ts';
import { SdpSettings } from '../../firmware/sdp/settings.ts';
import { performAppHandshake } from '../../firmware/session/app-handshake.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { macToString, runSlac } from '../../firmware/slac/index.ts';
import { connectTls, type TlsChannel } from '../../firmware/tls/connect.ts';
import { SimIpv6Link } from '../../hal/net/sim-net.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { requestsHighLevelCommunication } from '../../hal/pilot/types.ts';
import { SimPilot } from '../../hal/pilot/sim.ts';
import { SimSegment } from '../../hal/plc/sim.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { startSimCharger, startSimEvModem } from '../../sim/evse-slac/index.ts';
import { startEmbeddedSecc, vehicleCredentials, type EmbeddedChain } from '../../sim/secc/embedded.ts';
import { missingVehicleTpmTools, startBenchVehicleTpm, type BenchVehicleTpm } from '../../sim/vehicle-tpm.ts';
import type { BackendTrust } from '../../firmware/ota/signing.ts';
import { createRuntime, type GlobalOptions } from '../runtime.ts';

interface BenchSessionOptions {
  tls: '1.2' | '1.3';
  chargerPki: 'a' | 'b' | 'b-cross';
  ota: boolean;
  /** false (--no-tpm): no vehicle TPM stage; the store key is random and in memory (said loudly). */
  tpm: boolean;
  keep?: boolean;
  json?: boolean;
}

const EV_MAC = '02:e7:cc:00:00:01';
const OUR_CHARGER = { mac: '02:5e:cc:00:00:01', attenuationDb: 18 };
const NEIGHBOUR = { mac: '02:5e:cc:00:00:02', attenuationDb: 34 };
/**
 * Release the bench OEM ships. Factory provisioning leaves the NV anti-rollback counter at 1 (a new TPM NV counter
 * must be incremented once before it can be read), so committing v1 would raise nothing; v2 makes the commit visible.
 */
const BENCH_RELEASE = 2;

/** The TPM part of the session report. */
export type BenchTpmReport =
  | {
    release: number;
    /** Vehicle stage before plug-in (swtpm start → contract key armed), ms. */
    stageMs: number;
    /** PCR 14 after measured boot (sha256 bank, hex) = SHA-256(0…0 ‖ bundleSha256). */
    pcr14: string;
    bundleSha256: string;
    contractKey: 'signed' | 'unused' | 'signature-invalid';
    /** Contract-key signature through the pre-armed policy session (ms), and tpm2-tools processes on that path. */
    signMs?: number;
    signProcesses?: number;
    /** What was signed and the signature, with the MO's contract certificate: anyone can check it independently. */
    proof?: { message: string; signature: string; contractCertificate: string };
    /** NV anti-rollback counter before and after the A/B commit. */
    counterFrom?: string;
    counter?: string;
  }
  | { skipped: string };

export type BenchSessionReport = SessionReport & { tpm: BenchTpmReport };

export function registerBenchSession(program: Command, globals: () => GlobalOptions): void {
  program
    .command('bench-session')
    .description('one full simulated bench session (vehicle TPM on swtpm, pilot, SLAC, SDP, TLS, OTA root-CA fetch, SupportedAppProtocol, contract-key signature, A/B commit) — no hardware, no root')
    .option('--tls <version>', 'TLS profile: 1.2 (ISO 15118-2) or 1.3 (ISO 15118-20, mutual)', '1.2')
    .option('--charger-pki <pki>', 'the SECC chain ends in root a (known), b (unknown: Solution C) or b-cross (Solution A)', 'b')
    .option('--no-ota', 'no OEM backend: an unknown root ends in the configured fallback')
    .option('--no-tpm', 'no vehicle TPM stage (swtpm): certificate store under a random in-memory key, no contract key')
    .option('--keep', 'keep the session data dir (certificate store, TPM-wrapped keys, swtpm state, bench OEM/MO material) for inspection')
    .option('--json', 'print the session report as JSON on stdout')
    .action(async (opts: BenchSessionOptions) => {
      if (!['1.2', '1.3'].includes(opts.tls)) throw new EvccError('CONFIG_INVALID', `--tls must be 1.2 or 1.3, not ${opts.tls}`);
      if (!['a', 'b', 'b-cross'].includes(opts.chargerPki)) throw new EvccError('CONFIG_INVALID', `--charger-pki must be a, b or b-cross`);
      const report = await runBenchSession(globals(), opts);
      if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      if (report.state !== 'Established') process.exitCode = 1;
    });
}

export async function runBenchSession(g: GlobalOptions, opts: BenchSessionOptions): Promise<BenchSessionReport> {
  const rt = await createRuntime(g);
  const bench = rt.log('BENCH');
  const sim = rt.log('SIM');
  const clock = rt.clock;
  const cleanups: (() => Promise<unknown>)[] = [];
  const dataDir = await mkdtemp(join(tmpdir(), 'evcc-bench-'));
  try {
    bench.info({ dataDir }, 'embedded bench: swtpm, simulated pilot, modem, chargers, SECC, OEM backend and broker; product code everywhere else');

    // --- vehicle state: certificate store with the factory V2G root (PKI-A only: Kilic 2023 Scenario 2) -------------
    bench.info('generating the ISO 15118-2 test PKI (V2G roots A and B, CPO, OEM, MO chains)');
    const pki = await generateTestPki();
    // The OEM backend's answer-signing key: the vehicle must trust it before the first session (factory/bench step).
    const signer = opts.ota ? KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()) : undefined;
    const missingTools = opts.tpm ? missingVehicleTpmTools() : [];
    const skipped = !opts.tpm ? '--no-tpm' : missingTools.length ? `missing ${missingTools.join(', ')}` : undefined;
    let vehicle: BenchVehicleTpm | undefined;
    let store: CertificateStore;
    let backendTrust: BackendTrust | undefined;
    if (skipped === undefined) {
      vehicle = await startBenchVehicleTpm({
        baseDir: join(dataDir, 'vehicle'), dataDir: join(dataDir, 'data'), pki, releaseVersion: BENCH_RELEASE, log: (sub) => rt.log(sub),
        ...(signer ? { backendKeyPem: signer.publicKeyPem } : {}),
      });
      cleanups.push(() => vehicle!.close());
      store = vehicle.store;
      backendTrust = vehicle.backendTrust;
    } else {
      bench.warn({ tpm: 'skipped', reason: skipped }, `NO TPM (${skipped}): vehicle keys are NOT TPM-protected in this run — certificate store under a random in-memory key, no contract key, no measured boot`);
      const files = await FsStore.open(join(dataDir, 'data'));
      store = await CertificateStore.open(files, { integrity: new HmacIntegrity(randomBytes(32)) });
      await store.installRoot(pki.a.root.der, { source: 'factory' });
      backendTrust = signer ? backendTrustFromPem(signer.publicKeyPem) : undefined;
    }

    // --- peers ---------------------------------------------------------------------------------------------------
    const segment = new SimSegment();
    const evModem = startSimEvModem(segment, { hostMac: EV_MAC, log: sim });
    cleanups.push(() => evModem.close());
    for (const c of [OUR_CHARGER, NEIGHBOUR]) {
      const charger = startSimCharger(segment, { evseMac: c.mac, attenuationDb: c.attenuationDb, clock, log: sim });
      cleanups.push(() => charger.close());
    }
    const evLink = segment.attach(EV_MAC, 'ev');
    cleanups.push(() => evLink.close());

    const ipLink = new SimIpv6Link();
    const chain: EmbeddedChain = opts.chargerPki === 'a' ? 'pki-a' : opts.chargerPki === 'b' ? 'pki-b' : 'pki-b-cross';
    const secc = await startEmbeddedSecc({ link: ipLink, pki, tls: opts.tls, chain, log: sim });
    cleanups.push(() => secc.close());
    sim.info({ chain, tls: opts.tls, port: secc.port }, `SECC simulator up, presenting ${chain}`);

    let fetcher: OemRootFetcher | undefined;
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
      const backend = new OemBackend({
        connector: new MqttJsConnector(), url: broker.url, protocolVersion: 4, clientId: 'oem-backend-bench',
        pool: await RootCertificatePool.load(poolDir), signer, clock, log: rt.log('OEM'),
        tls: { ca: ca.certPem, cert: backendId.certPem, key: backendId.keyPem },
      });
      await backend.start();
      cleanups.push(() => backend.stop());
      const vehicleId = rt.settings.vehicleId;
      const vehicleLinkId = await issueLinkCert(ca, { commonName: vehicleId });
      const link = new OtaLink({
        connector: new MqttJsConnector(), url: broker.url, vehicleId, protocolVersion: 4, clock, log: rt.log('OTA'),
        tls: { ca: ca.certPem, cert: vehicleLinkId.certPem, key: vehicleLinkId.keyPem },
      });
      cleanups.push(() => link.close());
      fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId, trust: backendTrust, clock, log: rt.log('OTA'), validatePath: validateSeccPath });
    }

    // --- the session ---------------------------------------------------------------------------------------------
    const pilot = new SimPilot();
    const sdpSettings = parseSettings(SdpSettings, { security: 'tls-required' }, 'sdp');
    const profile = opts.tls === '1.2' ? 'iso2-tls12' : 'iso20-tls13';
    const connector = new NodeTlsConnector(ipLink.resolver());
    const stages: ChargingStages<TlsChannel> = {
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
      slac: async (ctx) => {
        const r = await runSlac({ link: evLink, clock, log: rt.log('SLAC'), settings: (rt.rawConfig.slac ?? {}) as Record<string, unknown>, signal: ctx.signal });
        return {
          evseMac: r.evseMac, nid: Buffer.from(r.nid).toString('hex'),
          evses: r.evses.map((e) => ({ mac: e.mac, averageAttenuationDb: e.averageAttenuationDb ?? Number.NaN })),
        };
      },
      discoverSecc: async (ctx) => {
        const found = await discoverSecc({ udp: ipLink.host('sim-ev', 'fe80::e7:1'), clock, log: rt.log('SDP') }, { iface: 'sim-ev', settings: sdpSettings, signal: ctx.signal });
        return { address: found.address, port: found.port, security: found.security, iface: found.iface };
      },
      openChannel: async (endpoint, ctx) => {
        const e = endpoint;
        const attempt = () => connectTls({ connector, trust: store, log: rt.log('TLS') }, {
          secc: { address: e.address, port: e.port, ...(e.iface ? { iface: e.iface } : {}) }, profile,
          ...(opts.tls === '1.3' ? { vehicle: vehicleCredentials(pki) } : {}), signal: ctx.signal,
        });
        if (!fetcher) {
          const channel = await attempt();
          rt.log('TLS').info({ protocol: channel.protocol, cipher: channel.cipher }, 'connection established');
          return { channel, summary: { protocol: channel.protocol, cipher: channel.cipher } };
        }
        const r = await connectWithRootFetch({
          connectTls: attempt, fetcher, store: rootStoreOf(store, { log: rt.log('PKI') }),
          budgetMs: rootFetchBudget(ctx.setupDeadline, clock.now()), clock, log: { tls: rt.log('TLS'), ota: rt.log('OTA') },
          fallback: 'eim', peer: `[${e.address}]:${e.port}`, signal: ctx.signal,
        });
        return {
          channel: r.session,
          summary: { protocol: r.session.protocol, cipher: r.session.cipher, ...(r.installedRoot ? { installedRoot: r.installedRoot } : {}), ...(r.recoveryMs !== undefined ? { recoveryMs: Math.round(r.recoveryMs) } : {}) },
        };
      },
      appHandshake: async (channel, ctx) => {
        const n = await performAppHandshake({ stream: channel.stream, clock, log: rt.log('APPHAND'), signal: ctx.signal });
        return { namespace: n.namespace, schemaId: n.schemaId, responseCode: n.responseCode };
      },
      closeChannel: (channel) => channel.stream.close(),
    };
    const report = await runChargingSession({ stages, clock, log: rt.log('EVCC') });
    const roots = store.listRoots().map((r) => r.subject);
    bench.info({ state: report.state, setupMs: report.setupMs, roots }, `session ${report.state === 'Established' ? 'established' : 'FAILED'}; vehicle now trusts ${roots.length} V2G root(s)`);
    const tpm: BenchTpmReport = vehicle ? await proveAndCommit(vehicle, report, bench) : { skipped: skipped ?? 'unknown' };
    return { ...report, tpm };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    if (!opts.keep) await rm(dataDir, { recursive: true, force: true });
    else bench.info({ dataDir }, 'data dir kept');
    await rt.close();
  }
}

/**
 * After SupportedAppProtocol: the contract key proves it works (a real ECDSA signature through the session armed
 * before plug-in, verified with the MO's contract certificate), then the A/B commit (`evcc boot commit`) raises the
 * anti-rollback counter. Only an established session with a verifying signature commits the release.
 */
async function proveAndCommit(vehicle: BenchVehicleTpm, report: SessionReport, bench: Logger): Promise<BenchTpmReport> {
  const base = { release: vehicle.outcome.boot.version, stageMs: vehicle.outcome.stageMs, pcr14: vehicle.outcome.boot.pcr14, bundleSha256: vehicle.outcome.boot.bundleSha256 };
  if (report.state !== 'Established') {
    bench.warn({ tpm: 'not-committed' }, `vehicle: session failed: contract key unused, release v${base.release} NOT committed`);
    return { ...base, contractKey: 'unused' };
  }
  // Stand-in for the AuthorizationReq SignedInfo the contract key signs in PnC (GenChallenge from the SECC).
  const message = Buffer.concat([Buffer.from(`evcc bench-session contract-key proof, EVSE ${report.link?.evseMac ?? '?'}, GenChallenge=`), randomBytes(16)]);
  const proof = await vehicle.proveContractKey(new Uint8Array(message));
  const fields = { signMs: proof.signMs, processes: proof.criticalPathProcesses, verified: proof.verified, digest: proof.digest };
  if (!proof.verified) {
    bench.error(fields, `vehicle: contract key signature does NOT verify with the contract certificate: release v${base.release} NOT committed`);
    return { ...base, contractKey: 'signature-invalid', signMs: proof.signMs };
  }
  bench.info(fields, `vehicle: contract key signature verifies with the contract certificate (${vehicle.outcome.contractKey.certificate.split(',')[0]}); TPM2_Sign ${proof.signMs} ms through the pre-armed session`);
  const commit = await vehicle.commit(); // logs `BOOT: release vN committed: anti-rollback counter a -> b`
  return {
    ...base, contractKey: 'signed', signMs: proof.signMs, ...(proof.criticalPathProcesses !== undefined ? { signProcesses: proof.criticalPathProcesses } : {}),
    counterFrom: commit.from, counter: commit.to,
    proof: { message: message.toString('base64'), signature: proof.signature, contractCertificate: vehicle.outcome.contractKey.certificatePem },
  };
}
