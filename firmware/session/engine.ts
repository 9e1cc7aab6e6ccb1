/**
 * The EV side of one V2G communication session as a pure state machine (sans-I/O, like the SLAC engine): inputs
 * are received V2GTP payloads, timer expiries, effect results and commands, each with the current time; outputs
 * are the bytes to send, effects to run, events to log and the next deadline. SupportedAppProtocol is its first
 * state; the SECC's choice selects the protocol module (iso2/, din/) whose steps then run on the shared exchange core:
 *
 *   WaitForSupportedAppProtocolRes → WaitForSessionSetupRes → … (the module's steps) … → WaitForSessionStopRes
 *     → Ended (completed | paused | failed)
 *
 * What is the same for every exchange lives here: EXI encoding and decoding (pure), the SessionID check, FAILED
 * response codes, the mandatory-field check, V2G_EVCC_Msg_Timeout, pacing of repetitions, effects (TPM signature,
 * contactors, S2) awaited before a request, the orderly stop (the module's stop path) and the safe end (contactors
 * open, S2 open). No socket, no clock, no randomness: a whole session runs as a unit test in virtual time.
 */
import { EvccError, isEvccError } from '../../core/errors.ts';
import { toHex } from '../../core/bytes.ts';
import { decodeV2gMessage, encodeAny } from '../exi/index.ts';
import { EXI_PAYLOAD_TYPE } from '../exi/v2gtp.ts';
import { buildSupportedAppProtocolReq, evaluateSupportedAppProtocolRes, type NegotiatedProtocol, type OfferedProtocol } from './app-handshake.ts';
import type {
  EffectKind, EffectRequest, EvView, ProtocolModule, ProtocolSummary, Step, StepEnv, StopReason, Transition,
} from './exchange.ts';
import { COMMON_TIMERS, TimerTable, type TimerSpec } from './timers.ts';

export type SessionStateName = 'Idle' | 'WaitForSupportedAppProtocolRes' | `WaitFor${string}Res` | 'Ended';

/** Creates the protocol module the SECC chose (ISO-2 or DIN), with its fresh context. */
export type ModuleFactory = (negotiated: NegotiatedProtocol) => ProtocolModule<unknown>;

export interface SessionEngineOptions {
  ev: EvView;
  /** What we offer in SupportedAppProtocolReq (decided with the SDP security: DIN only on plain TCP). */
  offer: readonly OfferedProtocol[];
  /** One factory per offered namespace. */
  modules: Readonly<Record<string, ModuleFactory>>;
  timers?: TimerTable;
}

export type SessionOutcome = 'completed' | 'paused' | 'failed';

export interface SessionResult {
  outcome: SessionOutcome;
  /** Why it ended: `SESSION_COMPLETED` / the typed stop reason. */
  reason: StopReason;
  /** false: the session could not stop in order (link lost, unplugged, timeout on the stop path). */
  orderly: boolean;
  negotiated?: { namespace: string; schemaId: number; protocol: 'iso2' | 'din' };
  protocol?: ProtocolSummary;
  /** Time spent in each state, in order (the last state included). */
  timeline: { state: string; ms: number }[];
  /** Requests sent per message name. */
  requests: Record<string, number>;
  /** Round-trip times per response name: count, median and maximum, ms. */
  roundTrips: Record<string, { count: number; medianMs: number; maxMs: number }>;
  /** Effect durations per kind (TPM signature, contactors, S2, contract install), ms. */
  effectTimes: Record<string, { count: number; medianMs: number; maxMs: number }>;
  durationMs: number;
}

export type SessionEvent =
  | { type: 'transition'; from: string; to: string; why: string }
  | { type: 'sent'; name: string; schema: string; bytes: Uint8Array; document: unknown; summary?: string }
  | { type: 'received'; name: string; schema: string; bytes: Uint8Array; document: unknown; rttMs: number; responseCode?: string; summary?: string }
  | { type: 'note'; level: 'info' | 'warn' | 'error'; subsystem: string; message: string; fields?: Record<string, unknown> }
  /** Protocol milestones with stable ids (searchable in field traces). */
  | { type: 'checkpoint'; id: string; message: string; fields?: Record<string, unknown> }
  | { type: 'stopping'; reason: StopReason };

export type SessionInput =
  | { kind: 'start'; now: number }
  | { kind: 'payload'; now: number; payloadType: number; bytes: Uint8Array }
  | { kind: 'timer'; now: number }
  | { kind: 'effectDone'; now: number; id: number; result?: unknown; error?: EvccError }
  /** The TLS/TCP channel closed or failed (no further exchange possible). */
  | { kind: 'channelClosed'; now: number; error?: Error }
  /** The operator or the service asks to end the session in order. */
  | { kind: 'stop'; now: number; reason?: StopReason }
  /** Hard abort (unplug, lost pilot, communication-setup budget): no further message. */
  | { kind: 'abort'; now: number; reason: StopReason };

export interface SessionOutput {
  state: SessionStateName;
  send?: { payloadType: number; bytes: Uint8Array };
  effects: { id: number; request: EffectRequest }[];
  events: SessionEvent[];
  /** Absolute time (same base as `now`) at which to feed a `timer` input. */
  deadline?: number;
  /** Set once: the session is over; the driver runs the safe-state effects and closes the channel. */
  result?: SessionResult;
}

type Phase =
  | { kind: 'idle' }
  | { kind: 'awaitApp'; sentAt: number; deadline: number }
  | { kind: 'effects'; step: string; pending: Set<number>; then: 'build' | 'next'; deadline: number; nextStep?: string; afterMs?: number }
  | { kind: 'pacing'; step: string; deadline: number; repeat: boolean }
  | { kind: 'signing'; step: string; effectId: number; built: { body: Record<string, unknown>; summary?: string }; deadline: number }
  | { kind: 'awaitRes'; step: string; sentAt: number; deadline: number; timer: TimerSpec }
  | { kind: 'ended' };

/** Effects must not hang the session: a TPM or contactor that does not answer in this time is a failure. */
export const EFFECT_TIMEOUT_MS = 10_000;

export class SessionEngine {
  private state: SessionStateName = 'Idle';
  private phase: Phase = { kind: 'idle' };
  private module: ProtocolModule<unknown> | undefined;
  private negotiated: NegotiatedProtocol | undefined;
  private stopping: StopReason | undefined;
  private effectSeq = 0;
  private readonly effectResults: Partial<Record<EffectKind, unknown>> = {};
  private readonly effectKinds = new Map<number, { kind: EffectKind; at: number }>();
  private readonly effectMs: Record<string, number[]> = {};
  private readonly timers: TimerTable;
  private startedAt = 0;
  private enteredAt = 0;
  private readonly timeline: { state: string; ms: number }[] = [];
  private readonly requests: Record<string, number> = {};
  private readonly rtts: Record<string, number[]> = {};
  private out!: SessionOutput;

  constructor(private readonly o: SessionEngineOptions) {
    this.timers = o.timers ?? new TimerTable();
  }

  get currentState(): SessionStateName {
    return this.state;
  }

  step(input: SessionInput): SessionOutput {
    this.out = { state: this.state, effects: [], events: [] };
    this.lastNow = input.now;
    if (this.phase.kind === 'ended') return this.finishOutput();
    try {
      this.dispatch(input);
    } catch (err) {
      // A bug or an unexpected throw inside a module must still end the session in a defined way.
      const e = isEvccError(err) ? err : new EvccError('SESSION_INTERNAL', `session engine: ${(err as Error)?.message ?? String(err)}`);
      this.beginStop(input.now, { code: e.code, message: e.message, failure: true, details: { ...e.details } });
    }
    return this.finishOutput();
  }

  // ---- dispatch ----------------------------------------------------------------------------------------------------

  private dispatch(input: SessionInput): void {
    const now = input.now;
    switch (input.kind) {
      case 'start': {
        if (this.phase.kind !== 'idle') return;
        this.startedAt = now;
        this.enteredAt = now;
        const bytes = buildSupportedAppProtocolReq(this.o.offer);
        this.count('supportedAppProtocolReq');
        this.emitSent('supportedAppProtocolReq', 'appHandshake', bytes, { supportedAppProtocolReq: '…' },
          this.o.offer.map((p) => `${p.namespace}#${p.schemaId}/p${p.priority}`).join(', '));
        this.out.send = { payloadType: EXI_PAYLOAD_TYPE, bytes };
        const timeout = this.timers.ms(COMMON_TIMERS.supportedAppProtocol);
        this.enter('WaitForSupportedAppProtocolRes', `${this.o.offer.length} protocol(s) offered`);
        this.phase = { kind: 'awaitApp', sentAt: now, deadline: now + timeout };
        return;
      }
      case 'payload':
        return this.onPayload(now, input.payloadType, input.bytes);
      case 'timer':
        return this.onTimer(now);
      case 'effectDone':
        return this.onEffectDone(now, input.id, input.result, input.error);
      case 'channelClosed':
        return this.end(now, 'failed', this.stopping && this.phase.kind === 'awaitRes' && this.module?.steps[this.phase.step]?.response === 'SessionStopRes'
          ? this.stopping
          : isEvccError(input.error) && input.error.code.startsWith('V2GTP_')
            // A framing error (oversized, bad version, unknown payload type) closed the channel: report it as such.
            ? { code: input.error.code, message: `${input.error.message} in ${this.state}`, failure: true, details: { ...input.error.details } }
            : { code: 'SESSION_CHANNEL_CLOSED', message: `the SECC closed the channel${input.error ? `: ${input.error.message}` : ''} in ${this.state}`, failure: true }, false);
      case 'stop':
        return this.beginStop(now, input.reason ?? { code: 'SESSION_STOP_REQUESTED', message: 'stop requested', failure: false });
      case 'abort':
        return this.end(now, 'failed', input.reason, false);
    }
  }

  private onPayload(now: number, payloadType: number, bytes: Uint8Array): void {
    const ph = this.phase;
    if (ph.kind === 'awaitApp') {
      if (payloadType !== EXI_PAYLOAD_TYPE) return this.end(now, 'failed', fault('APPHAND_INVALID_RESPONSE', `unexpected V2GTP payload type 0x${payloadType.toString(16)}`), false);
      let negotiated: NegotiatedProtocol;
      try {
        negotiated = evaluateSupportedAppProtocolRes(this.o.offer, bytes);
      } catch (err) {
        const e = isEvccError(err) ? err : new EvccError('APPHAND_INVALID_RESPONSE', String(err));
        return this.end(now, 'failed', { code: e.code, message: e.message, failure: true, details: { ...e.details } }, false);
      }
      this.recordRtt('supportedAppProtocolRes', now - ph.sentAt);
      this.out.events.push({ type: 'received', name: 'supportedAppProtocolRes', schema: 'appHandshake', bytes, document: negotiated, rttMs: now - ph.sentAt, responseCode: negotiated.responseCode, summary: `${negotiated.responseCode}, ${negotiated.namespace}` });
      const factory = this.o.modules[negotiated.namespace];
      if (!factory) return this.end(now, 'failed', fault('APPHAND_NO_COMMON_PROTOCOL', `no session module for ${negotiated.namespace}`), false);
      this.negotiated = negotiated;
      this.module = factory(negotiated);
      this.checkpoint('APPHAND_OK', `SupportedAppProtocol: ${negotiated.namespace} (SchemaID ${negotiated.schemaId})`, { namespace: negotiated.namespace, responseCode: negotiated.responseCode });
      return this.enterStep(now, this.module.first, 'protocol negotiated');
    }
    const m = this.module;
    if (ph.kind !== 'awaitRes' || !m) {
      // Unsolicited data: V2G is strictly request/response.
      return this.failOrEnd(now, this.code('UNEXPECTED_MESSAGE'), `unsolicited message from the SECC in ${this.state}`, { bytes: bytes.length });
    }
    const step = m.steps[ph.step]!;
    if (payloadType !== EXI_PAYLOAD_TYPE) return this.failOrEnd(now, this.code('UNEXPECTED_MESSAGE'), `unexpected V2GTP payload type 0x${payloadType.toString(16)}`);
    let msg: { Header: Record<string, unknown>; Body: Record<string, unknown> };
    try {
      msg = decodeV2gMessage(m.schema as 'iso2', bytes) as unknown as typeof msg;
    } catch (err) {
      return this.failOrEnd(now, this.code('DECODE_FAILED'), `${step.response} does not decode: ${isEvccError(err) ? `${err.code}: ${err.message}` : String(err)}`, { hex: toHex(bytes.subarray(0, 64)) });
    }
    const rtt = now - ph.sentAt;
    const bodyName = Object.keys(msg.Body ?? {})[0];
    const res = bodyName ? (msg.Body[bodyName] as Record<string, unknown>) : undefined;
    const responseCode = typeof res?.ResponseCode === 'string' ? res.ResponseCode : undefined;
    this.recordRtt(step.response, rtt);
    this.out.events.push({ type: 'received', name: bodyName ?? '(empty body)', schema: m.schema, bytes, document: msg, rttMs: rtt, ...(responseCode ? { responseCode } : {}), ...(res && step.summarize && bodyName === step.response ? { summary: step.summarize(res) ?? '' } : {}) });
    if (bodyName !== step.response || !res) {
      return this.failOrEnd(now, this.code('UNEXPECTED_MESSAGE'), `expected ${step.response}, got ${bodyName ?? 'an empty body'}`, { expected: step.response, got: bodyName });
    }
    const expectedId = m.expectedSessionId(m.ctx);
    const gotId = typeof msg.Header?.SessionID === 'string' ? msg.Header.SessionID : undefined;
    if (expectedId !== undefined && gotId !== expectedId) {
      return this.failOrEnd(now, this.code('SESSION_ID_MISMATCH'), `${step.response} carries SessionID ${gotId ?? '(none)'}, the session is ${expectedId}`, { expected: expectedId, got: gotId });
    }
    if (responseCode?.startsWith('FAILED')) {
      return this.failOrEnd(now, this.code('RESPONSE_FAILED'), `${step.response}: ${responseCode}`, { message: step.response, responseCode });
    }
    const missing = step.check?.(res, m.ctx);
    if (missing !== undefined) {
      return this.failOrEnd(now, this.code('INVALID_RESPONSE'), `${step.response} lacks or has an invalid ${missing}`, { message: step.response, field: missing });
    }
    const t = step.handle(res, m.ctx, { ...this.env(now), header: msg.Header ?? {} });
    // V2G_EVCC_CommunicationSetup_Timeout ends at SessionSetupRes (ISO 15118-2 Table 109): tell the orchestrator.
    if (step.response === 'SessionSetupRes' && t.kind !== 'stop') {
      this.checkpoint('SESSION_SETUP_OK', `SessionSetupRes ${responseCode ?? ''}: session ${String(gotId ?? '')}`.trim(), { sessionId: gotId, responseCode });
    }
    this.apply(now, ph.step, t);
  }

  private onTimer(now: number): void {
    const ph = this.phase;
    switch (ph.kind) {
      case 'awaitApp':
        if (now >= ph.deadline) this.end(now, 'failed', fault('APPHAND_TIMEOUT', `no SupportedAppProtocolRes within V2G_EVCC_Msg_Timeout (${ph.deadline - ph.sentAt} ms)`), false);
        return;
      case 'pacing':
        if (now >= ph.deadline) {
          if (ph.repeat) this.build(now, ph.step);
          else this.enterStep(now, ph.step, 'paced');
        }
        return;
      case 'effects':
      case 'signing':
        if (now >= ph.deadline) this.failOrEnd(now, 'SESSION_EFFECT_TIMEOUT', `no answer from the vehicle side within ${EFFECT_TIMEOUT_MS} ms in ${this.state}`);
        return;
      case 'awaitRes': {
        if (now < ph.deadline) return;
        const m = this.module!;
        const step = m.steps[ph.step]!;
        const message = `no ${step.response} within ${ph.timer.name} (${ph.deadline - ph.sentAt} ms)`;
        // A step may know better (a charger that never answers WeldingDetection still gets SessionStop), also while
        // stopping; otherwise [ISO 15118-2 §8.8.4.3 / DIN]: on V2G_EVCC_Msg_Timeout the EVCC ends the session.
        const t = step.onTimeout?.(m.ctx, this.env(now));
        if (t) {
          if (this.stopping) this.note('warn', `${message} while stopping (${this.stopping.code}): going on`, { code: this.code('TIMEOUT') });
          return this.apply(now, ph.step, t);
        }
        const reason = this.stopping ?? { code: this.code('TIMEOUT'), message, failure: true, details: { message: step.response, timer: ph.timer.name } };
        return this.end(now, reason.failure ? 'failed' : 'completed', reason, false);
      }
      default:
        return;
    }
  }

  private onEffectDone(now: number, id: number, result: unknown, error: EvccError | undefined): void {
    const ph = this.phase;
    const started = this.effectKinds.get(id);
    this.effectKinds.delete(id);
    if (started) (this.effectMs[started.kind] ??= []).push(now - started.at);
    if (started && !error) this.effectResults[started.kind] = result;
    if (ph.kind === 'signing' && ph.effectId === id) {
      if (error) return this.failOrEnd(now, error.code, `signature failed: ${error.message}`, { ...error.details });
      return this.sendRequest(now, ph.step, ph.built, result);
    }
    if (ph.kind !== 'effects' || !ph.pending.has(id)) return;
    if (error) return this.failOrEnd(now, error.code, error.message, { ...error.details });
    ph.pending.delete(id);
    if (ph.pending.size) return;
    if (ph.then === 'build') return this.build(now, ph.step);
    if (ph.nextStep === undefined) return this.finishAfterEffects(now);
    return this.scheduleStep(now, ph.nextStep, ph.afterMs);
  }

  // ---- transitions -------------------------------------------------------------------------------------------------

  private apply(now: number, fromStep: string, t: Transition): void {
    switch (t.kind) {
      case 'next':
        if (t.effects?.length) return this.runEffects(now, t.effects, { step: t.step, then: 'next', nextStep: t.step, ...(t.afterMs !== undefined ? { afterMs: t.afterMs } : {}) });
        return this.scheduleStep(now, t.step, t.afterMs, t.why);
      case 'repeat':
        return this.scheduleStep(now, fromStep, t.afterMs, t.why, true);
      case 'stop':
        if (t.effects?.length) this.emitEffects(t.effects); // best effort, not awaited (e.g. open contactors at once)
        return this.beginStop(now, t.reason, fromStep);
      case 'end': {
        const reason = this.stopping ?? { code: 'SESSION_COMPLETED', message: 'session completed', failure: false };
        this.pendingEnd = { outcome: t.paused ? 'paused' : reason.failure ? 'failed' : 'completed', reason };
        if (t.effects?.length) return this.runEffects(now, t.effects, { step: fromStep, then: 'next' });
        return this.finishAfterEffects(now);
      }
    }
  }

  private pendingEnd: { outcome: SessionOutcome; reason: StopReason } | undefined;
  private readonly stopVisited = new Set<string>();

  private finishAfterEffects(now: number): void {
    const e = this.pendingEnd ?? { outcome: 'completed' as const, reason: { code: 'SESSION_COMPLETED', message: 'session completed', failure: false } };
    this.end(now, e.outcome, e.reason, true);
  }

  /** A failure: stop in order if we are not stopping already, else end at once with the original reason. */
  private failOrEnd(now: number, code: string, message: string, details: Record<string, unknown> = {}): void {
    const reason: StopReason = { code, message, failure: true, details };
    if (this.stopping && this.module) {
      // A failure on the stop path (FAILED WeldingDetectionRes, …) goes on to the next stop step if there is one:
      // the charger still gets its SessionStop. Each stop step runs at most once, so this always ends.
      const at = this.phase.kind === 'awaitRes' ? this.phase.step : undefined;
      const next = at ? this.module.stopPath(at, this.module.ctx, this.stopping) : undefined;
      this.note('warn', `${message} while stopping (${this.stopping.code})${next && !this.stopVisited.has(next) ? `: going on with ${this.stepOf(next).request}` : ''}`, { code });
      if (next && !this.stopVisited.has(next)) return this.scheduleStep(now, next, 0, `stopping: ${code} at ${at}`);
      return this.end(now, this.stopping.failure ? 'failed' : 'completed', this.stopping, false);
    }
    if (!this.module) return this.end(now, 'failed', reason, false);
    const from = this.phase.kind === 'awaitRes' || this.phase.kind === 'pacing' || this.phase.kind === 'signing' || this.phase.kind === 'effects' ? this.phase.step : this.module.first;
    this.beginStop(now, reason, from);
  }

  private beginStop(now: number, reason: StopReason, fromStep?: string): void {
    if (this.phase.kind === 'ended') return;
    if (this.stopping) return; // one stop path at a time; the first reason is the one reported
    const m = this.module;
    if (!m) return this.end(now, reason.failure ? 'failed' : 'completed', reason, false);
    this.stopping = reason;
    this.out.events.push({ type: 'stopping', reason });
    const from = fromStep ?? (this.phase.kind === 'awaitRes' || this.phase.kind === 'pacing' || this.phase.kind === 'signing' || this.phase.kind === 'effects' ? this.phase.step : m.first);
    const path = m.stopPath(from, m.ctx, reason);
    // No stop path from here: a failure on a response (the last stop step itself, or before any session existed)
    // means the session did not end in order.
    if (path === undefined) return this.end(now, reason.failure ? 'failed' : 'completed', reason, !(reason.failure && this.phase.kind === 'awaitRes'));
    // A request already in flight: its response (or timeout) comes first only if it is the stop path itself.
    this.scheduleStep(now, path, 0, `stopping: ${reason.code}`);
  }

  /** A repeat re-sends the same request (no `before` effects again); a new step runs its `before` on entry. */
  private scheduleStep(now: number, stepName: string, afterMs = 0, why?: string, repeat = false): void {
    if (afterMs > 0) {
      const step = this.stepOf(stepName);
      this.enter(`WaitFor${step.response}` as SessionStateName, why ?? 'next step');
      this.phase = { kind: 'pacing', step: stepName, deadline: now + afterMs, repeat };
      return;
    }
    if (repeat) return this.build(now, stepName);
    this.enterStep(now, stepName, why ?? 'next step');
  }

  private enterStep(now: number, stepName: string, why: string): void {
    const step = this.stepOf(stepName);
    if (this.stopping) this.stopVisited.add(stepName);
    this.enter(`WaitFor${step.response}` as SessionStateName, why);
    const before = step.before?.(this.module!.ctx, this.env(now)) ?? [];
    if (before.length) return this.runEffects(now, before, { step: stepName, then: 'build' });
    this.build(now, stepName);
  }

  private runEffects(now: number, effects: readonly EffectRequest[], o: { step: string; then: 'build' | 'next'; nextStep?: string; afterMs?: number }): void {
    const ids = this.emitEffects(effects);
    this.phase = { kind: 'effects', step: o.step, pending: new Set(ids), then: o.then, deadline: now + EFFECT_TIMEOUT_MS, ...(o.nextStep !== undefined ? { nextStep: o.nextStep } : {}), ...(o.afterMs !== undefined ? { afterMs: o.afterMs } : {}) };
  }

  private emitEffects(effects: readonly EffectRequest[]): number[] {
    return effects.map((request) => {
      const id = ++this.effectSeq;
      this.effectKinds.set(id, { kind: request.kind, at: this.lastNow });
      this.out.effects.push({ id, request });
      return id;
    });
  }

  private build(now: number, stepName: string): void {
    const m = this.module!;
    const step = this.stepOf(stepName);
    const built = step.build(m.ctx, this.env(now));
    if (built.sign) {
      const [id] = this.emitEffects([{ kind: 'sign', key: built.sign.key, schema: 'iso2', elements: built.sign.elements }]);
      this.phase = { kind: 'signing', step: stepName, effectId: id!, built: { body: built.body, ...(built.summary ? { summary: built.summary } : {}) }, deadline: now + EFFECT_TIMEOUT_MS };
      return;
    }
    this.sendRequest(now, stepName, built, undefined);
  }

  private sendRequest(now: number, stepName: string, built: { body: Record<string, unknown>; summary?: string }, signature: unknown): void {
    const m = this.module!;
    const step = this.stepOf(stepName);
    const header = { ...m.header(m.ctx), ...(signature !== undefined ? { Signature: signature } : {}) };
    const document = { V2G_Message: { Header: header, Body: built.body } };
    let bytes: Uint8Array;
    try {
      bytes = encodeAny(m.schema, document);
    } catch (err) {
      // Our own request does not encode: a bug or an EV value out of the schema's range; never send garbage.
      return this.failOrEnd(now, 'SESSION_ENCODE_FAILED', `${step.request} does not encode: ${isEvccError(err) ? `${err.code}: ${err.message}` : String(err)}`, { message: step.request });
    }
    this.count(step.request);
    this.emitSent(step.request, m.schema, bytes, document, built.summary);
    this.out.send = { payloadType: EXI_PAYLOAD_TYPE, bytes };
    const timer = step.timeout(m.ctx, this.env(now));
    this.phase = { kind: 'awaitRes', step: stepName, sentAt: now, deadline: now + this.timers.ms(timer), timer };
  }

  // ---- end ---------------------------------------------------------------------------------------------------------

  private end(now: number, outcome: SessionOutcome, reason: StopReason, orderly: boolean): void {
    if (this.phase.kind === 'ended') return;
    this.enter('Ended', `${outcome}: ${reason.code}`);
    this.timeline.push({ state: 'Ended', ms: 0 });
    this.phase = { kind: 'ended' };
    const summary = this.module ? this.module.summary(this.module.ctx) : undefined;
    this.checkpoint(outcome === 'failed' ? 'SESSION_FAILED' : outcome === 'paused' ? 'SESSION_PAUSED' : 'SESSION_COMPLETED',
      `session ${outcome}${orderly ? '' : ' (not in order)'}: ${reason.code}: ${reason.message}`, { code: reason.code, orderly });
    const stats = (all: Record<string, number[]>) => {
      const out: SessionResult['roundTrips'] = {};
      for (const [name, v] of Object.entries(all)) {
        const s = [...v].sort((a, b) => a - b);
        out[name] = { count: s.length, medianMs: s[Math.floor((s.length - 1) / 2)] ?? 0, maxMs: s[s.length - 1] ?? 0 };
      }
      return out;
    };
    const roundTrips = stats(this.rtts);
    const effectTimes = stats(this.effectMs);
    this.out.result = {
      outcome, reason, orderly, timeline: this.timeline, requests: { ...this.requests }, roundTrips, effectTimes, durationMs: now - this.startedAt,
      ...(this.negotiated && this.module ? { negotiated: { namespace: this.negotiated.namespace, schemaId: this.negotiated.schemaId, protocol: this.module.protocol } } : {}),
      ...(summary ? { protocol: summary } : {}),
    };
  }

  // ---- helpers -----------------------------------------------------------------------------------------------------

  private finishOutput(): SessionOutput {
    this.out.state = this.state;
    const ph = this.phase;
    if ('deadline' in ph) this.out.deadline = ph.deadline;
    return this.out;
  }

  private enter(state: SessionStateName, why: string): void {
    if (state === this.state && state !== 'Ended') {
      this.out.events.push({ type: 'transition', from: this.state, to: state, why });
      return;
    }
    const now = this.phaseNow();
    if (this.state !== 'Idle') this.timeline.push({ state: this.state, ms: Math.round(now - this.enteredAt) });
    this.out.events.push({ type: 'transition', from: this.state, to: state, why });
    this.state = state;
    this.enteredAt = now;
  }

  private lastNow = 0;
  private phaseNow(): number {
    return this.lastNow;
  }

  private env(now: number): StepEnv {
    const sub = this.module?.subsystem ?? 'SESSION';
    return {
      now, ev: this.o.ev, timers: this.timers, effectResults: this.effectResults as StepEnv['effectResults'],
      ...(this.stopping ? { stopping: this.stopping } : {}),
      note: (level, message, fields) => this.out.events.push({ type: 'note', level, subsystem: sub, message, ...(fields ? { fields } : {}) }),
    };
  }

  private note(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void {
    this.out.events.push({ type: 'note', level, subsystem: this.module?.subsystem ?? 'SESSION', message, ...(fields ? { fields } : {}) });
  }

  private checkpoint(id: string, message: string, fields?: Record<string, unknown>): void {
    this.out.events.push({ type: 'checkpoint', id, message, ...(fields ? { fields } : {}) });
  }

  private emitSent(name: string, schema: string, bytes: Uint8Array, document: unknown, summary?: string): void {
    this.out.events.push({ type: 'sent', name, schema, bytes, document, ...(summary ? { summary } : {}) });
  }

  private count(name: string): void {
    this.requests[name] = (this.requests[name] ?? 0) + 1;
  }

  private recordRtt(name: string, ms: number): void {
    (this.rtts[name] ??= []).push(ms);
  }

  private stepOf(name: string): Step<unknown> {
    const s = this.module?.steps[name];
    if (!s) throw new EvccError('SESSION_INTERNAL', `protocol module has no step ${name}`);
    return s;
  }

  private code(suffix: string): string {
    return `${this.module?.codePrefix ?? 'SESSION'}_${suffix}`;
  }

}

function fault(code: string, message: string): StopReason {
  return { code, message, failure: true };
}
