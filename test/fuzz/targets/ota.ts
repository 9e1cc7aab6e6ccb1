/**
 * OTA root-CA exchange (firmware/ota): the message decoders (both requests and both answers, peekRequestId) and the
 * vehicle's full answer verification — OemRootFetcher.verifyAnswer for `rootca.resp` (signature, request id, nonce,
 * root profile, anchoring, path validation, the OEM approval) and syncRootList for `roots.resp`.
 *
 * Seeds: answers as the OEM backend builds them (messages.ts encodeMessage, signing.ts, deploy/oem-backend
 * approveRoot), signed with a backend key derived from a fixed scalar (so a saved case verifies in any process).
 * Mutations: at the JSON level (fields dropped, retyped, lengthened; status, nonce, ids; the certificate's DER edited
 * and the answer RE-SIGNED, so the checks behind the signature see hostile certificates too), and at the byte level.
 * JSON cases: answer kind, payload, the SECC chain the answer must anchor, and the time.
 */
import { createECDH, createPrivateKey } from 'node:crypto';
import { silentLogger } from '../../../core/logger.ts';
import { KeyObjectSigner } from '../../../deploy/oem-backend/signer.ts';
import { approveRoot } from '../../../deploy/oem-backend/approvals.ts';
import { chainDer, chainsOf, generateTestPki } from '../../../firmware/pki/generate.ts';
import { parseCert } from '../../../firmware/pki/cert.ts';
import { ApprovedRootCaAnswer, ApprovedRootListAnswer } from '../../../firmware/ota/approved-answers.ts';
import { OTA_MAX_REQUEST_BYTES, OTA_MAX_ROOT_LIST_BYTES } from '../../../firmware/ota/constants.ts';
import { decodeMessage, encodeMessage, peekRequestId, RootCaRequest, RootListRequest } from '../../../firmware/ota/messages.ts';
import { validateSeccPath } from '../../../firmware/ota/pki-adapter.ts';
import { OemRootFetcher } from '../../../firmware/ota/root-fetch.ts';
import { syncRootList } from '../../../firmware/ota/root-sync.ts';
import type { MqttRpc } from '../../../firmware/ota/rpc.ts';
import { backendTrustFromPem, rootCaSigningInput, rootListDigest, rootListSigningInput, sha256Hex, type BackendTrust } from '../../../firmware/ota/signing.ts';
import type { Clock } from '../../../hal/clock/types.ts';
import { derLengthFields } from './pki.ts';
import {
  FuzzOracleError, hex, int, mutateBytes, pick, randomBytes, typed, typedAsync, unhex, type CaseFile, type Outcome, type Rng, type Target,
} from '../core.ts';

export interface OtaCase {
  kind: 'rootca' | 'roots';
  payload: Uint8Array;
  /** The SECC chain (leaf first) the root must anchor (rootca only). */
  chain: Uint8Array[];
  now: number;
}

const VEHICLE_ID = 'WMIV0000000000001';
const REQUEST_ID = '0123456789abcdef0123456789abcdef';
const NONCE = 'a5'.repeat(32);
const b64url = (b: Uint8Array) => Buffer.from(b).toString('base64url');

/** The OEM backend's answer key, derived from a fixed scalar (TEST key: the same in every process). */
function fuzzBackendSigner(): KeyObjectSigner {
  const d = Buffer.from('4f9c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7', 'hex');
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(d);
  const pub = ecdh.getPublicKey();
  const key = createPrivateKey({ key: { kty: 'EC', crv: 'P-256', d: b64url(d), x: b64url(pub.subarray(1, 33)), y: b64url(pub.subarray(33)) }, format: 'jwk' });
  return new KeyObjectSigner(key);
}

type Json = Record<string, unknown>;

function signRootCa(signer: KeyObjectSigner, a: Json): Json {
  const der = typeof a.cert === 'string' ? new Uint8Array(Buffer.from(a.cert, 'base64')) : undefined;
  const input = rootCaSigningInput({ vehicleId: VEHICLE_ID, requestId: String(a.requestId), nonce: String(a.nonce), status: a.status as never, certDigest: der ? sha256Hex(der) : '' });
  return { ...a, sig: Buffer.from(signer.sign(input)).toString('base64') };
}

function signRootList(signer: KeyObjectSigner, a: Json): Json {
  const ders = Array.isArray(a.certs) ? a.certs.map((c) => new Uint8Array(Buffer.from(String(c), 'base64'))) : [];
  const input = rootListSigningInput({ vehicleId: VEHICLE_ID, requestId: String(a.requestId), nonce: String(a.nonce), status: a.status as never, certDigest: rootListDigest(ders) });
  return { ...a, sig: Buffer.from(signer.sign(input)).toString('base64') };
}

const JUNK_VALUES: unknown[] = [null, 0, -1, 1e308, '', 'x'.repeat(9000), [], {}, true, '==', 'AAAA', 'zz', '0'.repeat(64), '\u0000', { cert: 'AA' }];

function mutateJson(rng: Rng, a: Json, pool: readonly Uint8Array[]): Json {
  const out: Json = structuredClone(a);
  const keys = Object.keys(out);
  switch (int(rng, 6)) {
    case 0:
      delete out[pick(rng, keys)];
      break;
    case 1:
      out[pick(rng, keys)] = pick(rng, JUNK_VALUES);
      break;
    case 2:
      out[pick(rng, ['status', 'nonce', 'requestId', 'keyId', 'type', 'v', 'extra'])] = pick(rng, ['ok', 'not-found', 'denied', NONCE.replace('a', 'b'), REQUEST_ID.replace('0', '1'), 'rootca.resp', 'roots.resp', 2, 'f'.repeat(64)]);
      break;
    case 3: { // the certificate (or one of the list) edited at the DER level
      const der = mutateBytes(rng, pick(rng, pool), { lengthFields: derLengthFields, others: pool });
      if ('certs' in out && Array.isArray(out.certs)) {
        const certs = [...(out.certs as string[])];
        certs[int(rng, certs.length + 1)] = Buffer.from(der).toString('base64');
        out.certs = certs;
      } else out.cert = Buffer.from(der).toString('base64');
      break;
    }
    case 4: // another certificate of the pool (a CA, a leaf, a cross-certificate)
      if ('certs' in out) out.certs = Array.from({ length: int(rng, 4) }, () => Buffer.from(pick(rng, pool)).toString('base64'));
      else out.cert = Buffer.from(pick(rng, pool)).toString('base64');
      break;
    default: { // the approval statement
      const ap = (('approval' in out ? out.approval : (out.approvals as Json[] | undefined)?.[0]) ?? {}) as Json;
      const bad = { ...ap, [pick(rng, ['keyId', 'purpose', 'validUntil', 'sig'])]: pick(rng, [...JUNK_VALUES, '2000-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z']) };
      if ('certs' in out) out.approvals = rng() < 0.5 ? [bad] : [];
      else out.approval = rng() < 0.3 ? undefined : bad;
      break;
    }
  }
  return out;
}

export async function ota(): Promise<Target<OtaCase>> {
  const now = Date.now();
  const signer = fuzzBackendSigner();
  const trust: BackendTrust = backendTrustFromPem(signer.publicKeyPem);
  const pki = await generateTestPki({ now: new Date(now) });
  const chains = chainsOf(pki);
  const seccA = chainDer(chains.find((c) => c.name === 'secc-a')!);
  const seccB = chainDer(chains.find((c) => c.name === 'secc-b')!);
  const pool = [pki.a.root.der, pki.b.root.der, pki.a.cpoSub1.der, pki.crossBbyA.der, pki.oem.root.der, pki.a.seccLeaf.der];

  const rootCa = (root: Uint8Array, status: string, approval: boolean): Json => signRootCa(signer, {
    v: 1, type: 'rootca.resp', requestId: REQUEST_ID, nonce: NONCE, status, keyId: signer.keyId, sig: '',
    ...(status === 'ok' ? { cert: Buffer.from(root).toString('base64') } : {}),
    ...(approval && status === 'ok' ? { approval: approveRoot(signer, root) } : {}),
  });
  const rootList = (roots: Uint8Array[], approvals: boolean): Json => signRootList(signer, {
    v: 1, type: 'roots.resp', requestId: REQUEST_ID, nonce: NONCE, status: 'ok', certs: roots.map((r) => Buffer.from(r).toString('base64')), keyId: signer.keyId, sig: '',
    ...(approvals ? { approvals: roots.map((r) => approveRoot(signer, r)) } : {}),
  });
  const answers: { kind: OtaCase['kind']; json: Json; chain: Uint8Array[] }[] = [
    { kind: 'rootca', json: rootCa(pki.b.root.der, 'ok', true), chain: seccB },
    { kind: 'rootca', json: rootCa(pki.a.root.der, 'ok', false), chain: seccA },
    { kind: 'rootca', json: rootCa(pki.a.root.der, 'not-found', false), chain: seccA },
    { kind: 'rootca', json: rootCa(pki.a.root.der, 'denied', false), chain: seccA },
    { kind: 'roots', json: rootList([pki.a.root.der, pki.b.root.der], true), chain: [] },
    { kind: 'roots', json: rootList([pki.b.root.der], false), chain: [] },
  ];
  const seeds: OtaCase[] = answers.map((a) => ({ kind: a.kind, payload: encodeMessage(a.json), chain: a.chain, now }));

  const log = silentLogger();
  const clock: Clock = { now: () => 0 } as unknown as Clock;
  const fetcherAt = (at: number) => new OemRootFetcher({ rpc: {} as MqttRpc, vehicleId: VEHICLE_ID, trust, clock, log, validatePath: validateSeccPath, wallTime: () => new Date(at) });
  /** An rpc whose one call is answered by `payload` (the root list's handler runs the answer checks). */
  const rpcAnswering = (payload: Uint8Array) => ({
    newRequestId: () => REQUEST_ID,
    newNonce: () => NONCE,
    call: (_topic: string, _req: unknown, handler: (p: Uint8Array) => Promise<unknown>) => handler(payload),
  }) as unknown as MqttRpc;
  const memoryStore = () => {
    const roots: Uint8Array[] = [pki.a.root.der];
    return { list: async () => [...roots], install: async (der: Uint8Array) => void roots.push(der) };
  };

  const run = async (c: OtaCase): Promise<Outcome> => {
    // Every decoder on every payload: a request decoder sees an answer, and the other way round.
    typed(() => decodeMessage(RootCaRequest, c.payload, OTA_MAX_REQUEST_BYTES));
    typed(() => decodeMessage(RootListRequest, c.payload, OTA_MAX_REQUEST_BYTES));
    typed(() => decodeMessage(ApprovedRootListAnswer, c.payload, OTA_MAX_ROOT_LIST_BYTES));
    typed(() => decodeMessage(ApprovedRootCaAnswer, c.payload));
    const id = peekRequestId(c.payload, OTA_MAX_ROOT_LIST_BYTES);
    if (id !== undefined && !/^[0-9a-f]{32}$/.test(id)) throw new FuzzOracleError(`peekRequestId returned ${id}`);
    if (c.kind === 'rootca') {
      let top: ReturnType<typeof parseCert> | undefined;
      try {
        top = c.chain.length ? parseCert(c.chain[c.chain.length - 1]!) : undefined;
      } catch {
        top = undefined;
      }
      const presented = { issuer: top?.issuer ?? 'CN=unknown', ...(top?.authorityKeyId ? { aki: top.authorityKeyId } : {}), chain: c.chain };
      return typedAsync(async () => {
        const v = await fetcherAt(c.now).verifyAnswer(c.payload, { requestId: REQUEST_ID, nonce: NONCE, presented, trust });
        // A verified root is what the answer carried.
        if (v.sha256 !== sha256Hex(v.der)) throw new FuzzOracleError('verified root: fingerprint does not match its DER');
      });
    }
    return typedAsync(async () => {
      const r = await syncRootList({ rpc: rpcAnswering(c.payload), vehicleId: VEHICLE_ID, trust, store: memoryStore(), clock, log, budgetMs: 1000, wallTime: () => new Date(c.now) });
      for (const rej of r.rejected) if (!rej.code || rej.code === 'INTERNAL') throw new FuzzOracleError(`a root was refused without a typed code: ${rej.message}`);
    });
  };

  return {
    name: 'ota',
    what: 'OTA messages and answer verification (firmware/ota: decodeMessage, verifyAnswer, syncRootList)',
    deterministicSeeds: false,
    seeds: () => seeds,
    generate: (rng, s) => {
      const base = pick(rng, answers);
      const r = rng();
      if (r < 0.6) {
        // JSON-level mutation, then (mostly) re-signed: the checks behind the signature get hostile content.
        let json = mutateJson(rng, base.json, pool);
        if (rng() < 0.5) json = mutateJson(rng, json, pool);
        if (rng() < 0.7) json = base.kind === 'rootca' ? signRootCa(signer, json) : signRootList(signer, json);
        const chain = rng() < 0.2 ? pick(rng, [seccA, seccB, [], [pick(rng, pool)]]) : base.chain;
        return { kind: base.kind, payload: encodeMessage(json), chain, now: now + pick(rng, [0, 0, 0, -400, 4000, 40_000]) * 86_400_000 };
      }
      const seed = pick(rng, s);
      if (r < 0.95) return { ...seed, payload: mutateBytes(rng, seed.payload, { others: s.map((x) => x.payload) }) };
      return { ...seed, payload: randomBytes(rng, 300) };
    },
    run,
    toFile: (c): CaseFile => ({ ext: 'json', data: { kind: c.kind, payload: hex(c.payload), chain: c.chain.map(hex), now: new Date(c.now).toISOString() } }),
    fromFile: (f) => {
      const d = f.data as { kind: OtaCase['kind']; payload: string; chain: string[]; now: string };
      return { kind: d.kind, payload: unhex(d.payload), chain: d.chain.map(unhex), now: Date.parse(d.now) };
    },
  };
}
