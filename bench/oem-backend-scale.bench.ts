import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchReport, BenchRow } from './run.ts';
import { processCpuMs, summarize } from './stats.ts';
import { otaFixture } from '../test/integration/ota-fixtures.ts';
import { until } from '../test/support/until.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { backendFlags, startBackendInstance, type BackendInstance } from '../test/support/oem-backend-cluster.ts';
import { silentLogger } from '../core/logger.ts';
import { OTA_REQUEST_REPUBLISH_MS } from '../firmware/ota/constants.ts';
import { OtaLink } from '../firmware/ota/link.ts';
import { OemRootFetcher } from '../firmware/ota/root-fetch.ts';
import { parseCert } from '../firmware/pki/cert.ts';
import { chainDer } from '../firmware/pki/generate.ts';
import { SystemClock } from '../hal/clock/system.ts';
import { MqttJsConnector } from '../hal/mqtt/mqtt-js.ts';

/**
 * OEM backend scale-out (issue #10 Must show 9, backend part): root-CA answers per second with 1 and with 2
 * `evcc oem-backend` processes in one MQTT 5 shared-subscription group, behind a real mosquitto (mTLS + ACL), with
 * VEHICLES simulated vehicles connected at once (each its own link certificate and MQTT session). CONCURRENCY
 * requests are in flight at any time, spread round robin over all connected vehicles (a closed loop: a fleet's
 * requests are rare, so the load is many vehicles with one request each, not one vehicle flooding). Every answer is
 * verified (OEM signature, nonce, root profile, approval). Phases alternate 1 → 2 → 1 → 2 instances on the same
 * connected fleet; the CPU each process used per phase shows where the limit is. Figures are medians of 1-s windows.
 */
const VEHICLES = Number(process.env.OEM_SCALE_VEHICLES ?? 1000);
const CONCURRENCY = Number(process.env.OEM_SCALE_CONCURRENCY ?? 128);
const PHASE_SECONDS = 6;
const WARMUP_MS = 1_000;

const clock = new SystemClock();
const connector = new MqttJsConnector();

/** The soft open-file limit of this process (its children, mosquitto included, inherit it). */
async function openFileLimit(): Promise<number> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  return m?.[1] === 'unlimited' || !m ? Number.POSITIVE_INFINITY : Number(m[1]);
}

interface PhaseResult {
  instances: number;
  perSecond: number[];
  answered: number;
  lost: number;
  latencies: number[];
  /** CPU share (1.0 = one core) of each process over the phase. */
  cpu: Record<string, number>;
  /** Answers per instance (from its request log). */
  share: number[];
}

export async function run(): Promise<BenchReport> {
  const limit = await openFileLimit();
  // One socket per vehicle here and at the broker, plus files, pipes and the backends' sockets.
  if (limit < VEHICLES + 256) throw new Error(`open-file limit ${limit} is below ${VEHICLES + 256}: raise it (ulimit -n ${VEHICLES * 2}) for ${VEHICLES} vehicles`);
  const fx = await otaFixture();
  const broker = await startMosquitto({ maxQueuedMessages: 100_000, maxConnections: VEHICLES + 64 });
  const dir = await mkdtemp(join(tmpdir(), 'evcc-oem-scale-'));
  const instances: BackendInstance[] = [];
  const links: OtaLink[] = [];
  try {
    // Capacity is measured: the per-vehicle rate limit stays at its default (each vehicle sends ~1 request/s here).
    const flags = await backendFlags(broker, dir, fx.signerKeyPem, fx.poolDir);
    const start = async (name: string) => {
      const i = startBackendInstance(name, flags);
      instances.push(i);
      await Promise.race([i.ready, new Promise((_, reject) => setTimeout(() => reject(new Error(`${name} not ready: ${i.lines.slice(-3).join(' | ')}`)), 30_000))]);
      return i;
    };
    const a = await start('a');

    const chain = chainDer({ name: 'b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' });
    const top = parseCert(chain[chain.length - 1]!);
    const presented = { issuer: top.issuer, aki: top.authorityKeyId!, chain };
    const connectStart = Date.now();
    const fleet: OemRootFetcher[] = [];
    // In batches: a thousand TLS handshakes at once would only measure the broker's accept queue.
    for (let n = 0; n < VEHICLES; n += 100) {
      const batch = await Promise.all(Array.from({ length: Math.min(100, VEHICLES - n) }, async (_, k) => {
        const vid = `scale-veh-${String(n + k).padStart(4, '0')}`;
        const link = new OtaLink({ connector, url: broker.url, vehicleId: vid, protocolVersion: 5, tls: await broker.identity(vid), clock, log: silentLogger(), reconnectPeriodMs: 1_000 });
        links.push(link);
        return { link, fetcher: new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId: vid, trust: fx.trust, clock, log: silentLogger() }) };
      }));
      await until(() => batch.every((v) => v.link.status === 'connected'), 60_000, `vehicles ${n}…${n + batch.length - 1} connected`);
      fleet.push(...batch.map((v) => v.fetcher));
    }
    const connectSeconds = (Date.now() - connectStart) / 1000;

    const phase = async (running: BackendInstance[]): Promise<PhaseResult> => {
      let next = 0;
      let answered = 0;
      let lost = 0;
      let measuring = false;
      const latencies: number[] = [];
      const t0 = Date.now();
      const stopAt = t0 + WARMUP_MS + PHASE_SECONDS * 1000;
      const loops = Array.from({ length: CONCURRENCY }, async () => {
        while (Date.now() < stopAt) {
          const fetcher = fleet[next++ % fleet.length]!;
          const s = Date.now();
          try {
            await fetcher.fetchRoot(presented, { budgetMs: 8_000 });
            if (measuring) {
              answered++;
              latencies.push(Date.now() - s);
            }
          } catch {
            if (measuring) lost++;
          }
        }
      });
      await new Promise((r) => setTimeout(r, WARMUP_MS));
      measuring = true;
      const pids: Record<string, number> = { mosquitto: broker.pid!, ...Object.fromEntries(running.map((i, n) => [`oem-backend #${n + 1}`, i.proc.pid!])) };
      const cpu0 = Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([k, p]) => [k, await processCpuMs(p)] as const)));
      const self0 = process.cpuUsage();
      const share0 = running.map((i) => i.answered.length);
      const perSecond: number[] = [];
      let last = 0;
      const meter = setInterval(() => {
        perSecond.push(answered - last);
        last = answered;
      }, 1000);
      const m0 = Date.now();
      await Promise.all(loops);
      clearInterval(meter);
      const wall = Date.now() - m0;
      const self = process.cpuUsage(self0);
      const cpu: Record<string, number> = { 'vehicles (this process)': (self.user + self.system) / 1000 / wall };
      for (const [k, p] of Object.entries(pids)) cpu[k] = ((await processCpuMs(p)) - cpu0[k]!) / wall;
      return { instances: running.length, perSecond, answered, lost, latencies, cpu, share: running.map((i, n) => i.answered.length - share0[n]!) };
    };

    const results: PhaseResult[] = [];
    results.push(await phase([a]));
    const b = await start('b');
    results.push(await phase([a, b]));
    b.proc.kill('SIGTERM');
    await b.exit;
    results.push(await phase([a]));
    const b2 = await start('b2');
    results.push(await phase([a, b2]));

    const of = (n: number) => results.filter((r) => r.instances === n);
    const rate = (n: number) => summarize(of(n).flatMap((r) => r.perSecond));
    const one = rate(1);
    const two = rate(2);
    const lost = results.reduce((s, r) => s + r.lost, 0);
    const cpuRows = (n: number): BenchRow[] => {
      const keys = Object.keys(of(n)[0]!.cpu);
      return keys.map((k) => {
        const c = summarize(of(n).map((r) => r.cpu[k] ?? 0));
        return { name: `    CPU of ${k}`, median: c.median, unit: 'cores', min: c.min, max: c.max, n: c.n };
      });
    };
    const lat = (n: number) => summarize(of(n).flatMap((r) => r.latencies));
    /** Backend CPU (all instances) per answer: what one answer costs, whatever else shares the machine. */
    const backendCpu = (n: number) => summarize(of(n).map((r) => (Object.entries(r.cpu).filter(([k]) => k.startsWith('oem-backend')).reduce((s, [, c]) => s + c, 0) * PHASE_SECONDS * 1000) / Math.max(1, r.answered)));
    const shares = of(2).map((r) => r.share.join('/')).join(', ');
    const rows: BenchRow[] = [
      { name: `root-CA answers/s, 1 instance, ${VEHICLES} vehicles connected`, median: one.median, unit: '1/s', min: one.min, max: one.max, n: one.n },
      ...cpuRows(1),
      { name: '    request → verified answer latency', median: lat(1).median, unit: 'ms', min: lat(1).min, max: lat(1).max, n: lat(1).n },
      { name: '    backend CPU per answer', median: backendCpu(1).median, unit: 'ms', min: backendCpu(1).min, max: backendCpu(1).max, n: backendCpu(1).n },
      { name: `root-CA answers/s, 2 instances (shared subscription)`, median: two.median, unit: '1/s', min: two.min, max: two.max, n: two.n, note: `answers per instance ${shares}` },
      ...cpuRows(2),
      { name: '    request → verified answer latency', median: lat(2).median, unit: 'ms', min: lat(2).min, max: lat(2).max, n: lat(2).n },
      { name: '    backend CPU per answer (both instances)', median: backendCpu(2).median, unit: 'ms', min: backendCpu(2).min, max: backendCpu(2).max, n: backendCpu(2).n },
      { name: 'ratio 2 instances / 1 instance', median: two.median / one.median, unit: '×' },
      { name: '→ one instance\'s capacity per CPU core (1000 / CPU ms per answer)', median: 1000 / backendCpu(1).median, unit: '1/s', note: 'load-independent estimate' },
      { name: `answers that needed a re-publish (> ${OTA_REQUEST_REPUBLISH_MS} ms)`, median: results.flatMap((r) => r.latencies).filter((l) => l > OTA_REQUEST_REPUBLISH_MS).length, unit: 'requests' },
      { name: 'requests lost (no valid answer within 8 s)', median: lost, unit: 'requests', note: lost === 0 ? 'zero lost' : 'LOST REQUESTS' },
      { name: `time to connect ${VEHICLES} vehicles (mTLS, batches of 100)`, median: connectSeconds, unit: 's' },
    ];
    if (lost > 0) throw new Error(`${lost} root-CA requests lost`);
    return {
      title: `OEM backend scale-out: mosquitto + 1 vs 2 evcc oem-backend processes ($share), ${VEHICLES} vehicles, ${CONCURRENCY} requests in flight`,
      rows,
      notes: [
        `${cpus().length} CPUs for everything: mosquitto (one thread), the backend processes and the ${VEHICLES} vehicles with their answer verification (this process); load average ${loadavg()[0]!.toFixed(1)}.`,
        'The ratio is capacity gained only where the backend process was the bottleneck: compare its CPU share with the others above.',
      ],
    };
  } finally {
    for (const l of links) await l.close().catch(() => undefined);
    for (const i of instances) if (i.proc.exitCode === null && i.proc.signalCode === null) i.proc.kill('SIGTERM');
    await broker.stop();
    await fx.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
}
