/**
 * TEST support: a hostile charger for any protocol module. A well-behaved charger (the module's scripted SECC)
 * answers every request, except one chosen request (the attack point: `CableCheckReq` #1), whose answer is replaced
 * by a hostile one: a random valid document of the awaited type, a valid message of another type, random bytes,
 * truncated EXI, a broken V2GTP frame (oversized, wrong version, wrong payload type, cut short), silence, or a
 * closed stream.
 *
 * The session runs through the real driver (runV2gSession: V2GTP channel, effects, the safe state at the end) on an
 * in-memory byte stream, in virtual time: the caller passes a steppable clock (hal/clock/virtual.ts), and the
 * runner advances it from deadline to deadline until the session settles, within a bound (virtual time and steps):
 * a session that does not settle is a hang and fails the test.
 *
 * Generic over the module: a `HostileTarget` names the schema, the offer, the module factory and the charger; the
 * oracle (hostile.test.ts) reads only what every module shares (request names, PowerDelivery start/stop, the EV's
 * limits).
 */
import { pino } from 'pino';
import { toHex } from '../../core/bytes.ts';
import type { Logger } from '../../core/logger.ts';
import type { Clock } from '../../hal/clock/types.ts';
import type { EvLimits, EvPort, EvseOutput, EvStatus } from '../../hal/ev/types.ts';
import type { ByteStream } from '../../hal/net/types.ts';
import { decodeAny, encodeAny, schema as compiledSchema, type ExiObject } from '../exi/index.ts';
import { encodeV2gtp, V2gtpReassembler } from '../v2gtp/codec.ts';
import { PayloadType } from '../v2gtp/constants.ts';
import { mulberry32, randomElement } from '../../test/integration/exi-random.ts';
import { answerSupportedAppProtocolReq, type OfferedProtocol } from './app-handshake.ts';
import { runV2gSession, type EffectHandlers } from './driver.ts';
import type { ModuleFactory, SessionResult } from './engine.ts';

type Body = Record<string, unknown>;
type V2gSchema = 'iso2' | 'din';

/** The SupportedAppProtocol exchange, attackable like any module step. */
export const APP_HANDSHAKE_REQUEST = 'supportedAppProtocolReq';
/** What the driver caps V2GTP payloads at (driver.ts SESSION_MAX_PAYLOAD). */
export const SESSION_PAYLOAD_CAP = 64 * 1024;
/** A session must settle within this much virtual time and this many clock steps (else: a hang). */
export const MAX_VIRTUAL_MS = 10 * 60_000;
export const MAX_STEPS = 10_000;

// ---- what a module brings -------------------------------------------------------------------------------------------

/** A well-behaved charger's answer to one request: EXI after a delay, silence, or a closed connection. */
export type ChargerAnswer = { bytes: Uint8Array; delayMs: number } | 'silence' | 'close';

export interface Charger {
  /** The answer to one request (EXI of the target's schema), received at `now`. */
  answer(request: Uint8Array, now: number): ChargerAnswer | Promise<ChargerAnswer>;
}

export interface HostileTarget {
  /** `ISO-2 DC PnC (CertificateUpdate, receipts)`. */
  label: string;
  schema: V2gSchema;
  /** Error-code prefix of the module (`ISO2`, `DIN`). */
  codePrefix: string;
  offer: readonly OfferedProtocol[];
  /** The engine's module factories by namespace (a fresh context per session). */
  modules: Readonly<Record<string, ModuleFactory>>;
  /** A fresh well-behaved charger per session. */
  charger(): Charger;
  /** SupportedAppProtocol: what the charger supports. */
  appProtocols: readonly { namespace: string; major: number; minor: number }[];
  ev: { limits: EvLimits; status: EvStatus };
  /**
   * The charge loops' requests (a hostile ServiceDiscoveryRes may turn a DC session into an AC one) and after how
   * many of them the vehicle is full: a charge loop ends when the vehicle is full, never by itself.
   */
  loop: { requests: readonly string[]; fullAfter: number };
  /** PowerDeliveryReq bodies: does this one start (or keep) the energy transfer, or stop it? */
  powerDelivery(body: Body): 'start' | 'stop';
  /** DC: contactors close only when the EVSE output is within this of the battery voltage (PreCharge). */
  preChargeToleranceV?: number;
  /** Effects besides contactors and S2 (sign, installContract). */
  effects?: Omit<EffectHandlers, 'contactors' | 'chargeRequest'>;
}

// ---- hostile answers ---------------------------------------------------------------------------------------------------

export type FrameFault =
  /** A header announcing more than the cap (and a few payload bytes). */
  | { fault: 'oversize'; length: number }
  /** Version / inverse version bytes other than 01 FE. */
  | { fault: 'version'; bytes: [number, number] }
  /** A payload type other than EXI (0x8001). */
  | { fault: 'payload-type'; payloadType: number }
  /** A frame announcing more bytes than follow (then nothing). */
  | { fault: 'short'; missing: number };

export type Hostile =
  /** (a) valid EXI of the awaited type, random field values: as generated, with ResponseCode OK, or the default answer with some fields replaced. */
  | { kind: 'random-fields'; seed: number; variant: 'raw' | 'ok' | 'mutate'; foreignSessionId?: string }
  /** (b) a valid message of another type. */
  | { kind: 'other-type'; seed: number; pick: number }
  /** (c) random bytes as the EXI payload. */
  | { kind: 'bytes'; bytes: Uint8Array }
  /** (d) the default answer cut short (`keep` in [0, 1): the share of its bytes kept). */
  | { kind: 'truncated'; keep: number }
  /** (e) a broken V2GTP frame. */
  | ({ kind: 'frame' } & FrameFault)
  /** (f) no answer. */
  | { kind: 'silence' }
  /** (g) the charger closes the connection (in order, or reset). */
  | { kind: 'close'; reset: boolean };

export interface AttackPoint {
  /** Request name (`CurrentDemandReq`, or APP_HANDSHAKE_REQUEST). */
  name: string;
  /** Which occurrence of it (1-based). */
  nth: number;
}

export const pointLabel = (p: AttackPoint): string => `${p.name}#${p.nth}`;

/** Decoded V2G message of the target's schema (or the handshake's). */
interface Doc {
  Header: Body;
  Body: Body;
}

const bodyName = (doc: Doc): string => Object.keys(doc.Body ?? {})[0] ?? '(empty body)';

function decodeV2g(schema: V2gSchema, bytes: Uint8Array): Doc {
  return (decodeAny(schema, bytes) as unknown as { V2G_Message: Doc }).V2G_Message;
}

function encodeV2g(schema: V2gSchema, header: Body, body: Body): Uint8Array {
  return encodeAny(schema, { V2G_Message: { Header: header, Body: body } });
}

/** A random valid instance of the global element `name` of `schema` (exi-random's grammar walk). */
export function randomOf(schemaId: V2gSchema | 'appHandshake', name: string, seed: number): ExiObject | undefined {
  const g = compiledSchema(schemaId).doc.find((d) => d.key === name)?.grammar;
  if (!g) throw new Error(`hostile: ${schemaId} has no element ${name}`);
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = randomElement(mulberry32(seed + attempt * 7_919), g, 10);
    if (v !== undefined && typeof v === 'object' && !Array.isArray(v)) return v as ExiObject;
  }
  return undefined;
}

/** Response element names of a schema (`…Res`), for wrong-type answers. */
function responseNames(schemaId: V2gSchema): string[] {
  return compiledSchema(schemaId).doc.filter((d) => d.grammar && /Re[sq]$/.test(d.key)).map((d) => d.key);
}

/** What the charger puts on the wire instead of the default answer. */
type Reply = { payload: Uint8Array } | { raw: Uint8Array } | 'silence' | 'close' | 'reset';

interface Default {
  bytes: Uint8Array;
  /** Decoded default answer (absent for the handshake). */
  doc?: Doc;
  delayMs: number;
}

function realize(h: Hostile, t: HostileTarget, point: AttackPoint, def: Default): { reply: Reply; describe: string } {
  const handshake = point.name === APP_HANDSHAKE_REQUEST;
  const expected = handshake ? 'supportedAppProtocolRes' : point.name.replace(/Req$/, 'Res');
  // The handshake has no V2G header to copy: a message of another type then carries a new session's.
  const header = def.doc?.Header ?? { SessionID: '0000000000000000' };
  const exi = (describe: string, make: () => Uint8Array): { reply: Reply; describe: string } => ({ reply: { payload: make() }, describe });
  switch (h.kind) {
    case 'random-fields': {
      const random = randomOf(handshake ? 'appHandshake' : t.schema, expected, h.seed) ?? {};
      let fields: ExiObject = random;
      if (h.variant !== 'raw' && 'ResponseCode' in random) fields = { ...random, ResponseCode: okCode(handshake) };
      if (h.variant === 'mutate' && def.doc) {
        // The default answer with some of its values, at any depth, replaced by random ones of the same type: a
        // plausible message with a few hostile fields (a limit, a status code, a SessionID-free field…).
        fields = { ...mutate((def.doc.Body[expected] ?? {}) as ExiObject, random, mulberry32(h.seed ^ 0x5bd1e995)), ResponseCode: okCode(false) };
      }
      const hdr = h.foreignSessionId ? { ...header, SessionID: h.foreignSessionId } : header;
      const encode = (f: ExiObject) => (handshake ? encodeAny('appHandshake', { [expected]: f }) : encodeV2g(t.schema, hdr, { [expected]: f }));
      let bytes: Uint8Array;
      try {
        bytes = encode(fields);
      } catch {
        // A field combination the grammar refuses (e.g. both members of a choice): the generated document alone.
        fields = random;
        bytes = encode(fields);
      }
      return { reply: { payload: bytes }, describe: `${expected} ${JSON.stringify(fields, jsonBig)}${h.foreignSessionId ? ` SessionID ${h.foreignSessionId}` : ''}` };
    }
    case 'other-type': {
      const names = responseNames(t.schema).filter((n) => n !== expected);
      const name = names[h.pick % names.length]!;
      const fields = randomOf(t.schema, name, h.seed) ?? {};
      if ('ResponseCode' in fields) fields.ResponseCode = okCode(false);
      return exi(`${name} instead of ${expected}`, () => encodeV2g(t.schema, header, { [name]: fields }));
    }
    case 'bytes':
      return exi(`bytes ${toHex(h.bytes)}`, () => h.bytes);
    case 'truncated': {
      const keep = Math.floor(h.keep * def.bytes.length);
      return exi(`${expected} cut to ${keep} of ${def.bytes.length} bytes`, () => def.bytes.slice(0, keep));
    }
    case 'frame': {
      const frame = encodeV2gtp(PayloadType.EXI, def.bytes);
      const view = new DataView(frame.buffer);
      switch (h.fault) {
        case 'oversize':
          view.setUint32(4, h.length);
          return { reply: { raw: frame.slice(0, Math.min(frame.length, 64)) }, describe: `V2GTP header announcing ${h.length} bytes` };
        case 'version':
          frame[0] = h.bytes[0];
          frame[1] = h.bytes[1];
          return { reply: { raw: frame }, describe: `V2GTP version bytes ${toHex(Uint8Array.from(h.bytes))}` };
        case 'payload-type':
          view.setUint16(2, h.payloadType);
          return { reply: { raw: frame }, describe: `V2GTP payload type 0x${h.payloadType.toString(16)}` };
        case 'short':
          view.setUint32(4, def.bytes.length + h.missing);
          return { reply: { raw: frame }, describe: `V2GTP frame ${h.missing} byte(s) short` };
      }
      break;
    }
    case 'silence':
      return { reply: 'silence', describe: 'silence' };
    case 'close':
      return { reply: h.reset ? 'reset' : 'close', describe: h.reset ? 'connection reset' : 'connection closed' };
  }
  throw new Error('unreachable');
}

/** `base` with each value replaced by `random`'s (same key, so the same type) with probability 1/3, recursively. */
function mutate(base: ExiObject, random: ExiObject, rng: () => number): ExiObject {
  const out: ExiObject = { ...base };
  for (const [k, r] of Object.entries(random)) {
    const d = base[k];
    const both = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (both(d) && both(r)) out[k] = mutate(d as ExiObject, r as ExiObject, rng);
    else if (d === undefined ? rng() < 0.15 : rng() < 1 / 3) out[k] = r;
  }
  return out;
}

const okCode = (handshake: boolean): string => (handshake ? 'OK_SuccessfulNegotiation' : 'OK');
const jsonBig = (_k: string, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v);

// ---- the run -------------------------------------------------------------------------------------------------------

export interface SentRequest {
  /** Body element name (`CurrentDemandReq`, or APP_HANDSHAKE_REQUEST). */
  name: string;
  body: Body;
  at: number;
}

export interface HostileRun {
  result: SessionResult;
  /** Every request the charger received, in order. */
  requests: SentRequest[];
  /** Index in `requests` of the attacked one; -1: the attack point was never reached. */
  hostileIndex: number;
  /** What the hostile answer was (for failure messages). */
  hostileAnswer?: string;
  /**
   * Every `stopping in order` the session logged (the engine's, or a module's own: DIN keeps a normal end out of the
   * engine's stop until SessionStop), with how many requests the charger had received by then.
   */
  stopping: { code: string; afterRequests: number }[];
  /** Broken invariants seen on the way (a request above a limit, contactors closed across a voltage difference). */
  violations: string[];
  /** The vehicle at the end (after the driver's safe state). */
  end: { contactorsClosed: boolean; s2Closed: boolean };
  steps: number;
  virtualMs: number;
}

/** A clock the runner can drive (hal/clock/virtual.ts VirtualClock). */
export type SteppableClock = Clock & { step(): boolean };

/** The vehicle: limits, a status that turns full after `fullAfter` loop requests, contactors that take 50 ms. */
class HostileEv implements EvPort {
  readonly name = 'hostile-test-ev';
  loopRequests = 0;
  contactorsClosed = false;
  onContactors: ((closed: boolean) => void) | undefined;
  constructor(private readonly t: HostileTarget, private readonly clock: Clock) {}
  get limits(): EvLimits {
    return this.t.ev.limits;
  }
  status(): EvStatus {
    return { ...this.t.ev.status, contactorsClosed: this.contactorsClosed, chargingComplete: this.loopRequests >= this.t.loop.fullAfter };
  }
  reportEvseOutput(_o: EvseOutput): void {}
  async setContactors(closed: boolean): Promise<void> {
    this.onContactors?.(closed);
    await this.clock.sleep(50);
    this.contactorsClosed = closed;
  }
  beginSession(): void {}
  async close(): Promise<void> {}
}

/** The charger's side of an in-memory connection: what the EV writes arrives here; `deliver` writes towards the EV. */
function memoryStream(onFromEv: (bytes: Uint8Array) => void) {
  let toEv: ((chunk: Uint8Array) => void) | undefined;
  let closeListener: ((err?: Error) => void) | undefined;
  const early: Uint8Array[] = [];
  let closed = false;
  const end = (err?: Error) => {
    if (closed) return;
    closed = true;
    closeListener?.(err);
  };
  const stream: ByteStream = {
    write: async (data) => {
      if (closed) throw new Error('stream closed');
      onFromEv(data.slice());
    },
    onData: (l) => {
      toEv = l;
      for (const c of early.splice(0)) l(c);
    },
    onClose: (l) => {
      closeListener = l;
    },
    close: async () => end(),
    destroy: () => end(),
  };
  return {
    stream,
    deliver: (chunk: Uint8Array) => {
      if (closed) return;
      if (toEv) toEv(chunk);
      else early.push(chunk);
    },
    end,
    get closed() {
      return closed;
    },
  };
}

const si = (p: unknown): number | undefined => {
  const x = p as { Value?: unknown; Multiplier?: unknown } | undefined;
  return x && typeof x.Value === 'number' && typeof x.Multiplier === 'number' ? x.Value * 10 ** x.Multiplier : undefined;
};

/** A little above `bound`, for values the EV rounded down to a PhysicalValue (never up). */
const within = (v: number, bound: number) => v <= bound + Math.abs(bound) * 1e-9 + 1e-9;

/**
 * The charger's view of the EV's requests: DC targets within the EV's limits and the EVSE maxima the charger
 * announced last (ChargeParameterDiscoveryRes, updated by CurrentDemandRes), contactors closed only after a PreCharge
 * that brought the EVSE output to the battery voltage.
 */
class LimitWatch {
  readonly violations: string[] = [];
  private evse: { maxVoltageV?: number; maxCurrentA?: number; maxPowerW?: number } = {};
  private preChargePresentV: number | undefined;
  private preChargeSeen = false;

  constructor(private readonly t: HostileTarget) {}

  request(name: string, body: Body): void {
    const l = this.t.ev.limits;
    const where = (what: string): void => {
      this.violations.push(`${name}: ${what}`);
    };
    if (name === 'CurrentDemandReq' || name === 'PreChargeReq') {
      const v = si(body.EVTargetVoltage);
      const i = si(body.EVTargetCurrent);
      if (v === undefined || i === undefined) return where('no EVTargetVoltage / EVTargetCurrent');
      // A negative maximum (a hostile charger's) leaves the EV nothing but 0.
      const vMax = Math.max(0, Math.min(l.maxVoltageV, this.evse.maxVoltageV ?? Infinity));
      const iMax = Math.max(0, name === 'PreChargeReq' ? this.evse.maxCurrentA ?? Infinity : Math.min(l.maxCurrentA, this.evse.maxCurrentA ?? Infinity));
      if (v < 0 || !within(v, vMax)) where(`EVTargetVoltage ${v} V outside 0…${vMax} V (EV ${l.maxVoltageV}, EVSE ${this.evse.maxVoltageV ?? '-'})`);
      if (i < 0 || !within(i, iMax)) where(`EVTargetCurrent ${i} A outside 0…${iMax} A (EV ${l.maxCurrentA}, EVSE ${this.evse.maxCurrentA ?? '-'})`);
      if (name === 'CurrentDemandReq') {
        const pMax = Math.max(0, Math.min(l.maxPowerW, this.evse.maxPowerW ?? Infinity));
        if (!within(v * i, pMax)) where(`target power ${v * i} W above ${pMax} W (EV ${l.maxPowerW}, EVSE ${this.evse.maxPowerW ?? '-'})`);
        for (const [field, limit] of [['EVMaximumVoltageLimit', l.maxVoltageV], ['EVMaximumCurrentLimit', l.maxCurrentA], ['EVMaximumPowerLimit', l.maxPowerW]] as const) {
          const x = si(body[field]);
          if (x !== undefined && !within(x, limit)) where(`${field} ${x} above the vehicle's ${limit}`);
        }
      }
      if (name === 'PreChargeReq') this.preChargeSeen = true;
    }
  }

  response(name: string, body: Body): void {
    if (name === 'ChargeParameterDiscoveryRes' || name === 'CurrentDemandRes') {
      const dc = (name === 'ChargeParameterDiscoveryRes' ? body.DC_EVSEChargeParameter : body) as Body | undefined;
      if (!dc) return;
      const upd = (field: string, cur: number | undefined) => si(dc[field]) ?? cur;
      this.evse = {
        maxVoltageV: upd('EVSEMaximumVoltageLimit', this.evse.maxVoltageV),
        maxCurrentA: upd('EVSEMaximumCurrentLimit', this.evse.maxCurrentA),
        maxPowerW: upd('EVSEMaximumPowerLimit', this.evse.maxPowerW),
      };
    }
    if (name === 'PreChargeRes') this.preChargePresentV = si(body.EVSEPresentVoltage);
  }

  contactors(closed: boolean): void {
    if (!closed || !this.preChargeSeen || this.t.preChargeToleranceV === undefined) return;
    const battery = this.t.ev.status.batteryVoltageV;
    const present = this.preChargePresentV;
    if (present === undefined || Math.abs(present - battery) > this.t.preChargeToleranceV) {
      this.violations.push(`contactors closed with the EVSE output at ${present ?? '?'} V, battery ${battery} V (tolerance ${this.t.preChargeToleranceV} V)`);
    }
  }
}

/**
 * One session against the target's charger with the answer to `point` replaced by `hostile` (none: a clean run).
 * Throws (a test failure) when the session does not settle within MAX_VIRTUAL_MS / MAX_STEPS, or stalls.
 */
export async function runHostile(o: { target: HostileTarget; clock: SteppableClock; point?: AttackPoint; hostile?: Hostile }): Promise<HostileRun> {
  const { target: t, clock } = o;
  const startedAt = clock.now();
  const ev = new HostileEv(t, clock);
  const watch = new LimitWatch(t);
  ev.onContactors = (closed) => watch.contactors(closed);
  const charger = t.charger();
  const requests: SentRequest[] = [];
  const seen = new Map<string, number>();
  let hostileIndex = -1;
  let hostileAnswer: string | undefined;
  let s2Closed = false;
  const stopping: HostileRun['stopping'] = [];
  let chargerError: unknown;

  const link = memoryStream((bytes) => {
    for (const m of reassembler.push(bytes)) void onRequest(m.payload).catch((err: unknown) => {
      chargerError ??= err;
    });
  });
  const reassembler = new V2gtpReassembler({ maxPayload: SESSION_PAYLOAD_CAP });

  const onRequest = async (payload: Uint8Array) => {
    const now = clock.now();
    const handshake = requests.length === 0;
    let name: string;
    let body: Body;
    if (handshake) {
      name = APP_HANDSHAKE_REQUEST;
      body = decodeAny('appHandshake', payload) as Body;
    } else {
      const doc = decodeV2g(t.schema, payload);
      name = bodyName(doc);
      body = (doc.Body[name] ?? {}) as Body;
    }
    requests.push({ name, body, at: now });
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    watch.request(name, body);
    if (t.loop.requests.includes(name)) ev.loopRequests++;

    let def: Default | 'silence' | 'close';
    if (handshake) {
      def = { bytes: answerSupportedAppProtocolReq(payload, t.appProtocols), delayMs: 5 };
    } else {
      const a = await charger.answer(payload, now);
      def = typeof a === 'string' ? a : { ...a, doc: decodeV2g(t.schema, a.bytes) };
    }
    let reply: Reply;
    if (o.point && o.hostile && name === o.point.name && n === o.point.nth) {
      if (typeof def === 'string') throw new Error(`the well-behaved charger gave no answer to ${name} to replace (${def})`);
      hostileIndex = requests.length - 1;
      const r = realize(o.hostile, t, o.point, def);
      reply = r.reply;
      hostileAnswer = r.describe;
    } else {
      reply = typeof def === 'string' ? def : { payload: def.bytes };
    }
    const delayMs = typeof def === 'string' ? 5 : def.delayMs;
    if (typeof reply === 'object' && 'payload' in reply && !handshake) {
      try {
        const doc = decodeV2g(t.schema, reply.payload);
        watch.response(bodyName(doc), (doc.Body[bodyName(doc)] ?? {}) as Body);
      } catch {
        // Not a decodable message: the EV cannot act on it either.
      }
    }
    clock.setTimer(() => {
      if (reply === 'silence') return;
      if (reply === 'close') link.end();
      else if (reply === 'reset') link.end(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
      else link.deliver('raw' in reply ? reply.raw : encodeV2gtp(PayloadType.EXI, reply.payload));
    }, delayMs);
  };

  const log = capturingLog((msg, fields) => {
    if (msg.startsWith('stopping in order')) stopping.push({ code: String(fields.code), afterRequests: requests.length });
  });
  const effects: EffectHandlers = {
    ...t.effects,
    contactors: (r) => ev.setContactors(r.closed),
    chargeRequest: async (r) => {
      s2Closed = r.closed;
    },
  };

  let result: SessionResult | undefined;
  let failure: unknown;
  void runV2gSession({ stream: link.stream, clock, log, engine: { offer: t.offer, modules: t.modules }, ev, effects }).then(
    (r) => void (result = r),
    (err: unknown) => void (failure = err),
  );
  let steps = 0;
  for (;;) {
    await new Promise<void>((r) => setImmediate(r));
    if (chargerError) throw chargerError;
    if (failure) throw new Error(`runV2gSession rejected (it must settle with a result): ${String(failure)}`);
    if (result) break;
    if (++steps > MAX_STEPS || clock.now() - startedAt > MAX_VIRTUAL_MS) {
      throw new Error(`hang: no session result after ${steps} clock steps / ${clock.now() - startedAt} ms virtual; ${requests.length} requests, the last ${requests.at(-1)?.name}`);
    }
    if (!clock.step()) {
      await new Promise<void>((r) => setImmediate(r));
      if (!result) throw new Error(`stall: nothing pending on the clock and no session result; the last request ${requests.at(-1)?.name}`);
    }
  }
  return {
    result, requests, hostileIndex, ...(hostileAnswer ? { hostileAnswer } : {}), stopping,
    violations: watch.violations, end: { contactorsClosed: ev.contactorsClosed, s2Closed }, steps, virtualMs: clock.now() - startedAt,
  };
}

/** A logger whose lines are handed to `onLine` unformatted (nothing is serialized or written). */
function capturingLog(onLine: (msg: string, fields: Record<string, unknown>) => void): (sub: string) => Logger {
  const root = pino({
    level: 'info',
    hooks: {
      logMethod(args) {
        const [first, second] = args as unknown[];
        if (typeof first === 'string') onLine(first, {});
        else if (typeof second === 'string') onLine(second, (first ?? {}) as Record<string, unknown>);
      },
    },
  }, { write: () => undefined });
  return () => root;
}

/**
 * The attack points of a clean run: the first and second occurrence of every request (the second one of a loop or a
 * repetition, PowerDeliveryReq(Stop) after (Start)).
 */
export function attackPoints(clean: HostileRun): AttackPoint[] {
  const points: AttackPoint[] = [];
  const seen = new Map<string, number>();
  for (const r of clean.requests) {
    const n = (seen.get(r.name) ?? 0) + 1;
    seen.set(r.name, n);
    if (n <= 2) points.push({ name: r.name, nth: n });
  }
  return points;
}
