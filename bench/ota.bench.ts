import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchReport, BenchRow } from './run.ts';
import { processCpuMs as cpuMs, summarize } from './stats.ts';
import { otaFixture, STORE_KEY } from '../test/integration/ota-fixtures.ts';
import { OEM_BACKEND_USER, startMosquitto } from '../test/support/mosquitto.ts';
import { until } from '../test/support/until.ts';
import { startSimSecc } from '../sim/secc/secc.ts';
import { silentLogger } from '../core/logger.ts';
import { OtaLink } from '../firmware/ota/link.ts';
import { OTA_REQUEST_REPUBLISH_MS } from '../firmware/ota/constants.ts';
import { rootStoreOf, validateSeccPath } from '../firmware/ota/pki-adapter.ts';
import { OemRootFetcher } from '../firmware/ota/root-fetch.ts';
import { connectWithRootFetch } from '../firmware/ota/unknown-root.ts';
import { chainDer, chainPem } from '../firmware/pki/generate.ts';
import { parseCert } from '../firmware/pki/cert.ts';
import { CertificateStore, HmacIntegrity } from '../firmware/pki/store.ts';
import { connectTls } from '../firmware/tls/connect.ts';
import { SystemClock } from '../hal/clock/system.ts';
import { MqttJsConnector } from '../hal/mqtt/mqtt-js.ts';
import { SimIpv6Link } from '../hal/net/sim-net.ts';
import { NodeTlsConnector } from '../hal/net/tls-connector.ts';
import { MemoryStore } from '../hal/store/memory-store.ts';
import { startEmbeddedBroker } from '../deploy/oem-backend/embedded-broker.ts';
import { OemBackend } from '../deploy/oem-backend/service.ts';

/**
 * OTA root fetch (Solution C) figures, against a real Debian mosquitto (mTLS + ACL) and the OEM backend running as
 * its own process (`evcc oem-backend`):
 *  1. time from the TLS failure (TLS_UNKNOWN_ROOT) to the established retry — real TLS 1.2 to the SECC simulator on
 *     PKI-B (loopback), fetch over the broker, verification, atomic install — median over RECOVERY_RUNS;
 *  2. the backend's sustained root-CA answers per second with VEHICLES simulated vehicles connected at once (each its
 *     own mTLS identity), each in a closed loop of fetches with full answer verification, and the number of
 *     requests lost (must be 0).
 */
const RECOVERY_RUNS = 25;
const VEHICLES = 200;
const LOAD_SECONDS = 6;

const clock = new SystemClock();
const connector = new MqttJsConnector();

export async function run(): Promise<BenchReport> {
  const fx = await otaFixture();
  const broker = await startMosquitto({ maxQueuedMessages: 100_000 });
  const dir = await mkdtemp(join(tmpdir(), 'evcc-ota-bench-'));
  let backend: ChildProcess | undefined;
  const links: OtaLink[] = [];
  try {
    // The OEM backend as a separate process, as deployed.
    const id = await broker.identity(OEM_BACKEND_USER);
    await writeFile(join(dir, 'ca.pem'), broker.ca.certPem);
    await writeFile(join(dir, 'backend.pem'), id.cert as string);
    await writeFile(join(dir, 'backend.key'), id.key as string, { mode: 0o600 });
    await writeFile(join(dir, 'answer.key'), fx.signerKeyPem, { mode: 0o600 });
    backend = spawn(process.execPath, ['--import', 'tsx', join(process.cwd(), 'bin/evcc.ts'), '--log-level', 'warn', 'oem-backend', '--pool', fx.poolDir,
      '--broker', broker.url, '--signing-key', join(dir, 'answer.key'), '--ca', join(dir, 'ca.pem'), '--cert', join(dir, 'backend.pem'), '--key', join(dir, 'backend.key'),
      // Capacity is measured: the per-vehicle rate limit (default 5/s) is lifted for the closed-loop load.
      '--client-id', 'oem-backend-bench', '--rate-limit', '1000', '--rate-burst', '1000'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const backendErr: string[] = [];
    backend.stderr!.on('data', (b: Buffer) => backendErr.push(b.toString()));
    // Ready when the backend answers: probe with one vehicle until a fetch succeeds.
    const chainB = chainDer({ name: 'b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' });
    const top = parseCert(chainB[chainB.length - 1]!);
    const presented = { issuer: top.issuer, aki: top.authorityKeyId!, chain: chainB };

    const vehicle = async (vid: string) => {
      const link = new OtaLink({ connector, url: broker.url, vehicleId: vid, protocolVersion: 5, tls: await broker.identity(vid), clock, log: silentLogger(), reconnectPeriodMs: 500, ...(process.env.OTA_BENCH_REPUBLISH ? { republishMs: Number(process.env.OTA_BENCH_REPUBLISH) } : {}) });
      links.push(link);
      const fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId: vid, trust: fx.trust, clock, log: silentLogger(), validatePath: validateSeccPath });
      return { link, fetcher };
    };
    const probe = await vehicle('bench-probe');
    await until(() => probe.link.status === 'connected', 10_000, 'broker');
    for (let i = 0; ; i++) {
      try {
        await probe.fetcher.fetchRoot(presented, { budgetMs: 2000 });
        break;
      } catch (err) {
        if (i > 15) throw new Error(`OEM backend not answering: ${String(err)} ${backendErr.join('')}`);
      }
    }

    // 1. TLS failure → established retry, real TLS to the SECC simulator on PKI-B.
    const link = new SimIpv6Link();
    const secc = await startSimSecc({
      udp: link.host('se0', 'fe80::5:1'), iface: 'se0', address: 'fe80::5:1', transport: 'tls12', sdp: 'off', listenHost: '127.0.0.1', link,
      certChainPem: chainPem({ name: 'b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' }),
      keyPem: fx.pki.b.seccLeaf.keyPem,
    });
    const tlsConnector = new NodeTlsConnector(link.resolver());
    const recoveryRuns = async (fetcher: OemRootFetcher) => {
      const recovery: number[] = [];
      const handshake: number[] = [];
      for (let i = 0; i < RECOVERY_RUNS; i++) {
        const store = await CertificateStore.open(new MemoryStore(), { integrity: new HmacIntegrity(STORE_KEY) });
        await store.installRoot(fx.pki.a.root.der, { source: 'factory' });
        const tls = () => connectTls({ connector: tlsConnector, trust: store, log: silentLogger() }, { secc: { address: 'fe80::5:1', port: secc.port, iface: 'se0' }, profile: 'iso2-tls12' });
        const r = await connectWithRootFetch({
          connectTls: tls, fetcher, store: rootStoreOf(store), budgetMs: 8000, clock, log: { tls: silentLogger(), ota: silentLogger() }, fallback: 'retry-later',
        });
        recovery.push(r.recoveryMs!);
        handshake.push(r.session.handshakeMs);
        await r.session.stream.close();
      }
      return { recovery, handshake };
    };
    const ev = await vehicle('bench-recovery');
    await until(() => ev.link.status === 'connected', 10_000, 'vehicle link');
    const { recovery, handshake } = await recoveryRuns(ev.fetcher);

    // 1b. The same over the embedded broker of the bench session (aedes, MQTT 3.1.1, backend in-process).
    const embedded = await startEmbeddedBroker();
    const embeddedBackend = new OemBackend({ connector, url: embedded.url, protocolVersion: 4, clientId: 'oem-backend-embedded', pool: fx.pool, signer: fx.signer, clock, log: silentLogger(), rateLimit: { perSecond: 1000, burst: 1000 } });
    let embeddedRecovery: number[];
    try {
      await embeddedBackend.start();
      const embLink = new OtaLink({ connector, url: embedded.url, vehicleId: 'bench-embedded', protocolVersion: 4, clock, log: silentLogger() });
      links.push(embLink);
      await until(() => embLink.status === 'connected', 10_000, 'embedded broker');
      embeddedRecovery = (await recoveryRuns(new OemRootFetcher({ rpc: embLink.rootCaRpc, vehicleId: 'bench-embedded', trust: fx.trust, clock, log: silentLogger(), validatePath: validateSeccPath }))).recovery;
      await embLink.close();
    } finally {
      await embeddedBackend.stop();
      await embedded.close();
    }
    await secc.close();

    // 2. Backend throughput with VEHICLES connected at once, closed-loop fetches for LOAD_SECONDS.
    const fleet = await Promise.all(Array.from({ length: VEHICLES }, (_, i) => vehicle(`bench-veh-${String(i).padStart(3, '0')}`)));
    await until(() => fleet.every((v) => v.link.status === 'connected'), 30_000, `${VEHICLES} vehicles connected`);
    let answered = 0;
    let lost = 0;
    const latencies: number[] = [];
    const cpu0 = await cpuMs(backend.pid!);
    const t0 = clock.now();
    const stopAt = t0 + LOAD_SECONDS * 1000;
    const perSecond: number[] = [];
    let lastCount = 0;
    const meter = setInterval(() => {
      perSecond.push(answered - lastCount);
      lastCount = answered;
    }, 1000);
    await Promise.all(fleet.map(async (v) => {
      while (clock.now() < stopAt) {
        const s = clock.now();
        try {
          await v.fetcher.fetchRoot(presented, { budgetMs: 10_000 });
          answered++;
          latencies.push(clock.now() - s);
        } catch {
          lost++;
        }
      }
    }));
    clearInterval(meter);
    const elapsed = (clock.now() - t0) / 1000;
    const backendCpuMs = (await cpuMs(backend.pid!)) - cpu0;
    const lat = summarize(latencies);
    const rec = summarize(recovery);
    const hs = summarize(handshake);
    const emb = summarize(embeddedRecovery);
    const sustained = perSecond.length ? summarize(perSecond) : undefined;
    const rows: BenchRow[] = [
      { name: 'TLS_UNKNOWN_ROOT → fetch → verify → install → TLS up', median: rec.median, unit: 'ms', min: rec.min, max: rec.max, n: rec.n, note: 'mosquitto mTLS, MQTT 5' },
      { name: '  of which: the retry TLS 1.2 handshake', median: hs.median, unit: 'ms', min: hs.min, max: hs.max, n: hs.n },
      { name: '  same over the embedded aedes broker (MQTT 3.1.1)', median: emb.median, unit: 'ms', min: emb.min, max: emb.max, n: emb.n, note: 'bench session' },
      { name: `root-CA answers/s, ${VEHICLES} vehicles connected (total/elapsed)`, median: answered / elapsed, unit: '1/s', n: answered, note: `${elapsed.toFixed(1)} s` },
      ...(sustained ? [{ name: '  per-second windows', median: sustained.median, unit: '1/s', min: sustained.min, max: sustained.max, n: sustained.n }] : []),
      { name: '  backend CPU per answer (oem-backend process, utime+stime)', median: backendCpuMs / answered, unit: 'ms', n: answered },
      { name: '  → backend capacity per CPU core (1000 / CPU ms per answer)', median: answered / (backendCpuMs / 1000), unit: '1/s', note: 'load-independent estimate' },
      { name: '  request → verified answer latency under load', median: lat.median, unit: 'ms', min: lat.min, max: lat.max, n: lat.n },
      { name: '  requests lost (timed out)', median: lost, unit: 'requests', note: lost === 0 ? 'zero lost' : 'LOST REQUESTS' },
      { name: '  answers that needed a republish (> OTA_REQUEST_REPUBLISH_MS)', median: latencies.filter((l) => l > OTA_REQUEST_REPUBLISH_MS).length, unit: 'requests' },
    ];
    if (lost > 0) throw new Error(`${lost} root-CA requests lost under load`);
    return {
      title: `OTA root-CA fetch (Solution C): mosquitto ${broker.url}, evcc oem-backend process, ${VEHICLES} vehicles`,
      rows,
      notes: [
        'Vehicles verify every answer fully (OEM signature, nonce, V2G root profile, anchoring + firmware/pki path validation).',
        `All ${VEHICLES} vehicles and the verification run in this one process: answers/s is a lower bound of the backend's capacity (load average ${loadavg()[0]!.toFixed(1)}).`,
      ],
    };
  } finally {
    for (const l of links) await l.close().catch(() => undefined);
    backend?.kill('SIGTERM');
    await broker.stop();
    await fx.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}
