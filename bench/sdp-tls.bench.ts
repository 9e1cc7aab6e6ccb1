import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../core/logger.ts';
import { generateTestPki } from '../firmware/pki/generate.ts';
import { CertificateStore, HmacIntegrity } from '../firmware/pki/store.ts';
import { discoverSecc } from '../firmware/sdp/client.ts';
import { SdpSettings } from '../firmware/sdp/settings.ts';
import { parseSettings } from '../firmware/settings.ts';
import { connectTls } from '../firmware/tls/connect.ts';
import type { TlsProfileName } from '../firmware/tls/profiles.ts';
import { SystemClock } from '../hal/clock/system.ts';
import { NodeTlsConnector } from '../hal/net/tls-connector.ts';
import { NodeUdp6 } from '../hal/net/udp6.ts';
import { MemoryStore } from '../hal/store/memory-store.ts';
import { writeTestPki } from '../bin/commands/pki.ts';
import { createEvLink, startSeccProcess } from '../sim/secc/netns-harness.ts';
import type { BenchReport, BenchRow } from './run.ts';
import { summarize } from './stats.ts';

const RUNS = 30;

/**
 * SDP request → TLS established, on a veth pair between two namespaces (SECC simulator in its namespace, EV side
 * in this process): medians for the ISO-2 profile (TLS 1.2) and the ISO-20 profile (TLS 1.3 mutual), plus the
 * SDP and handshake parts and the TLS 1.3 / 1.2 ratio. Needs root (namespaces).
 */
export async function run(): Promise<BenchReport> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  const dir = await mkdtemp(join(tmpdir(), 'evcc-bench-sdp-tls-'));
  const link = await createEvLink();
  const rows: BenchRow[] = [];
  const totals: Record<string, number> = {};
  try {
    const pki = await generateTestPki();
    await writeTestPki(join(dir, 'pki'), pki);
    const trust = await CertificateStore.open(new MemoryStore(), { integrity: new HmacIntegrity(randomBytes(32)) });
    await trust.installRoot(pki.a.root.der, { source: 'bench' });
    const vehicle = { certChainPem: pki.oem.vehicle.pem + pki.oem.sub2.pem + pki.oem.sub1.pem, keyPem: pki.oem.vehicle.keyPem };
    const settings = parseSettings(SdpSettings, {}, 'sdp');
    const log = silentLogger();
    const connector = new NodeTlsConnector();

    for (const [profile, args] of [
      ['iso2-tls12', ['--transport', 'tls12']],
      ['iso20-tls13', ['--transport', 'tls13', '--client-auth']],
    ] as [TlsProfileName, string[]][]) {
      const secc = await startSeccProcess(link, ['--pki', join(dir, 'pki'), '--chain', 'secc-a', ...args]);
      const total: number[] = [];
      const sdp: number[] = [];
      const tls: number[] = [];
      try {
        for (let i = 0; i <= RUNS; i++) {
          const t0 = performance.now();
          const found = await discoverSecc({ udp: new NodeUdp6(), clock: new SystemClock(), log }, { iface: link.evIf, localAddress: link.evLinkLocal, settings });
          const t1 = performance.now();
          const ch = await connectTls({ connector, trust, log }, { secc: found, profile, vehicle });
          const t2 = performance.now();
          await ch.stream.close();
          if (i === 0) continue; // warm-up (first sockets, JIT)
          total.push(t2 - t0);
          sdp.push(t1 - t0);
          tls.push(t2 - t1);
        }
      } finally {
        await secc.stop();
      }
      const label = profile === 'iso2-tls12' ? 'TLS 1.2 (ISO-2, ECDHE-ECDSA-AES128-SHA256)' : 'TLS 1.3 mutual (ISO-20, TLS_AES_128_GCM_SHA256)';
      const t = summarize(total);
      totals[profile] = t.median;
      rows.push({ name: `SDP request -> ${label}`, unit: 'ms', ...t });
      rows.push({ name: `  of which SDP (request -> SECCDiscoveryRes)`, unit: 'ms', ...summarize(sdp) });
      rows.push({ name: `  of which TLS handshake + our path validation`, unit: 'ms', ...summarize(tls) });
    }
    rows.push({ name: 'ratio TLS 1.3 mutual / TLS 1.2 (SDP -> TLS up)', unit: 'x', median: totals['iso20-tls13']! / totals['iso2-tls12']! });
    return {
      title: 'SDP -> TLS on a veth pair (EV in-process, SECC simulator in its namespace)',
      rows,
      notes: [`${RUNS} runs per profile after one warm-up; P-256 test PKI (evcc pki init), 3-certificate SECC chain, 1 installed root`],
    };
  } finally {
    await link.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}
