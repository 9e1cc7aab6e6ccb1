import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KeyUsageFlags } from '@peculiar/x509';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { approveRoot } from '../../deploy/oem-backend/approvals.ts';
import { otaFixture, recordingLogger, STORE_KEY, vehicleStore, type OtaFixture } from '../../test/integration/ota-fixtures.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { MemoryBroker } from '../../hal/mqtt/memory.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { silentLogger } from '../../core/logger.ts';
import { chainDer, issue } from '../pki/generate.ts';
import { UnknownRootError, validateChain, describeTop } from '../pki/validate.ts';
import { parseCert } from '../pki/cert.ts';
import { RootApprovalVerifier, type RootApproval } from '../pki/root-approval.ts';
import { CertificateStore, HmacIntegrity } from '../pki/store.ts';
import { EvccError, isEvccError } from '../../core/errors.ts';
import { vehicleTopics } from './constants.ts';
import { OtaError } from './errors.ts';
import { OtaLink } from './link.ts';
import { decodeMessage, encodeMessage, RootCaAnswer, RootCaRequest, RootListRequest } from './messages.ts';
import { rootStoreOf, validateSeccPath } from './pki-adapter.ts';
import { OemRootFetcher } from './root-fetch.ts';
import { RootSyncScheduler, syncRootList } from './root-sync.ts';
import { rootCaSigningInput, rootListDigest, rootListSigningInput, sha256Hex } from './signing.ts';
import { connectWithRootFetch, rootFetchBudget } from './unknown-root.ts';
import { openTlsWithRootFetch } from './tls-stage.ts';

/**
 * The root-CA fetch and its verification in virtual time over the in-memory MQTT transport: the real OEM backend
 * service (deploy/oem-backend) and the real firmware/pki store and validator; only the broker is simulated here
 * (test/integration/ota-*.test.ts run the same over mosquitto and real TLS).
 */
const VID = 'veh-unit-1';
let fx: OtaFixture;
/** A V2G root outside the pool (for crafted lists). */
let rootC: Uint8Array;

beforeAll(async () => {
  fx = await otaFixture();
  rootC = (await issue({ name: 'x/root-c', role: 'v2g-root', subject: 'CN=V2G Root C, O=Elsewhere' })).der;
});
afterAll(async () => fx.cleanup());

const flush = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

async function rig(options: { backend?: boolean; fleet?: Set<string> } = {}) {
  const bus = new MemoryBroker();
  const clock = new VirtualClock();
  const rec = recordingLogger('debug');
  const files = new MemoryStore();
  const store = await vehicleStore(files, [fx.pki.a.root.der]);
  const link = new OtaLink({ connector: bus, url: 'mem://', vehicleId: VID, protocolVersion: 4, clock, log: rec.sub('OTA') });
  let backend: OemBackend | undefined;
  if (options.backend !== false) {
    backend = new OemBackend({
      connector: bus, url: 'mem://', protocolVersion: 4, clientId: 'oem-backend', pool: fx.pool, signer: fx.signer, clock, log: silentLogger(),
      ...(options.fleet ? { fleet: options.fleet } : {}),
    });
    await backend.start();
  }
  const fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId: VID, trust: fx.trust, clock, log: rec.sub('OTA'), validatePath: validateSeccPath });
  const chainB = chainDer({ name: 'secc-b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' });
  const top = parseCert(chainB[chainB.length - 1]!);
  const presentedB = { issuer: top.issuer, aki: top.authorityKeyId!, chain: chainB };
  /** A TLS stand-in that validates the chain exactly as firmware/tls does (its real handshake is in the integration test). */
  let tlsAttempts = 0;
  const connectTls = async () => {
    tlsAttempts++;
    try {
      return validateChain(chainB, { anchors: store.anchors(), now: new Date(), purpose: 'secc-tls' });
    } catch (err) {
      if (isEvccError(err, 'PKI_UNKNOWN_ROOT')) throw new UnknownRootError('TLS_UNKNOWN_ROOT', describeTop(top, chainB));
      throw err;
    }
  };
  await flush();
  return { bus, clock, rec, files, store, link, backend, fetcher, presentedB, chainB, connectTls, attempts: () => tlsAttempts };
}

/** Runs a fetch while a promise settles in virtual time (advancing past the budget if nothing answers). */
async function settle<T>(clock: VirtualClock, p: Promise<T>, budgetMs: number): Promise<{ ok?: T; err?: OtaError }> {
  let out: { ok?: T; err?: OtaError } | undefined;
  p.then((ok) => (out = { ok }), (err: OtaError) => (out = { err }));
  await flush();
  if (!out) clock.advance(budgetMs + 1);
  await flush();
  if (!out) throw new Error('fetch did not settle');
  return out;
}

describe('Solution C in virtual time: TLS_UNKNOWN_ROOT → fetch → install → retry', () => {
  it('installs PKI-B\'s root from the backend and the retry validates; the bench log shows each step', async () => {
    const r = await rig();
    const result = await connectWithRootFetch({
      connectTls: r.connectTls, fetcher: r.fetcher, store: rootStoreOf(r.store), budgetMs: 8000, clock: r.clock,
      log: { tls: r.rec.sub('TLS'), ota: r.rec.sub('OTA') }, fallback: 'retry-later',
    });
    expect(result.states).toEqual(['ConnectTls', 'RootMissing', 'FetchRoot', 'InstallRoot', 'Retry', 'Established']);
    expect(result.installedRoot?.sha256).toBe(sha256Hex(fx.pki.b.root.der));
    expect(r.store.listRoots().map((e) => e.subject)).toEqual([fx.pki.a.root.cert.subject, fx.pki.b.root.cert.subject]);
    expect(r.store.listRoots()[1]!.source).toMatch(/^ota:[0-9a-f]{32}$/);
    expect(r.attempts()).toBe(2);
    const log = r.rec.lines.filter((l) => !l.includes('[DEBUG]')).map((l) => l.slice(13));
    expect(log).toContain(`[ERROR] TLS: connection failed: unknown root CA ${fx.pki.b.root.cert.subject}`);
    expect(log).toContain('[INFO] OTA: V2G root installed');
    expect(log[log.length - 1]).toBe('[INFO] TLS: connection established');
    expect(log.indexOf('[INFO] OTA: V2G root installed')).toBeLessThan(log.length - 1);
    // The persisted store survives a reopen with the new root.
    const reopened = await vehicleStore(r.files, []);
    expect(reopened.rootCount).toBe(2);
    await r.link.close();
  });

  it('the installed root keeps the OEM approval it arrived with: verified after a restart, and without the store key (degraded)', async () => {
    const r = await rig();
    await connectWithRootFetch({
      connectTls: r.connectTls, fetcher: r.fetcher, store: rootStoreOf(r.store), budgetMs: 8000, clock: r.clock,
      log: { tls: r.rec.sub('TLS'), ota: r.rec.sub('OTA') }, fallback: 'retry-later',
    });
    const b = r.store.listRoots().find((e) => e.subject === fx.pki.b.root.cert.subject)!;
    expect(b.approval).toMatchObject({ keyId: fx.signer.keyId, purpose: 'v2g-root', validUntil: fx.pki.b.root.cert.notAfter.toISOString() });
    const approvals = new RootApprovalVerifier([{ ...fx.trust, origin: 'release' }]);
    const restarted = await CertificateStore.open(r.files, { integrity: new HmacIntegrity(STORE_KEY), approvals });
    expect(restarted.listRoots().map((e) => [e.subject, e.approvedBy])).toEqual([[fx.pki.a.root.cert.subject, undefined], [fx.pki.b.root.cert.subject, 'release']]);
    // factory root A was installed without a statement here: a degraded vehicle trusts only B
    expect((await CertificateStore.openDegraded(r.files, { approvals })).anchors()).toEqual([fx.pki.b.root.der]);
    await r.link.close();
  });

  it('the retry happens once: a second unknown root ends the path with the TLS error, no second fetch', async () => {
    const r = await rig();
    let calls = 0;
    const alwaysUnknown = async () => {
      calls++;
      return r.connectTls().then(() => {
        throw new UnknownRootError('TLS_UNKNOWN_ROOT', describeTop(parseCert(r.chainB[2]!), r.chainB));
      });
    };
    const p = connectWithRootFetch({
      connectTls: alwaysUnknown, fetcher: r.fetcher, store: rootStoreOf(r.store), budgetMs: () => 8000, clock: r.clock,
      log: { tls: silentLogger(), ota: silentLogger() }, fallback: 'retry-later',
    });
    const { err } = await settle(r.clock, p, 8000);
    expect(err?.code).toBe('TLS_UNKNOWN_ROOT');
    expect(calls).toBe(2);
    expect(r.bus.log.filter((m) => m.topic.endsWith('/pki/rootca/req'))).toHaveLength(1);
    await r.link.close();
  });

  it('a known root needs no fetch: one TLS attempt, nothing requested', async () => {
    const r = await rig();
    await r.store.installRoot(fx.pki.b.root.der, { source: 'factory' });
    const result = await connectWithRootFetch({
      connectTls: r.connectTls, fetcher: r.fetcher, store: rootStoreOf(r.store), budgetMs: 8000, clock: r.clock,
      log: { tls: silentLogger(), ota: silentLogger() }, fallback: 'retry-later',
    });
    expect(result.states).toEqual(['ConnectTls', 'Established']);
    expect(r.bus.log.filter((m) => m.topic.endsWith('/pki/rootca/req'))).toHaveLength(0);
    await r.link.close();
  });

  it('backend silent: typed error at the budget, fallback as configured, no second TLS attempt, store unchanged', async () => {
    const r = await rig({ backend: false });
    const p = connectWithRootFetch({
      connectTls: r.connectTls, fetcher: r.fetcher, store: rootStoreOf(r.store), budgetMs: 3000, clock: r.clock,
      log: { tls: silentLogger(), ota: silentLogger() }, fallback: 'eim',
    });
    const { err } = await settle(r.clock, p, 3000);
    expect(err?.code).toBe('OTA_ROOT_UNAVAILABLE');
    expect(err?.details).toMatchObject({ causeCode: 'OTA_BACKEND_SILENT', fallback: 'eim' });
    expect(r.attempts()).toBe(1);
    expect(r.store.rootCount).toBe(1);
    expect(r.clock.pending).toBe(0);
    await r.link.close();
  });

  it('an orchestrator abort (setup window closed) ends the fetch with the orchestrator\'s own typed reason', async () => {
    const r = await rig({ backend: false });
    const ac = new AbortController();
    const p = connectWithRootFetch({
      connectTls: r.connectTls, fetcher: r.fetcher, store: rootStoreOf(r.store), budgetMs: 8000, clock: r.clock,
      log: { tls: silentLogger(), ota: silentLogger() }, fallback: 'retry-later', signal: ac.signal,
    });
    await flush();
    ac.abort(new EvccError('EVCC_SETUP_TIMEOUT', 'setup window closed'));
    const { err } = await settle(r.clock, p, 0);
    expect(err?.code).toBe('OTA_ROOT_UNAVAILABLE');
    expect(err?.details.causeCode).toBe('EVCC_SETUP_TIMEOUT');
    expect(r.clock.pending).toBe(0);
    await r.link.close();
  });

  it('broker down: OTA_BROKER_UNREACHABLE within the budget, nothing installed', async () => {
    const r = await rig();
    r.bus.online = false;
    const { err } = await settle(r.clock, r.fetcher.fetchRoot(r.presentedB, { budgetMs: 2000 }), 2000);
    expect(err?.code).toBe('OTA_BROKER_UNREACHABLE');
    expect(r.store.rootCount).toBe(1);
    // The link recovers: the next fetch works once the broker is back.
    r.bus.online = true;
    await flush();
    const { ok } = await settle(r.clock, r.fetcher.fetchRoot(r.presentedB, { budgetMs: 2000 }), 2000);
    expect(ok?.sha256).toBe(sha256Hex(fx.pki.b.root.der));
    await r.link.close();
  });

  it('a root the pool lacks: signed not-found, typed OTA_ROOT_NOT_FOUND', async () => {
    const r = await rig();
    const { err } = await settle(r.clock, r.fetcher.fetchRoot({ ...r.presentedB, issuer: 'CN=Nobody', aki: 'ab'.repeat(20) }, { budgetMs: 2000 }), 2000);
    expect(err?.code).toBe('OTA_ROOT_NOT_FOUND');
    await r.link.close();
  });

  it('a vehicle outside the fleet gets a signed denial', async () => {
    const r = await rig({ fleet: new Set(['someone-else']) });
    const { err } = await settle(r.clock, r.fetcher.fetchRoot(r.presentedB, { budgetMs: 2000 }), 2000);
    expect(err?.code).toBe('OTA_REQUEST_DENIED');
    expect(r.backend!.stats.answered.denied).toBe(1);
    await r.link.close();
  });

  it('no OEM backend key installed at production: fails closed before asking', async () => {
    const r = await rig();
    const f = new OemRootFetcher({ rpc: r.link.rootCaRpc, vehicleId: VID, trust: undefined, clock: r.clock, log: silentLogger() });
    await expect(f.fetchRoot(r.presentedB, { budgetMs: 1000 })).rejects.toMatchObject({ code: 'OTA_BACKEND_KEY_MISSING' });
    await r.link.close();
  });

  it('the backend refuses a reply topic outside the requesting vehicle\'s prefix', async () => {
    const r = await rig();
    const req = { v: 1, type: 'rootca.req', requestId: 'a'.repeat(32), nonce: 'b'.repeat(64), issuer: r.presentedB.issuer, replyTo: vehicleTopics('victim').rootCaResponse };
    const spy = r.bus.connect({ url: 'mem://', clientId: 'attacker', protocolVersion: 4 });
    await spy.subscribe(['evcc/v1/victim/#'], 1);
    const got: string[] = [];
    spy.onMessage((m) => got.push(m.topic));
    await spy.publish(vehicleTopics(VID).rootCaRequest, encodeMessage(req), { qos: 1 });
    await flush();
    expect(got).toEqual([]);
    expect(r.backend!.stats.dropped).toBe(1);
    await r.link.close();
  });

  it('the backend drops a vehicle\'s request flood beyond its rate budget, other vehicles stay served', async () => {
    const r = await rig();
    const flood = r.bus.connect({ url: 'mem://', clientId: 'flooder', protocolVersion: 4 });
    const req = (i: number) => encodeMessage({ v: 1, type: 'rootca.req', requestId: i.toString(16).padStart(32, '0'), nonce: 'b'.repeat(64), issuer: r.presentedB.issuer, replyTo: vehicleTopics('flooder').rootCaResponse });
    for (let i = 0; i < 50; i++) await flood.publish(vehicleTopics('flooder').rootCaRequest, req(i), { qos: 1 });
    await flush();
    expect(r.backend!.stats.rateLimited).toBe(30);
    expect(r.backend!.stats.answered.ok).toBe(20);
    const { ok } = await settle(r.clock, r.fetcher.fetchRoot(r.presentedB, { budgetMs: 2000 }), 2000);
    expect(ok?.sha256).toBe(sha256Hex(fx.pki.b.root.der));
    await r.link.close();
  });

  it('as the orchestrator\'s TLS stage: budget from the setup deadline; no time left → typed fallback without asking', async () => {
    const r = await rig();
    const stage = (setupDeadline: number) => openTlsWithRootFetch({
      connect: () => r.connectTls(), fetcher: r.fetcher, store: rootStoreOf(r.store), clock: r.clock,
      log: { tls: silentLogger(), ota: silentLogger() }, settings: { reserveAfterFetchMs: 4500, rootFetchMaxMs: 8000, fallback: 'eim' },
    }, { signal: new AbortController().signal, setupDeadline });
    const late = await settle(r.clock, stage(r.clock.now() + 4000), 0);
    expect(late.err?.details).toMatchObject({ causeCode: 'OTA_BACKEND_SILENT', fallback: 'eim' });
    expect(r.bus.log.filter((m) => m.topic.endsWith('/pki/rootca/req'))).toHaveLength(0);
    const ok = await settle(r.clock, stage(r.clock.now() + 20_000), 8000);
    expect(ok.ok?.summary.installedRoot?.subject).toBe(fx.pki.b.root.cert.subject);
    await r.link.close();
  });

  it('rootFetchBudget draws from the setup timeout and never goes negative', () => {
    expect(rootFetchBudget(20_000, 2_000)).toBe(8_000);
    expect(rootFetchBudget(20_000, 10_000)).toBe(5_500);
    expect(rootFetchBudget(20_000, 19_000)).toBe(0);
    expect(rootFetchBudget(20_000, 0, { maxMs: 30_000, reserveAfterFetchMs: 1_000 })).toBe(19_000);
  });
});

describe('hostile answers are never installed, each with its own typed error', () => {
  type Craft = (req: { requestId: string; nonce: string }, prev: { requestId: string; nonce: string } | undefined) => Promise<Uint8Array> | Uint8Array;

  function signed(signer: KeyObjectSigner, f: { requestId: string; nonce: string; cert?: Uint8Array; keyId?: string; status?: 'ok'; approval?: RootApproval }): Uint8Array {
    const certDigest = f.cert ? sha256Hex(f.cert) : '';
    const sig = signer.sign(rootCaSigningInput({ vehicleId: VID, requestId: f.requestId, nonce: f.nonce, status: f.status ?? 'ok', certDigest }));
    return encodeMessage({
      v: 1, type: 'rootca.resp', requestId: f.requestId, nonce: f.nonce, status: f.status ?? 'ok',
      ...(f.cert ? { cert: Buffer.from(f.cert).toString('base64') } : {}), ...(f.approval ? { approval: f.approval } : {}),
      keyId: f.keyId ?? signer.keyId, sig: Buffer.from(sig).toString('base64'),
    });
  }

  /** A compromised/buggy backend on the broker: answers every request with `craft`. */
  async function hostileRig(craft: Craft) {
    const r = await rig({ backend: false });
    const evil = r.bus.connect({ url: 'mem://', clientId: 'oem-backend-evil', protocolVersion: 4 });
    await evil.subscribe(['evcc/v1/+/pki/rootca/req'], 1);
    let prev: { requestId: string; nonce: string } | undefined;
    const answers: Uint8Array[] = [];
    evil.onMessage(async (m) => {
      const req = decodeMessage(RootCaRequest, m.payload, 4096);
      const out = await craft(req, prev);
      answers.push(out);
      prev = { requestId: req.requestId, nonce: req.nonce };
      await evil.publish(req.replyTo, out, { qos: 1 });
    });
    await flush();
    return { ...r, answers };
  }

  const rootB = () => fx.pki.b.root.der;
  let imposterDer: Uint8Array;
  let noCrlDer: Uint8Array;
  beforeAll(async () => {
    // Same subject as root B, other key: the name matches, key identifier and signature do not.
    imposterDer = (await issue({ name: 'x/imposter', role: 'v2g-root', subject: fx.pki.b.root.cert.subject })).der;
    noCrlDer = (await issue({ name: 'x/noCrl', role: 'v2g-root', subject: 'CN=No CRL Root', keyUsage: KeyUsageFlags.keyCertSign })).der;
  });
  // `refused`: a failure anybody on the reply topic can cause (no backend key needed) — the fetch waits on for a
  // valid answer and, none coming, ends OTA_BACKEND_SILENT naming the refused answers (issue #13 item 6).
  const cases: { name: string; code: string; craft: Craft; dropped?: boolean; refused?: boolean }[] = [
    {
      name: 'forged signature (certificate swapped after signing)', code: 'OTA_ANSWER_SIGNATURE_INVALID', refused: true,
      craft: (q) => {
        const a = JSON.parse(new TextDecoder().decode(signed(fx.signer, { ...q, cert: rootB() }))) as Record<string, unknown>;
        a.cert = Buffer.from(fx.pki.a.root.der).toString('base64');
        return encodeMessage(a);
      },
    },
    {
      name: 'signature by another key claiming the backend key id', code: 'OTA_ANSWER_SIGNATURE_INVALID', refused: true,
      craft: (q) => signed(fx.otherSigner, { ...q, cert: rootB(), keyId: fx.signer.keyId }),
    },
    { name: 'signature by another key (its own key id)', code: 'OTA_ANSWER_UNTRUSTED_SIGNER', refused: true, craft: (q) => signed(fx.otherSigner, { ...q, cert: rootB() }) },
    {
      name: 'replayed answer (old nonce, current request id)', code: 'OTA_ANSWER_REPLAYED', refused: true,
      craft: (q) => signed(fx.signer, { requestId: q.requestId, nonce: 'c'.repeat(64), cert: rootB() }),
    },
    {
      name: 'answer for another request id', code: 'OTA_ANSWER_UNKNOWN_REQUEST', dropped: true,
      craft: (q) => signed(fx.signer, { requestId: 'd'.repeat(32), nonce: q.nonce, cert: rootB() }),
    },
    { name: 'non-CA certificate', code: 'OTA_ROOT_NOT_CA', craft: (q) => signed(fx.signer, { ...q, cert: fx.pki.b.seccLeaf.der }) },
    { name: 'CA certificate that is not self-signed', code: 'OTA_ROOT_NOT_SELF_SIGNED', craft: (q) => signed(fx.signer, { ...q, cert: fx.pki.b.cpoSub1.der }) },
    {
      name: 'valid V2G root that does not anchor the SECC chain', code: 'OTA_ROOT_DOES_NOT_ANCHOR',
      craft: (q) => signed(fx.signer, { ...q, cert: imposterDer }),
    },
    { name: 'root with a profile violation (no cRLSign)', code: 'OTA_ROOT_PROFILE', craft: (q) => signed(fx.signer, { ...q, cert: noCrlDer }) },
    {
      name: 'signed answer whose OEM approval is by another key', code: 'OTA_ANSWER_UNTRUSTED_SIGNER', refused: true,
      craft: (q) => signed(fx.signer, { ...q, cert: rootB(), approval: approveRoot(fx.otherSigner, rootB()) }),
    },
    {
      name: 'signed answer carrying the OEM approval of another root', code: 'OTA_ANSWER_SIGNATURE_INVALID', refused: true,
      craft: (q) => signed(fx.signer, { ...q, cert: rootB(), approval: approveRoot(fx.signer, fx.pki.a.root.der) }),
    },
    {
      name: 'oversized payload', code: 'OTA_ANSWER_OVERSIZED', dropped: true,
      craft: (q) => encodeMessage({ requestId: q.requestId, pad: 'x'.repeat(20_000) }),
    },
    { name: 'malformed payload (schema)', code: 'OTA_ANSWER_MALFORMED', refused: true, craft: (q) => encodeMessage({ requestId: q.requestId, status: 'ok', cert: 42 }) },
    { name: 'malformed payload (not JSON)', code: 'OTA_ANSWER_MALFORMED', dropped: true, craft: () => new Uint8Array([0xff, 0xfe, 0x7b, 0x00]) },
    {
      name: 'certificate bytes that are not X.509', code: 'OTA_ANSWER_MALFORMED',
      craft: (q) => signed(fx.signer, { ...q, cert: new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01]) }),
    },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.code}`, async () => {
      const r = await hostileRig(c.craft);
      const before = r.store.anchors().map((d) => sha256Hex(d));
      const { err } = await settle(r.clock, r.fetcher.fetchRoot(r.presentedB, { budgetMs: 2000 }), 2000);
      expect(err).toBeInstanceOf(OtaError);
      if (c.dropped) {
        // Not ours to act on: dropped with a typed rejection, the request then ends as a silent backend.
        expect(err!.code).toBe('OTA_BACKEND_SILENT');
        expect((err!.details.rejected as { code: string }[]).map((x) => x.code)).toContain(c.code);
      } else if (c.refused) {
        // Refused, not fatal: every copy the backend-impostor sent (one per republish) counted, none installed.
        expect(err!.code).toBe('OTA_BACKEND_SILENT');
        expect(err!.details.refusedAnswers).toBe(r.answers.length);
        expect(r.answers.length).toBeGreaterThanOrEqual(1);
        expect(err!.message).toContain(`${r.answers.length} answer${r.answers.length === 1 ? '' : 's'} refused: ${c.code}`);
        expect((err!.details.rejected as { code: string }[]).map((x) => x.code)).toContain(c.code);
      } else {
        expect(err!.code).toBe(c.code);
      }
      expect(r.store.anchors().map((d) => sha256Hex(d))).toEqual(before);
      await r.link.close();
    });
  }

  it('an answer replayed verbatim for a later request is dropped as OTA_ANSWER_REPLAYED', async () => {
    // First request answered honestly; the second gets the first answer again (old request id and nonce).
    let first: Uint8Array | undefined;
    const r = await hostileRig((q) => {
      if (!first) return (first = signed(fx.signer, { ...q, cert: rootB() }));
      return first;
    });
    const one = await settle(r.clock, r.fetcher.fetchRoot(r.presentedB, { budgetMs: 2000 }), 2000);
    expect(one.ok?.sha256).toBe(sha256Hex(rootB()));
    const two = await settle(r.clock, r.fetcher.fetchRoot(r.presentedB, { budgetMs: 2000 }), 2000);
    expect(two.err?.code).toBe('OTA_BACKEND_SILENT');
    expect((two.err!.details.rejected as { code: string }[]).map((x) => x.code)).toEqual(['OTA_ANSWER_REPLAYED']);
    await r.link.close();
  });

  it('forged answers first, then the valid one: the fetch waits past the forgeries and the root is installed (issue #13 item 6)', async () => {
    const forged = (q: { requestId: string; nonce: string }) => signed(fx.otherSigner, { ...q, cert: rootB(), keyId: fx.signer.keyId });
    const r = await rig({ backend: false });
    // The impostor answers at once, twice; the real backend (signing with the OEM backend key) only afterwards.
    const evil = r.bus.connect({ url: 'mem://', clientId: 'evil-2', protocolVersion: 4 });
    await evil.subscribe(['evcc/v1/+/pki/rootca/req'], 1);
    evil.onMessage(async (m) => {
      const q = decodeMessage(RootCaRequest, m.payload, 4096);
      await evil.publish(q.replyTo, forged(q), { qos: 1 });
      await evil.publish(q.replyTo, encodeMessage({ requestId: q.requestId, status: 'ok', cert: 42 }), { qos: 1 });
      await evil.publish(q.replyTo, signed(fx.signer, { ...q, cert: rootB() }), { qos: 1 });
    });
    await flush();
    const result = await connectWithRootFetch({
      connectTls: r.connectTls, fetcher: r.fetcher, store: rootStoreOf(r.store), budgetMs: 8000, clock: r.clock,
      log: { tls: r.rec.sub('TLS'), ota: r.rec.sub('OTA') }, fallback: 'retry-later',
    });
    expect(result.states).toEqual(['ConnectTls', 'RootMissing', 'FetchRoot', 'InstallRoot', 'Retry', 'Established']);
    expect(result.installedRoot?.sha256).toBe(sha256Hex(rootB()));
    expect(r.store.listRoots().map((e) => e.subject)).toContain(fx.pki.b.root.cert.subject);
    const refusedLines = r.rec.lines.filter((l) => l.includes('waiting on for a valid one'));
    expect(refusedLines.map((l) => /OTA_ANSWER_\w+/.exec(l)?.[0])).toEqual(['OTA_ANSWER_SIGNATURE_INVALID', 'OTA_ANSWER_MALFORMED']);
    await r.link.close();
  });

  it('a flood of forged answers is counted, logged a few lines only, and ends in a typed timeout naming the count', async () => {
    const r = await rig({ backend: false });
    const evil = r.bus.connect({ url: 'mem://', clientId: 'evil-3', protocolVersion: 4 });
    await evil.subscribe(['evcc/v1/+/pki/rootca/req'], 1);
    let sent = 0;
    evil.onMessage(async (m) => {
      const q = decodeMessage(RootCaRequest, m.payload, 4096);
      for (let i = 0; i < 50; i++, sent++) await evil.publish(q.replyTo, signed(fx.otherSigner, { ...q, cert: rootB() }), { qos: 1 });
    });
    await flush();
    const { err } = await settle(r.clock, r.fetcher.fetchRoot(r.presentedB, { budgetMs: 1000 }), 1000);
    expect(err?.code).toBe('OTA_BACKEND_SILENT');
    expect(err!.details.refusedAnswers).toBe(sent);
    expect(err!.message).toContain(`${sent} answers refused: OTA_ANSWER_UNTRUSTED_SIGNER`);
    expect((err!.details.rejected as unknown[]).length).toBeLessThanOrEqual(16);
    const refusedLines = r.rec.lines.filter((l) => l.includes('answer refused') || l.includes('further refused'));
    expect(refusedLines.length).toBeLessThanOrEqual(4);
    expect(refusedLines.at(-1)).toContain(`${sent - 3} further refused answer(s)`);
    expect(r.store.rootCount).toBe(1);
    await r.link.close();
  });
});

describe('root store bound', () => {
  it('when full, the oldest OTA-installed root gives way; factory roots never do; without OTA roots the install fails typed', async () => {
    const files = new MemoryStore();
    const store = await vehicleStore(files, [fx.pki.a.root.der], 3);
    const extra = await Promise.all([0, 1, 2].map((i) => issue({ name: `x/r${i}`, role: 'v2g-root', subject: `CN=Bound Root ${i}` })));
    const port = rootStoreOf(store);
    await port.install(extra[0]!.der, { source: 'ota:1' });
    await port.install(extra[1]!.der, { source: 'ota:2' });
    await port.install(extra[2]!.der, { source: 'ota:3' });
    expect(store.listRoots().map((r) => r.subject)).toEqual([fx.pki.a.root.cert.subject, 'CN=Bound Root 1', 'CN=Bound Root 2']);
    const strict = rootStoreOf(store, { evictOta: false });
    await expect(strict.install(fx.pki.b.root.der, { source: 'ota:4' })).rejects.toMatchObject({ code: 'PKI_STORE_FULL' });
    const factoryOnly = await vehicleStore(new MemoryStore(), [fx.pki.a.root.der], 1);
    await expect(rootStoreOf(factoryOnly).install(fx.pki.b.root.der, { source: 'ota:5' })).rejects.toMatchObject({ code: 'PKI_STORE_FULL' });
  });
});

describe('proactive root-list sync', () => {
  it('installs the pool\'s roots the vehicle lacks, verifies the signed list, is idempotent', async () => {
    const r = await rig();
    const opts = { rpc: r.link.rootListRpc, vehicleId: VID, trust: fx.trust, store: rootStoreOf(r.store), clock: r.clock, log: silentLogger(), budgetMs: 2000 };
    const first = await settle(r.clock, syncRootList(opts), 2000);
    expect(first.ok).toMatchObject({ installed: [fx.pki.b.root.cert.subject], alreadyPresent: 1, rejected: [] });
    const second = await settle(r.clock, syncRootList(opts), 2000);
    expect(second.ok).toMatchObject({ installed: [], alreadyPresent: 2 });
    expect(r.store.rootCount).toBe(2);
    await r.link.close();
  });

  it('stores each root\'s OEM approval and attaches it to a root installed without one', async () => {
    const r = await rig();
    const opts = { rpc: r.link.rootListRpc, vehicleId: VID, trust: fx.trust, store: rootStoreOf(r.store), clock: r.clock, log: silentLogger(), budgetMs: 2000 };
    expect((await settle(r.clock, syncRootList(opts), 2000)).ok).toMatchObject({ installed: [fx.pki.b.root.cert.subject], alreadyPresent: 1, rejected: [] });
    expect(r.store.listRoots().map((e) => e.approval?.keyId)).toEqual([fx.signer.keyId, fx.signer.keyId]);
    expect(r.store.listRoots()[0]!.source).toBe('factory'); // the factory root kept its provenance
    const approvals = new RootApprovalVerifier([{ ...fx.trust, origin: 'release' }]);
    expect((await CertificateStore.openDegraded(r.files, { approvals })).rootCount).toBe(2);
    await r.link.close();
  });

  it('a list whose approvals do not match its roots is refused as a whole; one bad approval refuses that root only', async () => {
    const r = await rig({ backend: false });
    const evil = r.bus.connect({ url: 'mem://', clientId: 'oem-backend-evil', protocolVersion: 4 });
    await evil.subscribe(['evcc/v1/+/pki/roots/req'], 1);
    let mode: 'count' | 'one-bad' = 'count';
    evil.onMessage(async (m) => {
      const req = decodeMessage(RootListRequest, m.payload, 4096);
      const certs = [fx.pki.b.root.der, rootC];
      const sig = fx.signer.sign(rootListSigningInput({ vehicleId: VID, requestId: req.requestId, nonce: req.nonce, status: 'ok', certDigest: rootListDigest(certs) }));
      const approvals = mode === 'count' ? [approveRoot(fx.signer, certs[0]!)] : [approveRoot(fx.signer, certs[0]!), approveRoot(fx.otherSigner, certs[1]!)];
      await evil.publish(req.replyTo, encodeMessage({
        v: 1, type: 'roots.resp', requestId: req.requestId, nonce: req.nonce, status: 'ok', certs: certs.map((c) => Buffer.from(c).toString('base64')),
        approvals, keyId: fx.signer.keyId, sig: Buffer.from(sig).toString('base64'),
      }), { qos: 1 });
    });
    await flush();
    const opts = { rpc: r.link.rootListRpc, vehicleId: VID, trust: fx.trust, store: rootStoreOf(r.store), clock: r.clock, log: silentLogger(), budgetMs: 2000 };
    expect((await settle(r.clock, syncRootList(opts), 2000)).err?.code).toBe('OTA_ANSWER_MALFORMED');
    expect(r.store.rootCount).toBe(1);
    mode = 'one-bad';
    const res = await settle(r.clock, syncRootList(opts), 2000);
    expect(res.ok).toMatchObject({ installed: [fx.pki.b.root.cert.subject], rejected: [{ code: 'OTA_ANSWER_UNTRUSTED_SIGNER' }] });
    expect(r.store.anchors().map((d) => sha256Hex(d))).toEqual([sha256Hex(fx.pki.a.root.der), sha256Hex(fx.pki.b.root.der)]);
    await r.link.close();
  });

  it('the scheduler syncs on connect, again after the interval, and after a reconnect', async () => {
    const r = await rig();
    const sched = new RootSyncScheduler({
      client: r.link.client, intervalMs: 60_000, rpc: r.link.rootListRpc, vehicleId: VID, trust: fx.trust, store: rootStoreOf(r.store),
      clock: r.clock, log: silentLogger(), budgetMs: 2000,
    });
    sched.start();
    await flush();
    expect(sched.runs).toBe(1);
    expect(sched.last?.result?.installed).toEqual([fx.pki.b.root.cert.subject]);
    r.clock.advance(60_000);
    await flush();
    expect(sched.runs).toBe(2);
    expect(sched.last?.result?.alreadyPresent).toBe(2);
    r.bus.online = false;
    await flush();
    r.clock.advance(60_000);
    await flush();
    expect(sched.runs).toBe(2); // offline: no sync attempt
    r.bus.online = true;
    await flush();
    expect(sched.runs).toBe(3);
    sched.stop();
    expect(r.clock.pending).toBe(0);
    await r.link.close();
  });

  it('a list signed by another key installs nothing', async () => {
    const r = await rig({ backend: false });
    const evil = new OemBackend({ connector: r.bus, url: 'mem://', protocolVersion: 4, clientId: 'oem-backend-evil', pool: fx.pool, signer: fx.otherSigner, clock: r.clock, log: silentLogger() });
    await evil.start();
    const opts = { rpc: r.link.rootListRpc, vehicleId: VID, trust: fx.trust, store: rootStoreOf(r.store), clock: r.clock, log: silentLogger(), budgetMs: 2000 };
    const res = await settle(r.clock, syncRootList(opts), 2000);
    expect(res.err?.code).toBe('OTA_ANSWER_UNTRUSTED_SIGNER');
    expect(r.store.rootCount).toBe(1);
    await r.link.close();
  });
});

describe('answer decoder on hostile bytes', () => {
  it('only ever throws typed OtaErrors (OVERSIZED or MALFORMED)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.json().map((j) => new TextEncoder().encode(j)), fc.anything().map((v) => new TextEncoder().encode(JSON.stringify(v) ?? ''))), (bytes) => {
        try {
          decodeMessage(RootCaAnswer, bytes, 200);
        } catch (err) {
          expect(err).toBeInstanceOf(OtaError);
          expect(['OTA_ANSWER_OVERSIZED', 'OTA_ANSWER_MALFORMED']).toContain((err as OtaError).code);
        }
      }),
      { numRuns: 500 },
    );
  });
});
