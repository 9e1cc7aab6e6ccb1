import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { parseCert } from '../../firmware/pki/cert.ts';
import { generateTestPki, type TestPki } from '../../firmware/pki/generate.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';
import { UnknownRootError } from '../../firmware/pki/validate.ts';
import { connectTls, type ConnectTlsOptions } from '../../firmware/tls/connect.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { writeTestPki } from '../../bin/commands/pki.ts';
import { describeWith, root, tool } from '../support/prereq.ts';
import { createEvLink, startSeccProcess, type EvLink, type SeccProcess } from '../../sim/secc/netns-harness.ts';

/**
 * TLS 1.2 / 1.3 over a real veth pair: one SECC simulator process per scenario in the SECC namespace
 * (`evcc sim-secc`), the vehicle side here with its certificate store on disk and our path validation.
 */
let link: EvLink;
let dir: string;
let pki: TestPki;
const procs: Record<string, SeccProcess> = {};
const integrity = new HmacIntegrity(randomBytes(32));
const connector = new NodeTlsConnector();

const scenarios: Record<string, string[]> = {
  a12: ['--transport', 'tls12', '--chain', 'secc-a'],
  a13: ['--transport', 'tls13', '--chain', 'secc-a', '--client-auth'],
  a13aes256: ['--transport', 'tls13', '--chain', 'secc-a', '--client-auth', '--tls13-ciphers', 'TLS_AES_256_GCM_SHA384'],
  b12: ['--transport', 'tls12', '--chain', 'secc-b'],
  bCross: ['--transport', 'tls12', '--chain', 'secc-b-via-cross'],
  expired: ['--transport', 'tls12', '--chain', 'expired-leaf'],
  wrongKu: ['--transport', 'tls12', '--chain', 'wrong-ku-leaf'],
  nonCa: ['--transport', 'tls13', '--chain', 'through-non-ca', '--client-auth'],
  selfSigned: ['--transport', 'tls12', '--chain', 'self-signed-leaf'],
};

beforeAll(async () => {
  if (process.getuid?.() !== 0) return;
  dir = await mkdtemp(join(tmpdir(), 'evcc-tls-'));
  pki = await generateTestPki();
  await writeTestPki(join(dir, 'pki'), pki, { negative: true });
  link = await createEvLink();
  const started = await Promise.allSettled(Object.entries(scenarios).map(async ([name, args]) => {
    procs[name] = await startSeccProcess(link, ['--pki', join(dir, 'pki'), '--sdp', 'off', ...args]);
  }));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}, 120_000);
afterAll(async () => {
  await Promise.all(Object.values(procs).map((p) => p.stop()));
  await link?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function vehicleStore(sub: string, roots: Uint8Array[]): Promise<CertificateStore> {
  const store = await CertificateStore.open(await FsStore.open(join(dir, sub)), { integrity });
  for (const r of roots) await store.installRoot(r, { source: 'factory' });
  return store;
}
const vehicle = () => ({ certChainPem: pki.oem.vehicle.pem + pki.oem.sub2.pem + pki.oem.sub1.pem, keyPem: pki.oem.vehicle.keyPem });
const to = (name: string, profile: ConnectTlsOptions['profile'] = 'iso2-tls12'): ConnectTlsOptions => ({
  secc: { address: procs[name]!.address, port: procs[name]!.port, iface: link.evIf }, profile, vehicle: vehicle(),
});
const connect = (trust: CertificateStore, o: ConnectTlsOptions) => connectTls({ connector, trust, log: silentLogger() }, o);

describeWith([root, tool('ip')])('TLS to the simulated SECC over a veth pair', () => {
  it('TLS 1.2 (ISO-2) and TLS 1.3 mutual (ISO-20) succeed with PKI-A installed; the negotiated suite is asserted', async () => {
    const trust = await vehicleStore('v-a', [pki.a.root.der]);
    const c12 = await connect(trust, to('a12', 'iso2-tls12'));
    expect([c12.protocol, c12.cipher]).toEqual(['TLSv1.2', 'ECDHE-ECDSA-AES128-SHA256']);
    const echo = new Promise<Uint8Array>((r) => c12.stream.onData(r));
    await c12.stream.write(Uint8Array.from([1, 0xfe, 0x80, 0x01, 0, 0, 0, 2, 0x80, 0x00]));
    expect(Buffer.from(await echo).toString('hex')).toBe('01fe800100000002' + '8000');
    await c12.stream.close();

    const c13 = await connect(trust, to('a13', 'iso20-tls13'));
    expect([c13.protocol, c13.cipher]).toEqual(['TLSv1.3', 'TLS_AES_128_GCM_SHA256']);
    await c13.stream.close();
    // The SECC authenticated the vehicle certificate (mutual TLS).
    expect((await procs.a13!.waitFor((e) => e.event === 'connection-closed')).clientCertSubject).toBe('EVCC-TEST-VEHICLE-1');

    const c256 = await connect(trust, to('a13aes256', 'iso20-tls13'));
    expect(c256.cipher).toBe('TLS_AES_256_GCM_SHA384');
    await c256.stream.close();
  });

  it('PKI-B SECC with only PKI-A installed: TLS_UNKNOWN_ROOT with issuer and AKI; installing root B makes the retry succeed', async () => {
    const trust = await vehicleStore('v-b', [pki.a.root.der]);
    const err = await connect(trust, to('b12')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownRootError);
    const u = err as UnknownRootError;
    expect(u.code).toBe('TLS_UNKNOWN_ROOT');
    expect(u.issuerDn).toBe('CN=V2G Root CA B, O=EVCC Test PKI B, C=DE, DC=V2G');
    expect(u.authorityKeyId).toBe(parseCert(pki.b.root.der).subjectKeyId);
    expect(u.presentedChain.map((d) => parseCert(d).subject)).toEqual([pki.b.seccLeaf.cert.subject, pki.b.cpoSub2.cert.subject, pki.b.cpoSub1.cert.subject]);
    // No application byte reached the SECC.
    await procs.b12!.waitFor((e) => e.event === 'connection-closed' || e.event === 'tls-error');
    expect(procs.b12!.events.filter((e) => Number(e.appBytes ?? 0) > 0)).toEqual([]);

    await trust.installRoot(pki.b.root.der, { source: 'test' });
    const ok = await connect(trust, to('b12'));
    expect(ok.path.anchor.subject).toBe(pki.b.root.cert.subject);
    await ok.stream.close();
  });

  it('with the cross-certificate (Solution A) the PKI-B SECC is accepted without installing root B', async () => {
    const trust = await vehicleStore('v-cross', [pki.a.root.der]);
    const c = await connect(trust, to('bCross'));
    expect(c.path.viaCrossCertificate).toBe(true);
    expect(c.path.anchor.subject).toBe(pki.a.root.cert.subject);
    expect(trust.rootCount).toBe(1);
    await c.stream.close();
  });

  it('rejects an expired leaf, a wrong key usage, a chain through a non-CA and a self-signed leaf, each with its own code, before any application byte', async () => {
    const trust = await vehicleStore('v-neg', [pki.a.root.der]);
    const cases: [string, string, ConnectTlsOptions['profile']][] = [
      ['expired', 'PKI_CERT_EXPIRED', 'iso2-tls12'],
      ['wrongKu', 'PKI_KEY_USAGE', 'iso2-tls12'],
      ['nonCa', 'PKI_NOT_CA', 'iso20-tls13'],
      ['selfSigned', 'PKI_SELF_SIGNED_LEAF', 'iso2-tls12'],
    ];
    for (const [name, code, profile] of cases) {
      const err = await connect(trust, to(name, profile)).catch((e: unknown) => e);
      expect(isEvccError(err) ? err.code : String(err), name).toBe(code);
      await procs[name]!.waitFor((e) => e.event === 'connection-closed' || e.event === 'tls-error');
      expect(procs[name]!.events.filter((e) => Number(e.appBytes ?? 0) > 0), name).toEqual([]);
    }
  });

  it('refuses a root store file tampered on disk (PKI_STORE_TAMPERED): an injected root B does not make PKI-B trusted', async () => {
    await vehicleStore('v-tamper', [pki.a.root.der]);
    const path = join(dir, 'v-tamper/pki/store.json');
    const envelope = JSON.parse(await readFile(path, 'utf8')) as { body: string };
    const body = JSON.parse(envelope.body) as { roots: { der: string; installedAt: string; source: string }[] };
    body.roots.push({ der: Buffer.from(pki.b.root.der).toString('base64'), installedAt: new Date().toISOString(), source: 'attacker' });
    await writeFile(path, JSON.stringify({ ...envelope, body: JSON.stringify(body) }));
    const err = await CertificateStore.open(await FsStore.open(join(dir, 'v-tamper')), { integrity }).catch((e: unknown) => e);
    expect(isEvccError(err, 'PKI_STORE_TAMPERED')).toBe(true);
  });
});
