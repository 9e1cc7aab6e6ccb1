/**
 * What the ISO 15118-2 and DIN SPEC 70121 SECC handlers share: the sans-I/O reply shape, the request log tests
 * read pacing from, the charger-wide memory of paused sessions, and small helpers (SessionID, PhysicalValue, the
 * log-line summaries).
 *
 * A handler is `(decoded request, now) → reply`: the response message (or none), how long to wait before sending it,
 * and what to do with the connection afterwards. `secc.ts` wires it to the V2GTP stream; tests call it directly in
 * virtual time.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../hal/clock/types.ts';
import { toPhysical, type PhysicalUnit } from '../../firmware/session/units.ts';
import { PowerStage } from './power-stage.ts';
import type { MessageName, Scenario } from './scenario.ts';

export type SeccProtocol = 'iso2' | 'din';

export interface SeccReply<M> {
  /** e.g. `CurrentDemandReq`; `undefined` when the body holds no request. */
  requestName?: string;
  responseName?: string;
  /** The response; absent = the SECC does not answer (scenario, or nothing to answer). */
  response?: M;
  /** Wait this long before sending the response (scenario delays). */
  delayMs: number;
  /** After the response (or instead of one): close the TCP connection in order, or reset it. */
  after?: 'close' | 'reset';
  /** Log lines: `CurrentDemandReq (target 400.0 V 125.0 A)` / `CurrentDemandRes OK (present 398.0 V 120.0 A)`. */
  requestSummary: string;
  responseSummary?: string;
  /** EXI encoder options for this response (a CPS answer with a direct-import duplicate exceeds a length facet). */
  encodeOptions?: { ignoreLengthFacets?: boolean };
}

export interface SeccHandler<M> {
  readonly protocol: SeccProtocol;
  /** Every request received, in order, with its time and how it was answered. */
  readonly requests: RequestLog;
  /** The SessionID of the running session (hex), once SessionSetup assigned it. */
  readonly sessionId: string | undefined;
  handle(request: M, now: number): Promise<SeccReply<M>>;
}

export interface RequestRecord {
  name: string;
  /** Clock time of arrival, ms. */
  at: number;
  responseCode?: string;
  evseProcessing?: string;
  /** false: the SECC stayed silent or reset the connection. */
  answered: boolean;
}

/** Requests per message type with their arrival times (tests assert how many arrived while Ongoing). */
export class RequestLog {
  readonly records: RequestRecord[] = [];

  add(r: RequestRecord): RequestRecord {
    this.records.push(r);
    return r;
  }

  count(name: string): number {
    return this.records.filter((r) => r.name === name).length;
  }

  times(name: string): number[] {
    return this.records.filter((r) => r.name === name).map((r) => r.at);
  }

  /** Requests of `name` answered with this EVSEProcessing (e.g. how many AuthorizationReq got Ongoing). */
  answeredWith(name: string, evseProcessing: string): number {
    return this.records.filter((r) => r.name === name && r.evseProcessing === evseProcessing).length;
  }

  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.records) out[r.name] = (out[r.name] ?? 0) + 1;
    return out;
  }

  names(): string[] {
    return this.records.map((r) => r.name);
  }
}

/**
 * Charger-wide state that outlives a connection: SessionIDs of paused sessions (SessionStopReq Pause), so the EV
 * that comes back with one gets OK_OldSessionJoined.
 */
export class SessionMemory {
  private readonly paused = new Map<string, SeccProtocol>();

  pause(sessionId: string, protocol: SeccProtocol): void {
    this.paused.set(sessionId.toLowerCase(), protocol);
  }

  /** Takes a paused session back (once). */
  resume(sessionId: string, protocol: SeccProtocol): boolean {
    const key = sessionId.toLowerCase();
    if (this.paused.get(key) !== protocol) return false;
    this.paused.delete(key);
    return true;
  }

  get pausedSessions(): string[] {
    return [...this.paused.keys()];
  }
}

/**
 * Receives a CertificateInstallationReq / CertificateUpdateReq and returns what the CPS / MO side answers
 * (`encodeOptions`: how the SECC must encode that response, e.g. sim/cps's direct-import answer).
 */
export interface CertificateServiceAnswer {
  body: unknown;
  signature?: unknown;
  encodeOptions?: { ignoreLengthFacets?: boolean };
}

export interface CertificateServiceHook {
  installation?(request: unknown, ctx: { sessionId: string; now: number }): Promise<CertificateServiceAnswer>;
  update?(request: unknown, ctx: { sessionId: string; now: number }): Promise<CertificateServiceAnswer>;
}

export interface SeccHandlerOptions {
  scenario: Scenario;
  /** The clock of the power stage; the `now` passed to `handle` must come from it. */
  clock: Pick<Clock, 'now'>;
  /** The connection runs over TLS (PnC is offered only then, unless the scenario says otherwise). */
  tls: boolean;
  memory?: SessionMemory;
  /** One power stage per charger (shared by its connections); a new one from the scenario's ramps by default. */
  powerStage?: PowerStage;
  /** Trust anchors (DER) for contract certificate chains: the MO root(s) and V2G roots. */
  contractRoots?: readonly Uint8Array[];
  /** Randomness (SessionID, GenChallenge); default node:crypto. */
  random?: (bytes: number) => Uint8Array;
  /** Wall time for EVSETimeStamp and certificate validity, ms since the epoch; default Date.now. */
  wallClock?: () => number;
  /** CertificateInstallation / CertificateUpdate: the CPS / MO side. Unset: FAILED_NoCertificateAvailable. */
  certificateService?: CertificateServiceHook;
}

export function powerStageFor(scenario: Scenario, clock: Pick<Clock, 'now'>): PowerStage {
  const dc = scenario.charger.dc;
  return new PowerStage({
    clock,
    limits: { maxVoltageV: dc.maxVoltageV, minVoltageV: dc.minVoltageV, maxCurrentA: dc.maxCurrentA, maxPowerW: dc.maxPowerW },
    ...scenario.powerStage,
  });
}

export function defaultRandom(bytes: number): Uint8Array {
  return new Uint8Array(randomBytes(bytes));
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export function fromHex(h: string): Uint8Array {
  return new Uint8Array(Buffer.from(h, 'hex'));
}

/** A SessionID that is all zeros (or empty) asks for a new session. */
export function isZeroSessionId(id: string | undefined): boolean {
  return !id || /^0*$/.test(id);
}

/** A fresh non-zero 8-byte SessionID, different from `avoid`. */
export function newSessionId(random: (n: number) => Uint8Array, avoid?: string): string {
  for (;;) {
    const id = hex(random(8));
    if (!isZeroSessionId(id) && id !== avoid) return id;
  }
}

/** PhysicalValue with its unit (ISO 15118-2 requires the unit; we send it in DIN too). */
export function pv<U extends PhysicalUnit>(value: number, unit: U): { Multiplier: number; Unit: U; Value: number } {
  return toPhysical(value, unit) as { Multiplier: number; Unit: U; Value: number };
}

export function num(v: { Multiplier: number; Value: number } | undefined): number | undefined {
  if (!v || typeof v.Value !== 'number' || typeof v.Multiplier !== 'number') return undefined;
  return v.Value * 10 ** v.Multiplier;
}

export function fmt(v: number | undefined, unit: string): string {
  return v === undefined ? `? ${unit}` : `${v.toFixed(1)} ${unit}`;
}

/** `CurrentDemandReq` → `CurrentDemand` (the scenario key). */
export function baseName(requestName: string): MessageName {
  return requestName.replace(/(Req|Res)$/, '') as MessageName;
}

/** The one request element of a decoded Body (`{ CurrentDemandReq: {...} }`). */
export function requestOf(body: object): { name: string; content: unknown } | undefined {
  for (const [name, content] of Object.entries(body)) {
    if (name.endsWith('Req') && content !== undefined) return { name, content };
  }
  return undefined;
}

/** Elapsed time since the first request of a phase, ms (the phase starts at `now` when it was not running). */
export function since(start: number | undefined, now: number): number {
  return start === undefined ? 0 : now - start;
}

/** What a protocol's own step produced for one request: the response body (and, ISO-2, a header signature). */
export interface SeccAnswer {
  body: { ResponseCode: string; EVSEProcessing?: unknown; [k: string]: unknown };
  signature?: unknown;
  encodeOptions?: { ignoreLengthFacets?: boolean };
}

type V2gMessageShape = { Header?: { SessionID?: string }; Body?: object };

/**
 * The request/response frame every SECC handler shares: log the request, the scenario's silence, the SessionID and
 * sequence checks (FAILED_UnknownSession / FAILED_SequenceError), the loop's TCP reset, a forced response code, the
 * wrong-SessionID fault, the FAILED → close rule and the delays. Each protocol supplies its own steps and names.
 */
export abstract class SeccSessionBase<M extends V2gMessageShape> implements SeccHandler<M> {
  abstract readonly protocol: SeccProtocol;
  readonly requests = new RequestLog();
  protected sid: string | undefined;
  protected wrongSid: string | undefined;
  protected expected = new Set<string>(['SessionSetupReq']);
  protected ended = false;
  protected loopCount = 0;

  protected constructor(protected readonly scenario: Scenario, protected readonly random: (n: number) => Uint8Array) {}

  get sessionId(): string | undefined {
    return this.sid;
  }

  /** Requests of the charge loop (the scenario's TCP reset counts them). */
  protected abstract readonly loopRequests: ReadonlySet<string>;
  /** SessionID in a header before SessionSetup assigned one. */
  protected abstract readonly noSessionId: string;
  protected abstract minimalBody(responseName: string, code: string, content: unknown): SeccAnswer['body'];
  protected abstract answer(name: string, content: unknown, msg: M, now: number): Promise<SeccAnswer>;
  /** The scenario's forced code as this protocol can send it. */
  protected abstract forcedCode(code: string): string;
  protected abstract summarizeRequest(name: string, content: unknown, msg: M): string;
  protected abstract summarizeResponse(responseName: string, body: SeccAnswer['body']): string;

  async handle(msg: M, now: number): Promise<SeccReply<M>> {
    const req = requestOf(msg.Body ?? {});
    if (!req) return { delayMs: 0, after: 'close', requestSummary: '(a V2G message without a request)' };
    const { name } = req;
    const base = baseName(name);
    const responseName = `${base}Res`;
    const requestSummary = this.summarizeRequest(name, req.content, msg);
    const record = this.requests.add({ name, at: now, answered: false });
    if (this.scenario.silent.includes(base)) return { requestName: name, delayMs: 0, requestSummary };

    const sessionOk = name === 'SessionSetupReq' || (this.sid !== undefined && msg.Header?.SessionID?.toLowerCase() === this.sid);
    const inSequence = !this.ended && (this.expected.has(name) || (name === 'SessionStopReq' && this.sid !== undefined));
    let result: SeccAnswer;
    if (!sessionOk) {
      result = { body: this.minimalBody(responseName, 'FAILED_UnknownSession', req.content) };
    } else if (!inSequence) {
      result = { body: this.minimalBody(responseName, 'FAILED_SequenceError', req.content) };
    } else if (this.loopRequests.has(name) && this.scenario.loop.resetConnectionAfter !== undefined && this.loopCount >= this.scenario.loop.resetConnectionAfter) {
      this.ended = true;
      return { requestName: name, delayMs: 0, after: 'reset', requestSummary };
    } else {
      result = await this.answer(name, req.content, msg, now);
    }
    const forced = this.scenario.responseCodes[base];
    if (forced && sessionOk && inSequence) result.body.ResponseCode = this.forcedCode(forced);

    if (this.scenario.faults.wrongSessionIdFrom === base && this.sid) this.wrongSid ??= newSessionId(this.random, this.sid);
    const header: Record<string, unknown> = { SessionID: this.wrongSid ?? this.sid ?? this.noSessionId };
    if (result.signature) header.Signature = result.signature;
    const code = result.body.ResponseCode;
    record.responseCode = code;
    if (typeof result.body.EVSEProcessing === 'string') record.evseProcessing = result.body.EVSEProcessing;
    record.answered = true;
    const failed = code.startsWith('FAILED');
    if (failed) this.ended = true;
    return {
      requestName: name,
      responseName,
      response: { Header: header, Body: { [responseName]: result.body } } as unknown as M,
      delayMs: this.scenario.delays[base] ?? 0,
      ...(failed && this.scenario.faults.afterFailed === 'close' ? { after: 'close' as const } : {}),
      requestSummary,
      responseSummary: this.summarizeResponse(responseName, result.body),
      ...(result.encodeOptions ? { encodeOptions: result.encodeOptions } : {}),
    };
  }
}
