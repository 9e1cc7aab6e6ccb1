import { z } from 'zod';
import { EvccError, isEvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import { VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';
import { logKeyId, verifySecurityLog, type LogVerification } from '../../firmware/log/security-log.ts';
import { LOG_MAX_UPLOAD_BYTES, securityLogTopics } from '../../firmware/log/mqtt-upload.ts';
import type { MqttClient, MqttMessage } from '../../hal/mqtt/types.ts';

/**
 * The OEM backend's side of the vehicles' security logs (TR-2019-04 §3.3.4): each vehicle's log key (public part of
 * the provisioning export, `security-log.pub.pem`) is registered at production; uploads are continuations of what
 * the backend holds. Each is verified with that key alone (chain from the stored head, every checkpoint signature)
 * before a byte is stored, so the backend's copy is append-only and authenticated: a vehicle whose log was cut
 * short or rewritten after an upload cannot extend the stored head any more (LOG_CHAIN_BROKEN) — the truncation a
 * verifier of the vehicle's file alone cannot see.
 *
 * Files (the backend's data dir): `security-logs/<vehicle>.pub.pem` (registered key), `<vehicle>.jsonl` (entries as
 * received), `<vehicle>.head.json` (seq and hash of the last stored entry, what was proved about it).
 */
export type SecurityLogCollectorErrorCode = 'LOG_VEHICLE_UNKNOWN';

export interface StoredHead {
  /** Seq of the last stored entry. */
  seq: number;
  hash: string;
  signedThrough: number;
  unsignedCheckpoints: { seq: number; reason: string }[];
  updatedAt: string;
}

export interface UploadReceipt {
  vehicleId: string;
  accepted: number;
  head: StoredHead;
}

const dir = 'security-logs';
const path = (vehicleId: string, ext: 'pub.pem' | 'jsonl' | 'head.json'): string => `${dir}/${vehicleId}.${ext}`;

function checkId(vehicleId: string): void {
  if (!VEHICLE_ID_PATTERN.test(vehicleId)) throw new EvccError('CONFIG_INVALID', `vehicle id ${JSON.stringify(vehicleId)} not allowed`);
}

export class SecurityLogCollector {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: { store: FileStore; log: Logger; now?: () => Date }) {}

  /** Production: the vehicle's log key from its provisioning export. */
  async registerVehicle(vehicleId: string, logKeyPem: string): Promise<{ keyId: string }> {
    checkId(vehicleId);
    const keyId = logKeyId(logKeyPem);
    await this.d.store.writeAtomic(path(vehicleId, 'pub.pem'), logKeyPem, { mode: 0o644 });
    this.d.log.info({ vehicleId, keyId }, 'security-log key registered');
    return { keyId };
  }

  /** What the backend holds of the vehicle's log (the upload's starting point), undefined before the first upload. */
  async head(vehicleId: string): Promise<StoredHead | undefined> {
    checkId(vehicleId);
    const raw = await this.d.store.read(path(vehicleId, 'head.json'));
    return raw ? (JSON.parse(Buffer.from(raw).toString('utf8')) as StoredHead) : undefined;
  }

  /**
   * Verifies and stores an upload: `text` holds the entries after the stored head (the whole log from seq 0 the
   * first time). Throws the verification's typed error (the first bad entry) and stores nothing then.
   */
  accept(vehicleId: string, text: string): Promise<UploadReceipt> {
    const run = async (): Promise<UploadReceipt> => {
      checkId(vehicleId);
      const pem = await this.d.store.read(path(vehicleId, 'pub.pem'));
      if (!pem) throw new EvccError('LOG_VEHICLE_UNKNOWN', `no security-log key registered for vehicle ${vehicleId}`, { vehicleId });
      const held = await this.head(vehicleId);
      let proved: LogVerification;
      try {
        proved = verifySecurityLog(text, Buffer.from(pem).toString('utf8'), held ? { seq: held.seq + 1, head: held.hash } : undefined);
      } catch (err) {
        this.d.log.warn({ vehicleId, code: (err as EvccError).code, seq: (err as EvccError).details?.seq, held: held?.seq, cp: 'OEM-LOG-REFUSED' }, `security-log upload of ${vehicleId} refused: ${(err as Error).message}`);
        throw err;
      }
      const before = await this.d.store.read(path(vehicleId, 'jsonl'));
      await this.d.store.writeAtomic(path(vehicleId, 'jsonl'), Buffer.concat([before ?? Buffer.alloc(0), Buffer.from(text, 'utf8')]), { mode: 0o640 });
      const head: StoredHead = {
        seq: (held?.seq ?? -1) + proved.entries, hash: proved.head,
        signedThrough: proved.signedThrough >= 0 ? proved.signedThrough : (held?.signedThrough ?? -1),
        unsignedCheckpoints: [...(held?.unsignedCheckpoints ?? []), ...proved.unsignedCheckpoints].slice(-100),
        updatedAt: (this.d.now?.() ?? new Date()).toISOString(),
      };
      await this.d.store.writeAtomic(path(vehicleId, 'head.json'), `${JSON.stringify(head)}\n`, { mode: 0o640 });
      this.d.log.info({ vehicleId, accepted: proved.entries, seq: head.seq, signedThrough: head.signedThrough, unsigned: proved.unsignedCheckpoints.length, cp: 'OEM-LOG-STORED' },
        `security log of ${vehicleId}: ${proved.entries} entries stored through seq ${head.seq}${proved.unsignedCheckpoints.length ? ` (${proved.unsignedCheckpoints.length} unsigned checkpoint(s): ${proved.unsignedCheckpoints[0]!.reason})` : ''}`);
      return { vehicleId, accepted: proved.entries, head };
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => undefined);
    return next;
  }
}

// ---- over the OEM link ----------------------------------------------------------------------------------------

/**
 * The collector on the OEM backend's MQTT client (service.ts routes `evcc/v1/<vehicle>/log/req` here, in the
 * instances' shared-subscription group like every request): `log.head` answers the stored head, `log.upload` stores
 * a verified continuation and answers the receipt or the typed refusal. Answers go only to the vehicle's own
 * `log/resp` topic (the replyTo must be it), so one vehicle cannot have answers sent elsewhere.
 */
export class SecurityLogService {
  private client: MqttClient | undefined;
  constructor(readonly collector: SecurityLogCollector, private readonly log: Logger) {}

  attach(client: MqttClient): void {
    this.client = client;
  }

  detach(): void {
    this.client = undefined;
  }

  /** True when the topic was a security-log one (handled or dropped). */
  onMessage(vehicleId: string, rest: string, m: MqttMessage): boolean {
    if (rest !== 'log/req') return rest.startsWith('log/');
    if (m.retain) return true;
    this.serve(vehicleId, m.payload).catch((err: unknown) => this.log.error({ vehicleId, code: isEvccError(err) ? err.code : 'INTERNAL', error: (err as Error).message }, 'security log: request failed'));
    return true;
  }

  private async serve(vehicleId: string, payload: Uint8Array): Promise<void> {
    if (payload.length > LOG_MAX_UPLOAD_BYTES + 1024) {
      this.log.warn({ vehicleId, bytes: payload.length }, 'security log: request dropped (too big)');
      return;
    }
    let req: z.infer<typeof LogRequest>;
    try {
      req = LogRequest.parse(JSON.parse(Buffer.from(payload).toString('utf8')));
    } catch {
      this.log.warn({ vehicleId }, 'security log: request dropped (malformed)');
      return;
    }
    const topics = securityLogTopics(vehicleId);
    if (req.replyTo !== topics.response) {
      this.log.warn({ vehicleId, replyTo: req.replyTo }, 'security log: request dropped (reply topic is not the vehicle\'s own)');
      return;
    }
    let answer: Record<string, unknown>;
    try {
      if (req.type === 'log.head') {
        const head = await this.collector.head(vehicleId);
        answer = { type: 'log.head', ...(head ? { head: { seq: head.seq, hash: head.hash } } : {}) };
      } else {
        const r = await this.collector.accept(vehicleId, req.entries);
        answer = { type: 'log.receipt', accepted: r.accepted, head: { seq: r.head.seq, hash: r.head.hash } };
      }
    } catch (err) {
      answer = { type: 'log.refused', error: { code: isEvccError(err) ? err.code : 'INTERNAL', message: (err as Error).message, ...(isEvccError(err) && typeof err.details.seq === 'number' ? { seq: err.details.seq } : {}) } };
    }
    await this.client?.publish(topics.response, JSON.stringify({ v: 1, requestId: req.requestId, ...answer }), { qos: 1 });
  }
}

const LogRequest = z.discriminatedUnion('type', [
  z.object({ v: z.literal(1), type: z.literal('log.head'), requestId: z.string().min(1).max(64), replyTo: z.string() }).strict(),
  z.object({ v: z.literal(1), type: z.literal('log.upload'), requestId: z.string().min(1).max(64), replyTo: z.string(), entries: z.string().max(LOG_MAX_UPLOAD_BYTES) }).strict(),
]);
