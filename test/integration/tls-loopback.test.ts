import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { chainPem, generateTestPki, negativeSamples, type ChainSpec, type NegativeSamples, type TestPki } from '../../firmware/pki/generate.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';
import { UnknownRootError } from '../../firmware/pki/validate.ts';
import { parseCert } from '../../firmware/pki/cert.ts';
import { connectTls } from '../../firmware/tls/connect.ts';
import { SimIpv6Link } from '../../hal/net/sim-net.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { startSimSecc, type SimSecc, type SimSeccOptions } from '../../sim/secc/secc.ts';

/**
 * TLS on the simulated link (real TLS over loopback, no root needed): the same scenarios as the veth suite,
 * plus the properties that need in-process access to both ends (no application byte before our validation).
 */
let pki: TestPki;
let neg: NegativeSamples;
const link = new SimIpv6Link();
const sims: SimSecc[] = [];
let n = 0;

beforeAll(async () => {
  pki = await generateTestPki();
  neg = await negativeSamples(pki);
});
afterAll(async () => {
  for (const s of sims) await s.close();
});

async function secc(chain: ChainSpec, transport: 'tls12' | 'tls13', extra: Partial<SimSeccOptions> = {}, certs?: string): Promise<SimSecc> {
  const address = `fe80::5:${++n}`;
  const s = await startSimSecc({
    udp: link.host(`se${n}`, address), iface: `se${n}`, address, transport, sdp: 'off', listenHost: '127.0.0.1', link,
    certChainPem: certs ?? chainPem(chain), keyPem: chain.leaf.keyPem,
    ...(transport === 'tls13' ? { clientCaPem: pki.oem.root.pem } : {}),
    ...extra,
  });
  sims.push(s);
  return s;
}

async function vehicleStore(roots: Uint8Array[]): Promise<CertificateStore> {
  const store = await CertificateStore.open(new MemoryStore(), { integrity: new HmacIntegrity(randomBytes(32)) });
  for (const r of roots) await store.installRoot(r, { source: 'test' });
  return store;
}

const vehicle = () => ({ certChainPem: pki.oem.vehicle.pem + pki.oem.sub2.pem + pki.oem.sub1.pem, keyPem: pki.oem.vehicle.keyPem });
const connector = new NodeTlsConnector(link.resolver());
const deps = (trust: CertificateStore) => ({ connector, trust, log: silentLogger() });
const pkiA = () => ({ name: 'a', leaf: pki.a.seccLeaf, intermediates: [pki.a.cpoSub2, pki.a.cpoSub1], root: pki.a.root, purpose: 'secc-tls' as const });
const pkiB = () => ({ name: 'b', leaf: pki.b.seccLeaf, intermediates: [pki.b.cpoSub2, pki.b.cpoSub1], root: pki.b.root, purpose: 'secc-tls' as const });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return isEvccError(err) ? err.code : `RAW ${(err as Error).message}`;
  }
}

describe('TLS client against the simulated SECC (loopback)', () => {
  it('TLS 1.2 (ISO-2 profile) and TLS 1.3 mutual (both AES-GCM suites) succeed with PKI-A installed', async () => {
    const trust = await vehicleStore([pki.a.root.der]);
    const s12 = await secc(pkiA(), 'tls12');
    const ch12 = await connectTls(deps(trust), { secc: { address: s12.address, port: s12.port }, profile: 'iso2-tls12' });
    expect([ch12.protocol, ch12.cipher]).toEqual(['TLSv1.2', 'ECDHE-ECDSA-AES128-SHA256']);
    expect(ch12.path.anchor.subject).toBe(pki.a.root.cert.subject);
    await ch12.stream.close();

    for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384']) {
      const s13 = await secc(pkiA(), 'tls13', { tls13Ciphers: suite });
      const ch13 = await connectTls(deps(trust), { secc: { address: s13.address, port: s13.port }, profile: 'iso20-tls13', vehicle: vehicle() });
      expect([ch13.protocol, ch13.cipher]).toEqual(['TLSv1.3', suite]);
      // Mutual: the SECC saw the vehicle certificate; application data flows (V2GTP echo).
      const got = new Promise<Uint8Array>((r) => ch13.stream.onData(r));
      await ch13.stream.write(Uint8Array.from([1, 0xfe, 0x80, 0x01, 0, 0, 0, 1, 0x80]));
      expect(Buffer.from(await got).toString('hex')).toBe('01fe8001000000018' + '0');
      await ch13.stream.close();
      expect(s13.connections[0]!.clientCertSubject).toBe('EVCC-TEST-VEHICLE-1');
    }
  });

  it('PKI-B SECC: TLS_UNKNOWN_ROOT with issuer and AKI, success after installing root B, and via the cross-certificate', async () => {
    const trust = await vehicleStore([pki.a.root.der]);
    const sB = await secc(pkiB(), 'tls12');
    const err = await connectTls(deps(trust), { secc: { address: sB.address, port: sB.port }, profile: 'iso2-tls12' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownRootError);
    const u = err as UnknownRootError;
    expect(u.code).toBe('TLS_UNKNOWN_ROOT');
    expect(u.issuerDn).toBe(pki.b.root.cert.subject);
    expect(u.authorityKeyId).toBe(parseCert(pki.b.root.der).subjectKeyId);
    expect(u.presentedChain).toHaveLength(3);

    await trust.installRoot(pki.b.root.der, { source: 'test' });
    const ok = await connectTls(deps(trust), { secc: { address: sB.address, port: sB.port }, profile: 'iso2-tls12' });
    expect(ok.path.anchor.subject).toBe(pki.b.root.cert.subject);
    await ok.stream.close();

    const onlyA = await vehicleStore([pki.a.root.der]);
    const sCross = await secc(pkiB(), 'tls12', {}, chainPem(pkiB()) + pki.crossBbyA.pem);
    const viaCross = await connectTls(deps(onlyA), { secc: { address: sCross.address, port: sCross.port }, profile: 'iso2-tls12' });
    expect(viaCross.path.viaCrossCertificate).toBe(true);
    expect(viaCross.path.anchor.subject).toBe(pki.a.root.cert.subject);
    await viaCross.stream.close();
  });

  it('rejects broken SECC chains with distinct codes and no application byte reaches the SECC', async () => {
    const trust = await vehicleStore([pki.a.root.der]);
    const cases: [ChainSpec, string][] = [
      [neg.expiredLeaf, 'PKI_CERT_EXPIRED'],
      [neg.wrongKeyUsageLeaf, 'PKI_KEY_USAGE'],
      [neg.throughNonCa, 'PKI_NOT_CA'],
      [neg.selfSignedLeaf, 'PKI_SELF_SIGNED_LEAF'],
    ];
    for (const [chain, code] of cases) {
      for (const transport of ['tls12', 'tls13'] as const) {
        const s = await secc(chain, transport);
        const ended = new Promise((r) => { s.events.once('connection-closed', r); s.events.once('tls-error', r); });
        const opts = { secc: { address: s.address, port: s.port }, profile: transport === 'tls12' ? 'iso2-tls12' as const : 'iso20-tls13' as const, vehicle: vehicle() };
        expect(await codeOf(connectTls(deps(trust), opts)), `${chain.name} ${transport}`).toBe(code);
        await ended;
        // The SECC accepted the TCP connection; whatever of the handshake it completed, no application byte came.
        expect(s.tcpConnections).toBe(1);
        expect(s.connections.filter((c) => c.appBytes > 0)).toEqual([]);
      }
    }
  });

  it('sends no application byte before verifyPeer resolves (the gate holds the socket)', async () => {
    const s = await secc(pkiA(), 'tls13');
    let appBytesWhenGateRan = -1;
    const session = await connector.connect({
      host: s.address, port: s.port, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-SHA256',
      ecdhCurve: 'prime256v1', sigalgs: 'ECDSA+SHA256', clientCertChainPem: vehicle().certChainPem, clientKeyPem: vehicle().keyPem, timeoutMs: 5000,
      verifyPeer: async () => {
        await new Promise((r) => setTimeout(r, 100));
        appBytesWhenGateRan = s.connections[0]?.appBytes ?? 0;
      },
    });
    expect(appBytesWhenGateRan).toBe(0);
    await session.stream.write(Uint8Array.from([1, 0xfe, 0x80, 0x01, 0, 0, 0, 0]));
    await new Promise((r) => session.stream.onData(r));
    expect(s.connections[0]!.appBytes).toBe(8);
    await session.stream.close();
  });

  it('refuses a negotiated suite outside the profile and a mutual profile without credentials', async () => {
    const trust = await vehicleStore([pki.a.root.der]);
    const s = await secc(pkiA(), 'tls13', { tls13Ciphers: 'TLS_CHACHA20_POLY1305_SHA256' });
    const profile = { name: 'iso20-tls13' as const, version: 'TLSv1.3' as const, ciphers: 'TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-SHA256', allowedCiphers: ['TLS_AES_128_GCM_SHA256'], ecdhCurve: 'prime256v1', sigalgs: 'ECDSA+SHA256', mutual: true };
    expect(await codeOf(connectTls(deps(trust), { secc: { address: s.address, port: s.port }, profile, vehicle: vehicle() }))).toBe('TLS_PROFILE_MISMATCH');
    expect(await codeOf(connectTls(deps(trust), { secc: { address: s.address, port: s.port }, profile: 'iso20-tls13' }))).toBe('TLS_CLIENT_CREDENTIALS_MISSING');
    // A TLS 1.2-only SECC is not silently accepted by the TLS 1.3 profile.
    const s12 = await secc(pkiA(), 'tls12');
    expect(await codeOf(connectTls(deps(trust), { secc: { address: s12.address, port: s12.port }, profile: 'iso20-tls13', vehicle: vehicle() }))).toBe('TLS_HANDSHAKE_FAILED');
  });

  it('writes SSLKEYLOGFILE lines when asked (bench builds)', async () => {
    const trust = await vehicleStore([pki.a.root.der]);
    const s = await secc(pkiA(), 'tls13');
    const lines: string[] = [];
    const ch = await connectTls(deps(trust), { secc: { address: s.address, port: s.port }, profile: 'iso20-tls13', vehicle: vehicle(), keyLog: (l) => lines.push(l) });
    await ch.stream.close();
    expect(lines.some((l) => l.startsWith('CLIENT_HANDSHAKE_TRAFFIC_SECRET '))).toBe(true);
    expect(lines.some((l) => l.startsWith('CLIENT_TRAFFIC_SECRET_0 '))).toBe(true);
  });

  it('fails typed on connect refusal, silence (timeout) and abort', async () => {
    const trust = await vehicleStore([pki.a.root.der]);
    const { createServer } = await import('node:net');
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    link.publishTcp('fe80::dead', 60001, { host: '127.0.0.1', port });
    try {
      expect(await codeOf(connectTls(deps(trust), { secc: { address: 'fe80::beef', port: 60002 }, profile: 'iso2-tls12' }))).toBe('TLS_CONNECT_FAILED');
      expect(await codeOf(connectTls(deps(trust), { secc: { address: 'fe80::dead', port: 60001 }, profile: 'iso2-tls12', timeoutMs: 300 }))).toBe('TLS_TIMEOUT');
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 50);
      expect(await codeOf(connectTls(deps(trust), { secc: { address: 'fe80::dead', port: 60001 }, profile: 'iso2-tls12', signal: ac.signal }))).toBe('ABORTED');
    } finally {
      silent.close();
    }
  });

  it('refuses to connect without a verifyPeer gate', async () => {
    const o = { host: '127.0.0.1', port: 9, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'x', ecdhCurve: 'prime256v1', sigalgs: 'ECDSA+SHA256', timeoutMs: 100 };
    expect(await codeOf(connector.connect(o as unknown as Parameters<typeof connector.connect>[0]))).toBe('CONFIG_INVALID');
  });

  it('privacy option: the vehicle certificate is presented only to an SECC whose chain passed a first handshake', async () => {
    const trust = await vehicleStore([pki.a.root.der]);
    // Rejected SECC: it never sees the vehicle certificate.
    const bad = await secc(neg.expiredLeaf, 'tls13');
    const ended = new Promise((r) => { bad.events.once('connection-closed', r); bad.events.once('tls-error', r); });
    expect(await codeOf(connectTls(deps(trust), { secc: { address: bad.address, port: bad.port }, profile: 'iso20-tls13', vehicle: vehicle(), validateBeforeClientAuth: true }))).toBe('PKI_CERT_EXPIRED');
    await ended;
    await new Promise((r) => setTimeout(r, 50));
    expect(bad.tcpConnections).toBe(1);
    expect(bad.connections.filter((c) => c.clientCertSubject)).toEqual([]);
    // Good SECC: probe, then the mutual handshake.
    const good = await secc(pkiA(), 'tls13');
    const ch = await connectTls(deps(trust), { secc: { address: good.address, port: good.port }, profile: 'iso20-tls13', vehicle: vehicle(), validateBeforeClientAuth: true });
    expect(ch.cipher).toBe('TLS_AES_128_GCM_SHA256');
    const closed = new Promise((r) => good.events.once('connection-closed', r));
    await ch.stream.close();
    await closed;
    expect(good.tcpConnections).toBe(2);
    expect(good.connections.map((c) => c.clientCertSubject)).toEqual(['EVCC-TEST-VEHICLE-1']);
  });
});
