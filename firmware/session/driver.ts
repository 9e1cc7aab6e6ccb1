/**
 * Runs the session engine on a V2G channel: the one V2GTP reader of the TLS/TCP stream feeds received payloads in,
 * the clock feeds timer expiries, the effect handlers (TPM key service, EV port, pilot board) run what the engine
 * asks and feed the results back; every event becomes one bench-log line. Settles with the session result (never
 * throws): the caller decides what follows (report, pause/resume, next plug-in).
 *
 * At the end, whatever the outcome, the vehicle goes to its safe state: contactors open, S2 open (state B).
 */
import type { Clock, TimerId } from '../../hal/clock/types.ts';
import type { ByteStream } from '../../hal/net/types.ts';
import type { EvPort } from '../../hal/ev/types.ts';
import { EvccError, isEvccError } from '../../core/errors.ts';
import { toHex } from '../../core/bytes.ts';
import type { Logger, Subsystem } from '../../core/logger.ts';
import { V2gtpChannel } from '../v2gtp/channel.ts';
import { PayloadType } from '../v2gtp/constants.ts';
import { SessionEngine, type SessionEngineOptions, type SessionEvent, type SessionInput, type SessionOutput, type SessionResult } from './engine.ts';
import type { EffectKind, EffectRequest, EffectTypes } from './exchange.ts';

/** What runs the engine's effects. A missing handler (e.g. no TPM: no `sign`) fails that effect with a typed error. */
export type EffectHandlers = { [K in EffectKind]?: (request: Extract<EffectRequest, { kind: K }>) => Promise<EffectTypes[K]['result']> };

/** One decoded message, for the decoded message log and the dashboard. */
export interface MessageRecord {
  direction: 'tx' | 'rx';
  at: number;
  name: string;
  schema: string;
  hex: string;
  document: unknown;
  rttMs?: number;
}

export interface RunSessionOptions {
  stream: ByteStream;
  clock: Clock;
  /** Loggers by subsystem (`APPHAND`, `ISO2`, `DIN`, `SESSION`, `EV`). */
  log: (sub: Subsystem) => Logger;
  engine: Omit<SessionEngineOptions, 'ev'>;
  ev: EvPort;
  effects: EffectHandlers;
  signal?: AbortSignal;
  /** Milestones (SessionSetupRes ends the communication-setup budget). */
  onCheckpoint?: (id: string, fields?: Record<string, unknown>) => void;
  onMessage?: (record: MessageRecord) => void;
  /** V2GTP payload cap (a hostile SECC must not make us buffer megabytes). */
  maxPayloadBytes?: number;
}

const SESSION_MAX_PAYLOAD = 64 * 1024;

export function runV2gSession(o: RunSessionOptions): Promise<SessionResult> {
  const { clock } = o;
  const engine = new SessionEngine({ ...o.engine, ev: o.ev });
  const channel = new V2gtpChannel(o.stream, { maxPayload: o.maxPayloadBytes ?? SESSION_MAX_PAYLOAD, accept: [PayloadType.EXI] });
  const sessionLog = o.log('SESSION');
  let sub: Subsystem = 'APPHAND';

  return new Promise<SessionResult>((resolve) => {
    let timer: TimerId | undefined;
    let settled = false;
    let sending: Promise<void> = Promise.resolve();

    const feed = (input: SessionInput) => {
      if (settled) return;
      apply(engine.step(input));
    };

    const apply = (out: SessionOutput) => {
      for (const ev of out.events) logEvent(ev);
      if (out.send) {
        const frame = out.send;
        sending = sending.then(() => channel.send(frame.payloadType, frame.bytes)).catch((err: unknown) => {
          feed({ kind: 'channelClosed', now: clock.now(), error: err instanceof Error ? err : new Error(String(err)) });
        });
      }
      for (const e of out.effects) runEffect(e.id, e.request);
      if (timer !== undefined) clock.clearTimer(timer);
      timer = undefined;
      if (out.result) return finish(out.result);
      if (out.deadline !== undefined) {
        timer = clock.setTimer(() => {
          timer = undefined;
          feed({ kind: 'timer', now: clock.now() });
        }, Math.max(0, out.deadline - clock.now()));
      }
    };

    const runEffect = (id: number, request: EffectRequest) => {
      const handler = o.effects[request.kind] as ((r: EffectRequest) => Promise<unknown>) | undefined;
      if (!handler) {
        const error = new EvccError('SESSION_EFFECT_UNAVAILABLE', `no ${request.kind} on this vehicle (${describe(request)})`, { effect: request.kind });
        queueMicrotask(() => feed({ kind: 'effectDone', now: clock.now(), id, error }));
        return;
      }
      o.log('EV').debug({ effect: request.kind }, `effect: ${describe(request)}`);
      handler(request).then(
        (result) => feed({ kind: 'effectDone', now: clock.now(), id, result }),
        (err: unknown) => feed({
          kind: 'effectDone', now: clock.now(), id,
          error: isEvccError(err) ? err : new EvccError('SESSION_EFFECT_FAILED', `${request.kind} failed: ${(err as Error)?.message ?? String(err)}`, { effect: request.kind }),
        }),
      );
    };

    const logEvent = (ev: SessionEvent) => {
      const log = o.log(sub);
      switch (ev.type) {
        case 'transition':
          if (ev.from !== ev.to) log.debug({ from: ev.from, to: ev.to }, `${ev.to}: ${ev.why}`);
          break;
        case 'sent':
          log.info({ msg: ev.name, bytes: ev.bytes.length }, `→ ${ev.name}${ev.summary ? ` (${ev.summary})` : ''}`);
          o.onMessage?.({ direction: 'tx', at: clock.now(), name: ev.name, schema: ev.schema, hex: toHex(ev.bytes), document: ev.document });
          break;
        case 'received':
          log.info({ msg: ev.name, rttMs: Math.round(ev.rttMs), responseCode: ev.responseCode }, `← ${ev.name}${ev.summary ? ` (${ev.summary})` : ev.responseCode ? ` ${ev.responseCode}` : ''} ${Math.round(ev.rttMs)} ms`);
          o.onMessage?.({ direction: 'rx', at: clock.now(), name: ev.name, schema: ev.schema, hex: toHex(ev.bytes), document: ev.document, rttMs: ev.rttMs });
          break;
        case 'note':
          o.log(ev.subsystem as Subsystem)[ev.level](ev.fields ?? {}, ev.message);
          break;
        case 'checkpoint':
          if (ev.id === 'APPHAND_OK') {
            o.log('APPHAND').info({ cp: ev.id, ...ev.fields }, ev.message);
            const ns = String(ev.fields?.namespace ?? '');
            sub = ns.includes('din') ? 'DIN' : 'ISO2';
          } else {
            o.log(sub).info({ cp: ev.id, ...ev.fields }, ev.message);
          }
          o.onCheckpoint?.(ev.id, ev.fields);
          break;
        case 'stopping':
          o.log(sub)[ev.reason.failure ? 'warn' : 'info']({ code: ev.reason.code }, `stopping in order: ${ev.reason.code}: ${ev.reason.message}`);
          break;
      }
    };

    const finish = (result: SessionResult) => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clock.clearTimer(timer);
      o.signal?.removeEventListener('abort', onAbort);
      sessionLog[result.outcome === 'failed' ? 'error' : 'info']({ outcome: result.outcome, code: result.reason.code, orderly: result.orderly, requests: result.requests },
        `session ${result.outcome}: ${result.reason.code}${result.orderly ? '' : ' (not in order)'}`);
      // Safe state whatever happened: contactors open, S2 open. Failures here are logged, never thrown.
      void sending
        .then(() => safeState())
        .then(() => channel.close().catch(() => undefined))
        .then(() => resolve(result));
    };

    const safeState = async () => {
      const ev = o.ev.status();
      if (ev.contactorsClosed) await o.ev.setContactors(false).catch((err: unknown) => o.log('EV').error({ err }, 'contactors did not open'));
      await o.effects.chargeRequest?.({ kind: 'chargeRequest', closed: false }).catch(() => undefined);
    };

    const onAbort = () => {
      const r = o.signal?.reason;
      feed({ kind: 'abort', now: clock.now(), reason: isEvccError(r) ? { code: r.code, message: r.message, failure: true, details: { ...r.details } } : { code: 'ABORTED', message: String(r ?? 'aborted'), failure: true } });
    };

    channel.onMessage((m) => feed({ kind: 'payload', now: clock.now(), payloadType: m.payloadType, bytes: m.payload }));
    channel.onClose((err) => feed({ kind: 'channelClosed', now: clock.now(), ...(err ? { error: err } : {}) }));
    if (o.signal?.aborted) {
      onAbort();
      return;
    }
    o.signal?.addEventListener('abort', onAbort, { once: true });
    o.ev.beginSession();
    feed({ kind: 'start', now: clock.now() });
  });
}

function describe(r: EffectRequest): string {
  switch (r.kind) {
    case 'sign': return `sign ${r.elements.map((e) => Object.keys(e)[0]).join(', ')} with the ${r.key} key`;
    case 'contactors': return `contactors ${r.closed ? 'close' : 'open'}`;
    case 'chargeRequest': return `S2 ${r.closed ? 'close (state C)' : 'open (state B)'}`;
    case 'installContract': return `install contract (Certificate${r.operation === 'installation' ? 'Installation' : 'Update'}Res)`;
  }
}
