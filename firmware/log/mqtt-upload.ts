import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { Clock } from '../../hal/clock/types.ts';
import type { MqttClient } from '../../hal/mqtt/types.ts';
import { OTA_TOPIC_PREFIX } from '../ota/constants.ts';
import { MqttRpc } from '../ota/rpc.ts';
import type { SecurityLogBackend } from './upload.ts';

/**
 * The security-log upload over the OEM link (ARCHITECTURE.md §4 conventions: under the vehicle's prefix, which the
 * broker ACL confines to the vehicle and the backend; request id and reply topic in the payload): `log.head` asks
 * what the backend holds, `log.upload` sends the entries after it (deploy/oem-backend/security-log.ts answers).
 */
export function securityLogTopics(vehicleId: string) {
  const base = `${OTA_TOPIC_PREFIX}/${vehicleId}/log`;
  return { request: `${base}/req`, response: `${base}/resp` };
}
/** What the OEM backend subscribes to (every vehicle). */
export const BACKEND_LOG_FILTER = `${OTA_TOPIC_PREFIX}/+/log/req`;
/** Entries per upload message, as JSON-lines text (the vehicle sends more in several messages). */
export const LOG_MAX_UPLOAD_BYTES = 256 * 1024;
const LOG_MAX_ANSWER_BYTES = 4096;

const Head = z.object({ seq: z.number().int().nonnegative(), hash: z.string().regex(/^[0-9a-f]{64}$/) });
const Answer = z.object({
  v: z.literal(1), requestId: z.string(), type: z.enum(['log.head', 'log.receipt', 'log.refused']),
  head: Head.optional(), accepted: z.number().int().optional(),
  error: z.object({ code: z.string(), message: z.string(), seq: z.number().int().optional() }).optional(),
}).strict();

/** The SecurityLogBackend port over MQTT (firmware/log/upload.ts drives it). */
export function mqttSecurityLogBackend(o: { client: MqttClient; vehicleId: string; clock: Clock; log: Logger; timeoutMs?: number }): SecurityLogBackend & { close(): void } {
  const topics = securityLogTopics(o.vehicleId);
  // No re-publish: a repeated upload would be refused as out of order after the first was stored.
  const rpc = new MqttRpc({ client: o.client, replyTopic: topics.response, clock: o.clock, log: o.log, maxAnswerBytes: LOG_MAX_ANSWER_BYTES, republishMs: 0 });
  const ask = async (body: Record<string, unknown>): Promise<z.infer<typeof Answer>> => {
    const requestId = rpc.newRequestId();
    return rpc.call(topics.request, { v: 1, ...body, requestId, replyTo: topics.response }, async (payload) => {
      const r = Answer.safeParse(JSON.parse(Buffer.from(payload).toString('utf8')));
      if (!r.success) throw new EvccError('LOG_UPLOAD_REFUSED', 'the OEM backend\'s security-log answer is malformed');
      if (r.data.type === 'log.refused') {
        const e = r.data.error;
        throw new EvccError('LOG_UPLOAD_REFUSED', `the OEM backend refused the security-log upload: ${e?.code ?? '?'}: ${e?.message ?? ''}`, { cause: e?.code, ...(e?.seq !== undefined ? { seq: e.seq } : {}) });
      }
      return r.data;
    }, { deadline: o.clock.now() + (o.timeoutMs ?? 10_000) });
  };
  return {
    async head() {
      return (await ask({ type: 'log.head' })).head;
    },
    async put(text: string) {
      if (Buffer.byteLength(text) > LOG_MAX_UPLOAD_BYTES) throw new EvccError('LOG_UPLOAD_REFUSED', `upload of ${Buffer.byteLength(text)} bytes exceeds ${LOG_MAX_UPLOAD_BYTES}`);
      const a = await ask({ type: 'log.upload', entries: text });
      if (!a.head) throw new EvccError('LOG_UPLOAD_REFUSED', 'the OEM backend\'s receipt names no head');
      return { head: a.head };
    },
    close: () => rpc.close(),
  };
}
