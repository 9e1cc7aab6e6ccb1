import type { Clock } from '../../hal/clock/types.ts';
import type { MqttClient } from '../../hal/mqtt/types.ts';
import type { Logger } from '../../core/logger.ts';
import { OTA_RECENT_REQUEST_IDS, OTA_REQUEST_REPUBLISH_MS } from './constants.ts';
import { EvccError, isEvccError } from '../../core/errors.ts';
import { otaError, OtaError, type OtaErrorCode } from './errors.ts';
import { encodeMessage, peekRequestId } from './messages.ts';

/**
 * Request/response over MQTT with the correlation inside the payload: every request carries `requestId` and
 * `replyTo`, every answer echoes `requestId`. Works on MQTT 3.1.1 (no response-topic property) and 5 alike.
 *
 * Each call has an absolute deadline. An answer whose id matches a pending call goes to that call's handler, which
 * verifies it and either completes the call or fails it with a typed error — unless the caller's `keepWaiting` says
 * that error is one anybody on the reply topic could cause (a forgery): then the answer is refused (counted, logged
 * for the first few, remembered) and the call waits on for a valid one. Anything else on the reply topic is
 * dropped with a typed rejection (logged and remembered by pending calls): a late answer to an old request must not
 * abort the current one.
 */
export interface Rejection {
  code: OtaErrorCode | string;
  message: string;
}

export type AnswerHandler<T> = (payload: Uint8Array) => Promise<T>;

interface PendingCall {
  handle(payload: Uint8Array): void;
  /** The first RPC_REMEMBERED_REJECTIONS rejections (a flood must not grow it). */
  rejected: Rejection[];
  /** Answers with this call's id that its handler refused while it kept waiting. */
  refused: number;
}

/** Rejections a call remembers for its error details, and refused answers it logs one line each for. */
export const RPC_REMEMBERED_REJECTIONS = 16;
export const RPC_LOGGED_REFUSALS = 3;

function remember(call: PendingCall, r: Rejection): void {
  if (call.rejected.length < RPC_REMEMBERED_REJECTIONS) call.rejected.push(r);
}

export interface MqttRpcOptions {
  client: MqttClient;
  replyTopic: string;
  clock: Clock;
  log: Logger;
  /** Answers bigger than this are dropped unparsed. */
  maxAnswerBytes: number;
  /** Re-publish interval of an unanswered request (default OTA_REQUEST_REPUBLISH_MS; 0 = never). */
  republishMs?: number;
  /** Random bytes (injectable for deterministic tests). */
  random?: (n: number) => Uint8Array;
}

export class MqttRpc {
  private readonly pending = new Map<string, PendingCall>();
  private readonly recent: string[] = [];
  private subscription: Promise<void> | undefined;
  private readonly random: (n: number) => Uint8Array;
  private readonly detach: () => void;

  constructor(private readonly o: MqttRpcOptions) {
    this.random = o.random ?? ((n) => globalThis.crypto.getRandomValues(new Uint8Array(n)));
    this.detach = o.client.onMessage((m) => {
      if (m.topic === o.replyTopic && !m.retain) this.dispatch(m.payload);
    });
  }

  newRequestId(): string {
    return hex(this.random(16));
  }

  newNonce(): string {
    return hex(this.random(32));
  }

  /** True while the id belongs to a call still waiting. */
  isPending(requestId: string): boolean {
    return this.pending.has(requestId);
  }

  private dispatch(payload: Uint8Array): void {
    const id = peekRequestId(payload, this.o.maxAnswerBytes);
    const call = id === undefined ? undefined : this.pending.get(id);
    if (call) return call.handle(payload);
    let rejection: Rejection;
    if (payload.byteLength > this.o.maxAnswerBytes) {
      rejection = { code: 'OTA_ANSWER_OVERSIZED', message: `answer of ${payload.byteLength} bytes exceeds ${this.o.maxAnswerBytes}` };
    } else if (id === undefined) {
      rejection = { code: 'OTA_ANSWER_MALFORMED', message: 'answer without a valid request id' };
    } else if (this.recent.includes(id)) {
      rejection = { code: 'OTA_ANSWER_REPLAYED', message: `answer for completed request ${id}` };
    } else {
      rejection = { code: 'OTA_ANSWER_UNKNOWN_REQUEST', message: `answer for request ${id}, which is not ours` };
    }
    this.o.log.warn({ code: rejection.code, requestId: id }, `answer dropped: ${rejection.message}`);
    for (const p of this.pending.values()) remember(p, rejection);
  }

  private ensureSubscribed(): Promise<void> {
    if (!this.subscription) {
      this.subscription = this.o.client.subscribe([this.o.replyTopic], 1).then((granted) => {
        if ((granted[0] ?? 128) >= 0x80) throw otaError('OTA_BROKER_REFUSED', `broker refused subscription to ${this.o.replyTopic}`);
      });
      this.subscription.catch(() => (this.subscription = undefined));
    }
    return this.subscription;
  }

  /**
   * Publishes `body` (+ requestId, replyTo) to `topic` and resolves with what `onAnswer` makes of the first answer
   * carrying that id. Fails with OTA_BROKER_UNREACHABLE when the request never reached the broker before the
   * deadline, OTA_BACKEND_SILENT when it did but no valid answer came (naming how many were refused), or with
   * `onAnswer`'s typed error when `keepWaiting` (default: never) does not claim it.
   */
  call<T>(
    topic: string,
    body: Record<string, unknown> & { requestId: string },
    onAnswer: AnswerHandler<T>,
    options: { deadline: number; signal?: AbortSignal; keepWaiting?: (err: unknown) => boolean },
  ): Promise<T> {
    const { requestId } = body;
    const { clock } = this.o;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let delivered = false;
      let republishTimer: ReturnType<Clock['setTimer']> | undefined;
      let attempts = 0;
      const call: PendingCall = {
        rejected: [],
        refused: 0,
        handle: (payload) => {
          onAnswer(payload).then(finish(resolve), (err: unknown) => {
            if (settled || !options.keepWaiting?.(err)) return finish(reject)(err);
            const e = err as Partial<EvccError>;
            const rejection = { code: typeof e.code === 'string' ? e.code : 'INTERNAL', message: e.message ?? String(err) };
            remember(call, rejection);
            if (++call.refused <= RPC_LOGGED_REFUSALS) {
              this.o.log.warn({ requestId, code: rejection.code, refused: call.refused, cp: 'OTA-ANSWER-REFUSED' }, `answer refused (${rejection.code}), waiting on for a valid one: ${rejection.message}`);
            }
          });
        },
      };
      const start = clock.now();
      const timer = clock.setTimer(() => {
        const budgetMs = options.deadline - start;
        const details = { requestId, budgetMs, attempts, rejected: call.rejected, refusedAnswers: call.refused, link: this.o.client.status };
        const refused = call.refused ? ` (${call.refused} answer${call.refused === 1 ? '' : 's'} refused: ${[...new Set(call.rejected.map((r) => r.code))].join(', ')})` : '';
        finish(reject)(
          delivered
            ? otaError('OTA_BACKEND_SILENT', `no valid answer from the OEM backend within ${Math.round(budgetMs)} ms${refused}`, details)
            : otaError('OTA_BROKER_UNREACHABLE', `request not delivered to the broker within ${Math.round(budgetMs)} ms`, details),
        );
      }, options.deadline - start);
      // The caller's reason wins (e.g. the orchestrator's EVCC_SETUP_TIMEOUT), so the fallback names the real cause.
      const onAbort = () => {
        const reason: unknown = options.signal?.reason;
        finish(reject)(isEvccError(reason) ? reason : new EvccError('ABORTED', 'root-CA request aborted', { requestId, reason: String(reason) }));
      };
      function finish<V>(settle: (v: V) => void): (v: V) => void {
        return (v) => {
          if (settled) return;
          settled = true;
          cleanup();
          settle(v);
        };
      }
      const cleanup = () => {
        if (call.refused > RPC_LOGGED_REFUSALS) {
          this.o.log.warn({ requestId, refused: call.refused, cp: 'OTA-ANSWER-REFUSED' }, `${call.refused - RPC_LOGGED_REFUSALS} further refused answer(s) not logged one by one`);
        }
        clock.clearTimer(timer);
        if (republishTimer !== undefined) clock.clearTimer(republishTimer);
        options.signal?.removeEventListener('abort', onAbort);
        this.pending.delete(requestId);
        this.recent.push(requestId);
        if (this.recent.length > OTA_RECENT_REQUEST_IDS) this.recent.shift();
      };
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(requestId, call);
      const payload = encodeMessage({ ...body, replyTo: this.o.replyTopic });
      const republishMs = this.o.republishMs ?? OTA_REQUEST_REPUBLISH_MS;
      const send = (): void => {
        attempts++;
        this.ensureSubscribed()
          .then(() => (settled ? undefined : this.o.client.publish(topic, payload, { qos: 1 })))
          .then((ack) => {
            if (settled || ack === undefined) return;
            if (ack.reasonCode !== undefined && ack.reasonCode >= 0x80) {
              throw otaError('OTA_BROKER_REFUSED', `broker refused publish to ${topic} (reason ${ack.reasonCode})`, { reasonCode: ack.reasonCode });
            }
            delivered = true;
            if (republishMs > 0) {
              // Backing off (×2 per attempt): a slow backend under load must not be flooded with copies.
              republishTimer = clock.setTimer(() => {
                if (settled) return;
                this.o.log.debug({ requestId, attempt: attempts + 1 }, 'no answer yet: publishing the request again');
                send();
              }, republishMs * 2 ** (attempts - 1));
            }
          })
          .catch((err: unknown) => finish(reject)(err instanceof OtaError ? err : otaError('OTA_BROKER_UNREACHABLE', 'publish failed', {}, err)));
      };
      send();
    });
  }

  close(): void {
    this.detach();
  }
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
