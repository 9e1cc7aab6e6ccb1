/**
 * The session engine's inputs (firmware/session/engine.ts SessionEngine, sans-I/O): whole sessions in virtual time
 * against the scripted chargers (ISO-2 DC/AC, EIM/PnC, DIN), where answers in any state are replaced by hostile ones
 * — random valid documents of the awaited type, messages of another type, mutated or truncated EXI, random bytes,
 * a foreign SessionID, another V2GTP payload type — and unsolicited payloads, early timers, unknown effect results,
 * stop requests and channel closes arrive between exchanges (during effects and pacing too).
 *
 * Complements firmware/session/hostile.test.ts (one hostile answer per attack point through the real driver and its
 * safety oracle) with volume: the engine directly, several hostile inputs per session.
 *
 * Crash: step() throws; the session ends with SESSION_INTERNAL from a non-typed throw inside a module; it ends with
 * a reason code that is not registered (core/error-codes.ts); it does not end (a hang: no result within the input
 * bound, or a stall: nothing pending and no deadline).
 *
 * JSON cases: the flow and the recorded injections (exchange number, what, bytes), replayed exactly.
 */
import { isRegisteredCode } from '../../../core/error-codes.ts';
import { EvccError } from '../../../core/errors.ts';
import { decodeAny, encodeAny, schema as compiledSchema } from '../../../firmware/exi/index.ts';
import { sign as xmldsigSign, type SignedElement } from '../../../firmware/exi/xmldsig/index.ts';
import { answerSupportedAppProtocolReq } from '../../../firmware/session/app-handshake.ts';
import { createDinModule, DIN_NAMESPACE } from '../../../firmware/session/din/module.ts';
import { DIN_OFFER, EVCC_ID as DIN_EVCC_ID, FakeEv as DinFakeEv, ScriptedDinSecc } from '../../../firmware/session/din/test-secc.ts';
import { SessionEngine, type SessionInput, type SessionOutput, type SessionResult } from '../../../firmware/session/engine.ts';
import type { EffectRequest, ProtocolModule } from '../../../firmware/session/exchange.ts';
import { randomOf } from '../../../firmware/session/hostile-support.ts';
import type { Iso2ModuleOptions } from '../../../firmware/session/iso2/context.ts';
import { createIso2Module } from '../../../firmware/session/iso2/module.ts';
import {
  FakeEv, GEN_CHALLENGE, ISO2_NAMESPACE, ISO2_OFFER, ScriptedSecc, softwareSigner, testCredentials, type ScriptedSeccOptions,
} from '../../../firmware/session/iso2/test-secc.ts';
import { FuzzOracleError, hex, int, mulberry32, mutateBytes, pick, randomBytes, unhex, type CaseFile, type Outcome, type Rng, type Target } from '../core.ts';

const EXI = 0x8001;
/** A session that has not ended after this many engine inputs is a hang. */
const MAX_INPUTS = 5_000;
const DAY_MS = 86_400_000;

type Body = Record<string, unknown>;

/** What happens at one exchange (the nth answer the charger gives, 0 = SupportedAppProtocolRes). */
export type Injection =
  | { exchange: number; what: 'replace'; payloadType: number; bytes: string; delayMs: number }
  | { exchange: number; what: 'extra'; payloadType: number; bytes: string; delayMs: number }
  | { exchange: number; what: 'drop' }
  | { exchange: number; what: 'input'; input: 'timer' | 'effectDone' | 'stop' | 'channelClosed' | 'abort'; delayMs: number };

export interface SessionCase {
  flow: string;
  /** Drawn injections come from this seed (generation mode). */
  seed: number;
  /** Recorded when run from a seed; replayed as they are when present. */
  injections?: Injection[];
}

interface Flow {
  name: string;
  schema: 'iso2' | 'din';
  engine(): { engine: SessionEngine; ev: { contactors(closed: boolean): void; loop(): void } };
  charger(): (bytes: Uint8Array, now: number) => { bytes: Uint8Array; rttMs: number } | 'silence' | 'close';
  appProtocols: { namespace: string; major: number; minor: number }[];
}

function iso2Flow(name: string, module: Iso2ModuleOptions, secc: ScriptedSeccOptions): Flow {
  return {
    name, schema: 'iso2', appProtocols: [{ namespace: ISO2_NAMESPACE, major: 2, minor: 0 }],
    engine: () => {
      const ev = new FakeEv();
      let loops = 0;
      ev.dynamic = () => ({ chargingComplete: loops >= 3 });
      const engine = new SessionEngine({ ev, offer: ISO2_OFFER, modules: { [ISO2_NAMESPACE]: () => createIso2Module(module) as ProtocolModule<unknown> } });
      return { engine, ev: { contactors: (c) => void (ev.base = { ...ev.base, contactorsClosed: c }), loop: () => void loops++ } };
    },
    charger: () => {
      const s = new ScriptedSecc(secc);
      return (bytes, at) => s.answer(bytes, at) ?? 'silence';
    },
  };
}

function dinFlow(): Flow {
  return {
    name: 'din-dc', schema: 'din', appProtocols: [{ namespace: DIN_NAMESPACE, major: 2, minor: 0 }],
    engine: () => {
      const ev = new DinFakeEv();
      let loops = 0;
      ev.dynamic = () => ({ chargingComplete: loops >= 3 });
      const engine = new SessionEngine({ ev, offer: DIN_OFFER, modules: { [DIN_NAMESPACE]: () => createDinModule({ evccId: DIN_EVCC_ID }) as unknown as ProtocolModule<unknown> } });
      return { engine, ev: { contactors: (c) => void (ev.base.contactorsClosed = c), loop: () => void loops++ } };
    },
    charger: () => {
      const s = new ScriptedDinSecc();
      return (bytes, at) => {
        const a = s.handle(bytes, at);
        return 'bytes' in a ? { bytes: a.bytes, rttMs: a.rttMs } : 'silent' in a ? 'silence' : 'close';
      };
    },
  };
}

const LOOP_REQUESTS = new Set(['CurrentDemandReq', 'ChargingStatusReq']);

function responseNames(id: 'iso2' | 'din'): string[] {
  return compiledSchema(id).doc.filter((d) => d.grammar && /Res$/.test(d.key)).map((d) => d.key);
}

/** A hostile replacement for the default answer `def` (EXI of `schema`) to request `sentName`. */
function hostileAnswer(rng: Rng, flow: Flow, sentName: string, def: Uint8Array | undefined, handshake: boolean): { payloadType: number; bytes: Uint8Array } {
  const expected = handshake ? 'supportedAppProtocolRes' : sentName.replace(/Req$/, 'Res');
  const schemaId = handshake ? 'appHandshake' : flow.schema;
  let header: Body = { SessionID: '0a0b0c0d0e0f1011' };
  if (def && !handshake) {
    try {
      header = ((decodeAny(flow.schema, def) as { V2G_Message?: { Header?: Body } }).V2G_Message?.Header ?? header);
    } catch {
      // keep the default header
    }
  }
  const wrap = (name: string, body: Body, hdr = header): Uint8Array =>
    handshake && name === expected ? encodeAny('appHandshake', { [name]: body }) : encodeAny(flow.schema, { V2G_Message: { Header: hdr, Body: { [name]: body } } });
  const payload = (make: () => Uint8Array): { payloadType: number; bytes: Uint8Array } => {
    try {
      return { payloadType: EXI, bytes: make() };
    } catch {
      // The grammar refused the drawn combination: random bytes instead.
      return { payloadType: EXI, bytes: randomBytes(rng, 64) };
    }
  };
  switch (int(rng, 9)) {
    case 0:
    case 1: { // a random valid document of the awaited type, ResponseCode OK half the time
      const fields = randomOf(schemaId, expected, int(rng, 2 ** 31)) ?? {};
      if (rng() < 0.5 && 'ResponseCode' in fields) fields.ResponseCode = handshake ? 'OK_SuccessfulNegotiation' : 'OK';
      return payload(() => wrap(expected, fields));
    }
    case 2: { // a valid message of another type
      const name = pick(rng, responseNames(flow.schema));
      const fields = randomOf(flow.schema, name, int(rng, 2 ** 31)) ?? {};
      if ('ResponseCode' in fields) fields.ResponseCode = 'OK';
      return payload(() => encodeAny(flow.schema, { V2G_Message: { Header: header, Body: { [name]: fields } } }));
    }
    case 3:
    case 4: // the default answer, mutated
      return { payloadType: EXI, bytes: def ? mutateBytes(rng, def) : randomBytes(rng, 64) };
    case 5: // truncated
      return { payloadType: EXI, bytes: def ? def.slice(0, int(rng, def.length)) : new Uint8Array(0) };
    case 6: // random bytes (mostly with an EXI header)
      return { payloadType: EXI, bytes: Uint8Array.from([0x80, ...randomBytes(rng, 120)]) };
    case 7: { // a foreign SessionID on the default answer
      if (!def || handshake) return { payloadType: EXI, bytes: randomBytes(rng, 32) };
      return payload(() => {
        const doc = decodeAny(flow.schema, def) as { V2G_Message: { Header: Body; Body: Body } };
        return encodeAny(flow.schema, { V2G_Message: { ...doc.V2G_Message, Header: { ...doc.V2G_Message.Header, SessionID: hex(randomBytes(rng, 8)) || '00' } } });
      });
    }
    default: // the default answer under another payload type
      return { payloadType: pick(rng, [0x9000, 0x9001, 0x8002, 0x0000, 0xffff]), bytes: def ?? new Uint8Array(0) };
  }
}

interface Queued {
  at: number;
  seq: number;
  input: SessionInput;
}

/** One whole session; records (or replays) the injections. Throws FuzzOracleError for a hang or a stall. */
function runSession(flow: Flow, c: SessionCase, signature: unknown): SessionResult {
  const replay = c.injections;
  const recorded: Injection[] = [];
  const rng = mulberry32(c.seed);
  // Generation: which exchanges are attacked (1–3 of the first ~30), and how.
  const attacked = new Map<number, Injection['what'] | 'input'>();
  if (!replay) for (let k = 1 + int(rng, 3); k > 0; k--) attacked.set(int(rng, 30), pick(rng, ['replace', 'replace', 'replace', 'extra', 'drop', 'input'] as const));
  const { engine, ev } = flow.engine();
  const charger = flow.charger();
  const queue: Queued[] = [];
  let seq = 0;
  const push = (at: number, input: SessionInput) => queue.push({ at, seq: seq++, input });
  let exchange = 0;
  let now = 0;
  let lastSent = '';
  let lastEffectId = 0;
  let handshakeDone = false;

  const inject = (j: Injection): boolean => {
    recorded.push(j);
    switch (j.what) {
      case 'replace':
      case 'extra':
        push(now + j.delayMs, { kind: 'payload', now: 0, payloadType: j.payloadType, bytes: unhex(j.bytes) });
        return j.what === 'replace';
      case 'drop':
        return true;
      case 'input': {
        const at = now + j.delayMs;
        const input: SessionInput = j.input === 'effectDone'
          ? { kind: 'effectDone', now: 0, id: lastEffectId + 1 + (j.delayMs % 3), error: new EvccError('SESSION_EFFECT_FAILED', 'fuzz: effect failed') }
          : j.input === 'channelClosed' ? { kind: 'channelClosed', now: 0, error: new Error('ECONNRESET') }
            : j.input === 'abort' ? { kind: 'abort', now: 0, reason: { code: 'ABORTED', message: 'fuzz: abort', failure: true } }
              : j.input === 'stop' ? { kind: 'stop', now: 0 } : { kind: 'timer', now: 0 };
        push(at, input);
        return false;
      }
    }
  };

  const answer = (bytes: Uint8Array) => {
    const handshake = !handshakeDone;
    handshakeDone = true;
    let def: { bytes: Uint8Array; rttMs: number } | 'silence' | 'close';
    if (handshake) def = { bytes: answerSupportedAppProtocolReq(bytes, flow.appProtocols), rttMs: 5 };
    else def = charger(bytes, now);
    const defBytes = typeof def === 'object' ? def.bytes : undefined;
    let replaced = false;
    const planned = replay ? replay.filter((j) => j.exchange === exchange) : [];
    const what = replay ? undefined : attacked.get(exchange);
    if (what) {
      const delayMs = pick(rng, [0, 1, 5, 40, 400, 3000]);
      if (what === 'replace' || what === 'extra') {
        const h = hostileAnswer(rng, flow, lastSent, defBytes, handshake);
        planned.push({ exchange, what, payloadType: h.payloadType, bytes: hex(h.bytes), delayMs });
      } else if (what === 'drop') planned.push({ exchange, what });
      else planned.push({ exchange, what: 'input', input: pick(rng, ['timer', 'effectDone', 'stop', 'channelClosed', 'abort'] as const), delayMs });
    }
    for (const j of planned) replaced = inject(j) || replaced;
    exchange++;
    if (replaced) return;
    if (def === 'close') push(now + 5, { kind: 'channelClosed', now: 0 });
    else if (def !== 'silence') push(now + def.rttMs, { kind: 'payload', now: 0, payloadType: EXI, bytes: def.bytes });
  };

  const take = (out: SessionOutput) => {
    for (const e of out.events) {
      if (e.type === 'sent') {
        lastSent = e.name;
        if (LOOP_REQUESTS.has(e.name)) ev.loop();
      }
    }
    if (out.send) answer(out.send.bytes);
    for (const e of out.effects) {
      lastEffectId = Math.max(lastEffectId, e.id);
      push(now + (e.request.kind === 'contactors' ? 50 : 0), { kind: 'effectDone', now: 0, id: e.id, ...effect(e.request, ev, signature) });
    }
  };

  try {
    return drive();
  } finally {
    if (!replay) c.injections = recorded;
  }

  function drive(): SessionResult {
  let out = engine.step({ kind: 'start', now });
  for (let inputs = 0; ; inputs++) {
    take(out);
    if (out.result) return out.result;
    if (inputs > MAX_INPUTS) throw new FuzzOracleError(`hang: no session result after ${MAX_INPUTS} inputs (state ${out.state})`);
    queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const q = queue[0];
    if (q && (out.deadline === undefined || q.at <= out.deadline)) {
      queue.shift();
      now = Math.max(now, q.at);
      out = engine.step({ ...q.input, now } as SessionInput);
    } else if (out.deadline !== undefined) {
      now = Math.max(now, out.deadline);
      out = engine.step({ kind: 'timer', now });
    } else {
      throw new FuzzOracleError(`stall: nothing pending and no deadline in state ${out.state}`);
    }
  }
  }
}

function effect(r: EffectRequest, ev: { contactors(closed: boolean): void }, signature: unknown): { result?: unknown } {
  switch (r.kind) {
    case 'sign':
      return { result: signature };
    case 'contactors':
      ev.contactors(r.closed);
      return {};
    case 'chargeRequest':
      return {};
    case 'installContract':
      return { result: { emaid: String((r.response.eMAID as { CONTENT?: unknown } | undefined)?.CONTENT), contractKeyId: 'contract-2' } };
  }
}

export async function session(): Promise<Target<SessionCase>> {
  const now = new Date();
  const cred = await testCredentials(now);
  // The scripted charger does not verify signatures: one real signature stands in for every `sign` effect.
  const signature = await xmldsigSign([{ AuthorizationReq: { Id: 'id1', GenChallenge: GEN_CHALLENGE } }] as SignedElement[], softwareSigner(cred.contractCert.keyPem));
  const roots = [{ X509IssuerName: 'CN=V2G Root CA A,O=EVCC Test PKI A,C=DE,DC=V2G', X509SerialNumber: 4_660n }];
  const pnc = { evccId: '02e7cc000001', channel: 'tls', pnc: true, wallClock: now, rootCertificateIds: roots } as const;
  const eim = { evccId: '02e7cc000001', channel: 'tcp', pnc: false } as const;
  const ac = { energyTransferModes: ['AC_three_phase_core' as const] };
  const flows: Flow[] = [
    iso2Flow('iso2-dc-eim', eim, {}),
    iso2Flow('iso2-ac-eim', { ...eim, settings: ac }, { modes: ['AC_single_phase_core', 'AC_three_phase_core'] }),
    iso2Flow('iso2-dc-pnc', { ...pnc, contract: { ...cred.contract, notAfter: new Date(now.getTime() + 5 * DAY_MS) } }, { certificateService: true, receiptRequired: true }),
    iso2Flow('iso2-ac-pnc-install', { ...pnc, provisioningCertificate: cred.provisioning.der, settings: ac }, { modes: ['AC_three_phase_core'], certificateService: true, receiptRequired: true }),
    dinFlow(),
  ];
  const byName = new Map(flows.map((f) => [f.name, f]));
  const run = (c: SessionCase): Outcome => {
    const flow = byName.get(c.flow);
    if (!flow) throw new Error(`unknown session flow ${c.flow}`);
    const r = runSession(flow, c, signature);
    const code = r.reason.code;
    if (code === 'SESSION_INTERNAL' && /^session engine: /.test(r.reason.message)) {
      throw new FuzzOracleError(`untyped throw inside the session: ${r.reason.message}`);
    }
    if (!isRegisteredCode(code)) throw new FuzzOracleError(`session ended with the unregistered code ${code}`);
    // Nothing injected: the scripted charger's session must complete (else the harness, not the engine, is broken).
    if (c.injections?.length === 0 && r.outcome !== 'completed') throw new FuzzOracleError(`clean ${c.flow} session ended ${r.outcome}: ${code} ${r.reason.message}`);
    return r.outcome === 'completed' ? 'ok' : 'rejected';
  };
  return {
    name: 'session',
    what: 'SessionEngine inputs in every state (firmware/session), ISO-2 DC/AC EIM/PnC and DIN flows',
    deterministicSeeds: false,
    // Clean sessions of every flow first (they must complete).
    seeds: () => flows.map((f) => ({ flow: f.name, seed: 0, injections: [] })),
    generate: (rng) => ({ flow: pick(rng, flows).name, seed: int(rng, 2 ** 31) }),
    run,
    toFile: (c): CaseFile => ({ ext: 'json', data: { flow: c.flow, seed: c.seed, ...(c.injections ? { injections: c.injections } : {}) } }),
    fromFile: (f) => f.data as SessionCase,
  };
}
