import { randomBytes } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { generateTestPki, type TestPki } from '../../firmware/pki/generate.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';
import { discoverSecc } from '../../firmware/sdp/client.ts';
import { SdpSettings } from '../../firmware/sdp/settings.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { connectTls } from '../../firmware/tls/connect.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { SimIpv6Link } from '../../hal/net/sim-net.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { startEmbeddedSecc, vehicleCredentials } from '../../sim/secc/embedded.ts';
import type { SimSecc } from '../../sim/secc/secc.ts';

/** The embedded-bench path (no root): SDP on the simulated link, then real TLS on loopback, as evcc.ts chains them. */
let pki: TestPki;
const open: SimSecc[] = [];
beforeAll(async () => {
  pki = await generateTestPki();
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function chain(link: SimIpv6Link, trust: CertificateStore, profile: 'iso2-tls12' | 'iso20-tls13', security: 'tls-required' | 'tls-preferred' = 'tls-required') {
  const found = await discoverSecc({ udp: link.host('sim-ev', 'fe80::e7:1'), clock: new SystemClock(), log: silentLogger() }, {
    iface: 'sim-ev', settings: parseSettings(SdpSettings, { security }, 'sdp'),
  });
  return connectTls({ connector: new NodeTlsConnector(link.resolver()), trust, log: silentLogger() }, { secc: found, profile, vehicle: vehicleCredentials(pki) });
}

describe('SDP -> TLS on the simulated link (embedded bench, no root)', () => {
  it('discovers the SECC and opens TLS 1.2 and TLS 1.3 mutual', async () => {
    const trust = await CertificateStore.open(new MemoryStore(), { integrity: new HmacIntegrity(randomBytes(32)) });
    await trust.installRoot(pki.a.root.der, { source: 'factory' });
    for (const [tls, profile, cipher] of [['1.2', 'iso2-tls12', 'ECDHE-ECDSA-AES128-SHA256'], ['1.3', 'iso20-tls13', 'TLS_AES_128_GCM_SHA256']] as const) {
      const link = new SimIpv6Link();
      open.push(await startEmbeddedSecc({ link, pki, tls, sdp: 'junk-first' }));
      const ch = await chain(link, trust, profile);
      expect(ch.cipher).toBe(cipher);
      await ch.stream.close();
    }
  });

  it('PKI-B: unknown root, then cross-certificate accepted; plain TCP refused under PnC', async () => {
    const trust = await CertificateStore.open(new MemoryStore(), { integrity: new HmacIntegrity(randomBytes(32)) });
    await trust.installRoot(pki.a.root.der, { source: 'factory' });
    const l1 = new SimIpv6Link();
    open.push(await startEmbeddedSecc({ link: l1, pki, tls: '1.2', chain: 'pki-b' }));
    expect(await chain(l1, trust, 'iso2-tls12').then(() => 'OK', (e: unknown) => (isEvccError(e) ? e.code : 'RAW'))).toBe('TLS_UNKNOWN_ROOT');
    const l2 = new SimIpv6Link();
    open.push(await startEmbeddedSecc({ link: l2, pki, tls: '1.2', chain: 'pki-b-cross' }));
    const viaCross = await chain(l2, trust, 'iso2-tls12');
    expect(viaCross.path.viaCrossCertificate).toBe(true);
    await viaCross.stream.close();
    const l3 = new SimIpv6Link();
    open.push(await startEmbeddedSecc({ link: l3, pki, tls: 'none' }));
    expect(await chain(l3, trust, 'iso2-tls12').then(() => 'OK', (e: unknown) => (isEvccError(e) ? e.code : 'RAW'))).toBe('SDP_TLS_REQUIRED');
  });
});
