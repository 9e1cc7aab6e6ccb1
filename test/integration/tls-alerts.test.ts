import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createDecipheriv } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer, connect as tcpConnect, type Server as TcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createServer as createTlsServer, type Server as TlsServer, type TlsOptions } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { parseCert } from '../../firmware/pki/cert.ts';
import { chainPem, generateTestPki, negativeSamples, type ChainSpec, type NegativeSamples, type TestPki } from '../../firmware/pki/generate.ts';
import { UnknownRootError } from '../../firmware/pki/validate.ts';
import { connectTls, type ConnectTlsOptions } from '../../firmware/tls/connect.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { RECORD_ALERT, RECORD_APPLICATION_DATA, RECORD_CHANGE_CIPHER_SPEC, RECORD_HANDSHAKE, RecordSplitter, recordNonce, trafficKeys, type TlsRecord } from '../../hal/net/tls-records.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';

/**
 * What the EV puts on the wire when it refuses an SECC, when the SECC refuses the vehicle certificate, and when it
 * closes: seen from the server side (Node's OpenSSL server reports the alert it received; a recording TCP proxy
 * between the two keeps every record the EV sent), and from `openssl s_server -msg`, an independent TLS server
 * that prints every record and alert it receives, decrypted.
 */
let pki: TestPki;
let neg: NegativeSamples;
const connector = new NodeTlsConnector();
const closers: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  pki = await generateTestPki();
  neg = await negativeSamples(pki);
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

const chainOf = (p: TestPki['a']): ChainSpec => ({ name: 'secc', leaf: p.seccLeaf, intermediates: [p.cpoSub2, p.cpoSub1], root: p.root, purpose: 'secc-tls' });
const vehicle = () => ({ certChainPem: pki.oem.vehicle.pem + pki.oem.sub2.pem + pki.oem.sub1.pem, keyPem: pki.oem.vehicle.keyPem });
const onlyRootA = () => ({ anchors: () => [pki.a.root.der] });
type Version = 'TLSv1.2' | 'TLSv1.3';
const profileOf = (v: Version) => (v === 'TLSv1.2' ? 'iso2-tls12' as const : 'iso20-tls13' as const);

async function outcome(p: Promise<{ stream: { close(): Promise<void> } }>): Promise<unknown> {
  try {
    const ch = await p;
    await ch.stream.close();
    return 'OK';
  } catch (err) {
    return err;
  }
}
const codeOf = (e: unknown): string => (e === 'OK' ? 'OK' : isEvccError(e) ? e.code : `RAW ${String(e)}`);

// ---------------------------------------------------------------------------------------------------------------
// Node TLS server behind a recording proxy.

interface ServerSide {
  port: number;
  /** `tlsClientError` messages (OpenSSL's reason, with "SSL alert number N" for a received alert). */
  clientErrors: string[];
  secureConnections: number;
  /** Records the EV sent, per TCP connection, in order. */
  fromEv: TlsRecord[][];
  /** Resolves when the EV side of connection `i` has ended (FIN or reset). */
  evEnded(i: number): Promise<void>;
  keylog: string[];
}

interface ServerOptions {
  version: Version;
  chain: ChainSpec;
  tls?: Partial<TlsOptions>;
  /** The proxy closes both sides (FIN, no alert) as soon as the EV's first encrypted TLS 1.3 record arrives. */
  closeAfterEvFlight?: boolean;
}

async function listen(server: TcpServer | TlsServer): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as { port: number }).port;
}

async function serverSide(o: ServerOptions): Promise<ServerSide> {
  const side: ServerSide = { port: 0, clientErrors: [], secureConnections: 0, fromEv: [], evEnded: async () => undefined, keylog: [] };
  const tls = createTlsServer({
    cert: chainPem(o.chain), key: o.chain.leaf.keyPem, minVersion: o.version, maxVersion: o.version,
    ciphers: 'ECDHE-ECDSA-AES128-SHA256:TLS_AES_128_GCM_SHA256', ecdhCurve: 'prime256v1', ...o.tls,
  }, (s) => {
    s.on('error', () => undefined);
    s.on('data', (d) => s.write(d));
  });
  tls.on('secureConnection', () => side.secureConnections++);
  tls.on('tlsClientError', (err) => side.clientErrors.push(err.message));
  tls.on('keylog', (line) => side.keylog.push(line.toString('utf8').trim()));
  const tlsPort = await listen(tls);
  const ended: Promise<void>[] = [];
  const proxy = createTcpServer((ev: Socket) => {
    const records: TlsRecord[] = [];
    side.fromEv.push(records);
    const splitter = new RecordSplitter();
    const upstream = tcpConnect({ host: '127.0.0.1', port: tlsPort });
    ended.push(new Promise<void>((r) => { ev.once('end', r); ev.once('close', () => r()); }));
    ev.on('data', (chunk: Buffer) => {
      const got = splitter.push(new Uint8Array(chunk));
      records.push(...got);
      if (o.closeAfterEvFlight && got.some((rec) => rec.type === RECORD_APPLICATION_DATA)) {
        upstream.destroy();
        ev.end();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => ev.writable && ev.write(chunk));
    ev.on('end', () => upstream.end());
    upstream.on('end', () => ev.end());
    ev.on('error', () => upstream.destroy());
    upstream.on('error', () => ev.destroy());
  });
  side.port = await listen(proxy);
  side.evEnded = (i) => ended[i] ?? Promise.reject(new Error(`no connection ${i}`));
  return side;
}

const to = (side: ServerSide, version: Version, extra: Partial<ConnectTlsOptions> = {}): ConnectTlsOptions => ({
  secc: { address: '127.0.0.1', port: side.port }, profile: profileOf(version), vehicle: vehicle(), ...extra,
});

/** The alert(s) a server-side OpenSSL reported, by number. */
const alertsSeen = (side: ServerSide): number[] => side.clientErrors.flatMap((m) => [...m.matchAll(/SSL alert number (\d+)/g)].map((x) => Number(x[1])));

/** Decrypts one TLS 1.3 record the EV sent under `secret` (hex, from the server's key log) at sequence `seq`. */
function openTls13(record: TlsRecord, suite: string, secretHex: string, seq: number): { type: number; content: number[] } {
  const { cipher, key, iv } = trafficKeys(suite, new Uint8Array(Buffer.from(secretHex, 'hex')));
  const body = record.fragment;
  const d = createDecipheriv(cipher as 'aes-128-gcm', key, recordNonce(iv, seq), { authTagLength: 16 });
  d.setAAD(record.bytes.subarray(0, 5));
  d.setAuthTag(body.subarray(body.length - 16));
  const inner = Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]);
  return { type: inner[inner.length - 1]!, content: [...inner.subarray(0, inner.length - 1)] };
}
const secretOf = (side: ServerSide, label: string): string => side.keylog.find((l) => l.startsWith(`${label} `))!.split(' ')[2]!;

describe('TLS alerts the EV sends (Node TLS server, recording proxy)', () => {
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`${version}: a chain ending in an unknown root is refused with unknown_ca before our Finished; TLS_UNKNOWN_ROOT keeps its details`, async () => {
      const side = await serverSide({ version, chain: chainOf(pki.b), tls: version === 'TLSv1.3' ? { requestCert: true, rejectUnauthorized: false } : {} });
      const err = await outcome(connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, to(side, version)));
      expect(err).toBeInstanceOf(UnknownRootError);
      const u = err as UnknownRootError;
      expect(u.code).toBe('TLS_UNKNOWN_ROOT');
      expect(u.issuerDn).toBe(pki.b.root.cert.subject);
      expect(u.authorityKeyId).toBe(parseCert(pki.b.root.der).subjectKeyId);
      expect(u.presentedChain).toHaveLength(3);
      await side.evEnded(0);
      await until(() => side.clientErrors.length > 0, 5_000, 'the server-side TLS error');
      expect(alertsSeen(side)).toEqual([48]);
      expect(side.secureConnections).toBe(0);
      const sent = side.fromEv[0]!;
      if (version === 'TLSv1.2') {
        // ClientHello, then the alert in clear: no ClientKeyExchange, no ChangeCipherSpec, no Finished.
        expect(sent.map((r) => r.type)).toEqual([RECORD_HANDSHAKE, RECORD_ALERT]);
        expect([...sent[1]!.fragment]).toEqual([2, 48]);
      } else {
        // ClientHello, compatibility ChangeCipherSpec, then ONE encrypted record: the alert, under the client
        // handshake traffic secret. Our Certificate/CertificateVerify/Finished never left: the SECC that failed
        // validation did not see the vehicle certificate.
        expect(sent.map((r) => r.type)).toEqual([RECORD_HANDSHAKE, RECORD_CHANGE_CIPHER_SPEC, RECORD_APPLICATION_DATA]);
        const alert = openTls13(sent[2]!, 'TLS_AES_128_GCM_SHA256', secretOf(side, 'CLIENT_HANDSHAKE_TRAFFIC_SECRET'), 0);
        expect(alert).toEqual({ type: RECORD_ALERT, content: [2, 48] });
      }
    });

    it(`${version}: other path failures are refused with the fitting alert, each with its own PKI code`, async () => {
      const cases: [ChainSpec, string, number][] = [
        [neg.expiredLeaf, 'PKI_CERT_EXPIRED', 45], // certificate_expired
        [neg.wrongKeyUsageLeaf, 'PKI_KEY_USAGE', 43], // unsupported_certificate
        [neg.throughNonCa, 'PKI_NOT_CA', 42], // bad_certificate
        [neg.selfSignedLeaf, 'PKI_SELF_SIGNED_LEAF', 42],
      ];
      for (const [chain, code, alert] of cases) {
        const side = await serverSide({ version, chain });
        expect(codeOf(await outcome(connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, to(side, version)))), chain.name).toBe(code);
        await side.evEnded(0);
        await until(() => side.clientErrors.length > 0, 5_000, 'the server-side TLS error');
        expect(alertsSeen(side), chain.name).toEqual([alert]);
        expect(side.secureConnections, chain.name).toBe(0);
      }
    });

    it(`${version}: close() sends close_notify before FIN`, async () => {
      const side = await serverSide({ version, chain: chainOf(pki.a), tls: version === 'TLSv1.3' ? { requestCert: true, rejectUnauthorized: true, ca: [pki.oem.root.pem] } : {} });
      const ch = await connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, to(side, version));
      await ch.stream.close();
      await side.evEnded(0);
      const sent = side.fromEv[0]!;
      const last = sent[sent.length - 1]!;
      if (version === 'TLSv1.2') {
        // After our ChangeCipherSpec every record is encrypted; the last one is of type alert (the only alert we
        // send on an established channel is close_notify).
        expect(sent.map((r) => r.type)).toContain(RECORD_CHANGE_CIPHER_SPEC);
        expect(last.type).toBe(RECORD_ALERT);
      } else {
        // The first record under the client application traffic secret.
        expect(openTls13(last, ch.cipher, secretOf(side, 'CLIENT_TRAFFIC_SECRET_0'), 0)).toEqual({ type: RECORD_ALERT, content: [1, 0] });
      }
    });
  }

  it('TLS 1.3: Node\'s TLS server refusing the vehicle certificate (it closes after our Finished, no alert) is TLS_CLIENT_CERT_REJECTED', async () => {
    // The SECC trusts V2G root A only, not the OEM root. Node judges client certificates after the handshake and
    // destroys the socket: the silent close the field charger showed. (An alerting SECC: the s_server suite below.)
    const side = await serverSide({ version: 'TLSv1.3', chain: chainOf(pki.a), tls: { requestCert: true, rejectUnauthorized: true, ca: [pki.a.root.pem] } });
    const err = await outcome(connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, to(side, 'TLSv1.3')));
    expect(codeOf(err)).toBe('TLS_CLIENT_CERT_REJECTED');
    expect((err as Error).message).toMatch(/vehicle certificate rejected by SECC/);
    // The server refused the connection (it never completed its side); with the OEM root as its CA it accepts
    // the same vehicle (the accepting test below).
    expect(side.secureConnections).toBe(0);
  });

  it('TLS 1.3: an SECC that closes right after our Finished without an alert is TLS_CLIENT_CERT_REJECTED', async () => {
    const side = await serverSide({ version: 'TLSv1.3', chain: chainOf(pki.a), tls: { requestCert: true, rejectUnauthorized: false }, closeAfterEvFlight: true });
    const err = await outcome(connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, to(side, 'TLSv1.3')));
    expect(codeOf(err)).toBe('TLS_CLIENT_CERT_REJECTED');
    expect((err as { details: Record<string, unknown> }).details.alert).toBeUndefined();
  });

  it('TLS 1.3: an SECC that accepts the vehicle certificate (sends its tickets) gives an established channel that carries data', async () => {
    const side = await serverSide({ version: 'TLSv1.3', chain: chainOf(pki.a), tls: { requestCert: true, rejectUnauthorized: true, ca: [pki.oem.root.pem] } });
    // Control for the two refusals above: the verdict wait does not turn an accepting SECC into a failure.
    const ch = await connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, to(side, 'TLSv1.3'));
    const echo = new Promise<Uint8Array>((r) => ch.stream.onData(r));
    await ch.stream.write(Uint8Array.from([1, 0xfe, 0x80, 0x01, 0, 0, 0, 0]));
    expect([...(await echo)]).toEqual([1, 0xfe, 0x80, 0x01, 0, 0, 0, 0]);
    await ch.stream.close();
    expect(side.secureConnections).toBe(1);
  });

  it('TLS 1.3: after a HelloRetryRequest (SECC wants P-384) the second ClientHello passes the guard and the channel comes up', async () => {
    const side = await serverSide({ version: 'TLSv1.3', chain: chainOf(pki.a), tls: { ecdhCurve: 'secp384r1', requestCert: true, rejectUnauthorized: true, ca: [pki.oem.root.pem] } });
    const ch = await connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, to(side, 'TLSv1.3'));
    await ch.stream.close();
    expect(side.fromEv[0]!.filter((r) => r.type === RECORD_HANDSHAKE).map((r) => r.fragment[0])).toEqual([1, 1]);
    expect(side.secureConnections).toBe(1);
  });

  it('TLS 1.2: an SECC that demands a client certificate is TLS_CLIENT_CERT_REQUESTED; one that only asks is accepted and flagged', async () => {
    const demands = await serverSide({ version: 'TLSv1.2', chain: chainOf(pki.a), tls: { requestCert: true, rejectUnauthorized: true, ca: [pki.oem.root.pem] } });
    const err = await outcome(connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, to(demands, 'TLSv1.2')));
    expect(codeOf(err)).toBe('TLS_CLIENT_CERT_REQUESTED');
    expect((err as Error).message).toMatch(/requested a client certificate/);

    const asks = await serverSide({ version: 'TLSv1.2', chain: chainOf(pki.a), tls: { requestCert: true, rejectUnauthorized: false } });
    let requested: boolean | undefined;
    const session = await connector.connect({
      host: '127.0.0.1', port: asks.port, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256',
      ecdhCurve: 'prime256v1', sigalgs: 'ECDSA+SHA256', timeoutMs: 5000,
      verifyPeer: (peer) => { requested = peer.clientCertificateRequested; },
    });
    await session.stream.close();
    expect(requested).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// openssl s_server -msg: an independent TLS stack's view of what arrived.

interface SServer {
  port: number;
  /** Everything s_server printed so far. */
  out(): string;
  exited: Promise<void>;
}

let dir: string;

async function sServer(args: string[]): Promise<SServer> {
  dir ??= await mkdtemp(join(tmpdir(), 'evcc-tls-alerts-'));
  let text = '';
  const child: ChildProcess = spawn('openssl', ['s_server', '-accept', '127.0.0.1:0', '-msg', '-naccept', '1', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  closers.push(() => void child.kill());
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      text += d.toString();
      const m = /ACCEPT \S+:(\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`s_server exited ${code}: ${text}`)));
  });
  return { port, out: () => text, exited };
}

async function files(name: string, chain: ChainSpec): Promise<string[]> {
  dir ??= await mkdtemp(join(tmpdir(), 'evcc-tls-alerts-'));
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  const sub = join(dir, `${name}-chain.pem`);
  await writeFile(cert, chain.leaf.pem);
  await writeFile(key, chain.leaf.keyPem);
  await writeFile(sub, chain.intermediates.map((c) => c.pem).join(''));
  return ['-cert', cert, '-key', key, '-cert_chain', sub];
}
async function caFile(name: string, pem: string): Promise<string> {
  const f = join(dir, `${name}-ca.pem`);
  await writeFile(f, pem);
  return f;
}

describeWith([tool('openssl')])('TLS alerts as openssl s_server sees them', () => {
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const tls12 = ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA256'];
  const tls13 = ['-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256'];
  const connect = (s: SServer, version: Version, extra: Partial<ConnectTlsOptions> = {}) =>
    outcome(connectTls({ connector, trust: onlyRootA(), log: silentLogger() }, { secc: { address: '127.0.0.1', port: s.port }, profile: profileOf(version), vehicle: vehicle(), ...extra }));

  it('unknown root and an expired leaf: fatal unknown_ca / certificate_expired arrive before any ClientKeyExchange or Finished of ours', async () => {
    for (const [version, args] of [['TLSv1.2', tls12], ['TLSv1.3', tls13]] as const) {
      const b = await sServer([...args, ...(await files('b', chainOf(pki.b)))]);
      expect(codeOf(await connect(b, version)), version).toBe('TLS_UNKNOWN_ROOT');
      await b.exited;
      expect(b.out(), version).toMatch(/<<< TLS 1\.[23], Alert \[length 0002\], fatal unknown_ca/);
      expect(b.out(), version).not.toMatch(/<<< .*(ClientKeyExchange|Finished|Certificate\b)/);

      const expired = await sServer([...args, ...(await files('expired', neg.expiredLeaf))]);
      expect(codeOf(await connect(expired, version)), version).toBe('PKI_CERT_EXPIRED');
      await expired.exited;
      expect(expired.out(), version).toMatch(/<<< TLS 1\.[23], Alert \[length 0002\], fatal certificate_expired/);
    }
  });

  it('TLS 1.2 and TLS 1.3 (SECC without session tickets): an orderly close sends close_notify', async () => {
    const s12 = await sServer([...tls12, ...(await files('a', chainOf(pki.a)))]);
    expect(codeOf(await connect(s12, 'TLSv1.2'))).toBe('OK');
    await s12.exited;
    expect(s12.out()).toMatch(/<<< TLS 1\.2, Alert \[length 0002\], warning close_notify/);

    // No NewSessionTicket: the verdict wait runs out and the channel is declared up; the SECC accepted the vehicle.
    const oem = await caFile('oem', pki.oem.root.pem);
    const s13 = await sServer([...tls13, '-num_tickets', '0', '-Verify', '2', '-verify_return_error', '-CAfile', oem, ...(await files('a', chainOf(pki.a)))]);
    expect(codeOf(await connect(s13, 'TLSv1.3', { clientAuthVerdictMs: 50 }))).toBe('OK');
    await s13.exited;
    expect(s13.out()).toMatch(/<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], Certificate/);
    expect(s13.out()).toMatch(/<<< TLS 1\.3, Alert \[length 0002\], warning close_notify/);
  });

  it('TLS 1.3: s_server refusing the vehicle certificate gives TLS_CLIENT_CERT_REJECTED; TLS 1.2 s_server demanding one gives TLS_CLIENT_CERT_REQUESTED', async () => {
    const rootA = await caFile('root-a', pki.a.root.pem);
    const s13 = await sServer([...tls13, '-Verify', '2', '-verify_return_error', '-CAfile', rootA, ...(await files('a', chainOf(pki.a)))]);
    const rejected = await connect(s13, 'TLSv1.3');
    expect(codeOf(rejected)).toBe('TLS_CLIENT_CERT_REJECTED');
    expect((rejected as { details: Record<string, unknown> }).details).toMatchObject({ alert: 48, alertName: 'unknown_ca' });
    await s13.exited;
    expect(s13.out()).toMatch(/>>> TLS 1\.3, Alert \[length 0002\], fatal unknown_ca/);

    const s12 = await sServer([...tls12, '-Verify', '2', '-verify_return_error', '-CAfile', rootA, ...(await files('a', chainOf(pki.a)))]);
    expect(codeOf(await connect(s12, 'TLSv1.2'))).toBe('TLS_CLIENT_CERT_REQUESTED');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// evcc tls-probe: the typed failure on stdout, `evcc: CODE: message` on stderr, exit 1, no stack trace.

describe('evcc tls-probe reports the typed failure', () => {
  const run = promisify(execFile);
  const probe = async (port: number, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const r = await run(process.execPath, ['--import', 'tsx', join(process.cwd(), 'bin/evcc.ts'), '--log-level', 'warn', 'tls-probe',
        '--iface', 'lo', '--address', '127.0.0.1', '--port', String(port), ...args], { timeout: 60_000 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  it('unknown root (TLS 1.2) and a refused vehicle certificate (TLS 1.3)', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-tls-probe-'));
    closers.push(() => rm(d, { recursive: true, force: true }));
    const rootA = join(d, 'root-a.pem');
    const vehicleCert = join(d, 'vehicle.pem');
    const vehicleKey = join(d, 'vehicle.key');
    await writeFile(rootA, pki.a.root.pem);
    await writeFile(vehicleCert, vehicle().certChainPem);
    await writeFile(vehicleKey, vehicle().keyPem);

    const b = await serverSide({ version: 'TLSv1.2', chain: chainOf(pki.b) });
    const unknown = await probe(b.port, ['--root', rootA]);
    expect(unknown.code).toBe(1);
    expect(JSON.parse(unknown.stdout.trim())).toMatchObject({ code: 'TLS_UNKNOWN_ROOT', issuerDn: pki.b.root.cert.subject });
    expect(unknown.stderr).toMatch(/^evcc: TLS_UNKNOWN_ROOT: /m);
    expect(unknown.stderr).not.toMatch(/^\s+at /m);

    const refusing = await serverSide({ version: 'TLSv1.3', chain: chainOf(pki.a), tls: { requestCert: true, rejectUnauthorized: true, ca: [pki.a.root.pem] } });
    const rejected = await probe(refusing.port, ['--root', rootA, '--profile', 'iso20-tls13', '--vehicle-cert', vehicleCert, '--vehicle-key', vehicleKey]);
    expect(rejected.code).toBe(1);
    expect(JSON.parse(rejected.stdout.trim())).toMatchObject({ code: 'TLS_CLIENT_CERT_REJECTED' });
    expect(rejected.stderr).toMatch(/^evcc: TLS_CLIENT_CERT_REJECTED: vehicle certificate rejected by SECC/m);
    expect(rejected.stderr).not.toMatch(/^\s+at /m);
  }, 120_000);
});
