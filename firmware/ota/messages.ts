import { z } from 'zod';
import { OTA_MAX_DN_CHARS, OTA_MAX_ROOTS_PER_LIST, OTA_MAX_ROOT_ANSWER_BYTES, OTA_TOPIC_PREFIX } from './constants.ts';
import { otaError } from './errors.ts';

/**
 * Wire format of the root-CA exchange: UTF-8 JSON, size-capped before parsing. The request id and the reply topic
 * travel inside the payload (not as MQTT 5 properties) so the same code runs on MQTT 3.1.1 and 5.
 * Binary fields are base64 (certificates, signatures) or lower-case hex (key identifiers, digests).
 */
const Hex = (max: number) => z.string().regex(/^[0-9a-f]*$/).max(max);
const B64 = (max: number) => z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/).max(max);
const RequestId = z.string().regex(/^[0-9a-f]{32}$/);
const Nonce = z.string().regex(/^[0-9a-f]{64}$/);
const ReplyTopic = z.string().max(256).startsWith(`${OTA_TOPIC_PREFIX}/`).refine((t) => !/[+#\u0000]/.test(t), 'wildcards not allowed');

export const RootCaRequest = z.strictObject({
  v: z.literal(1),
  type: z.literal('rootca.req'),
  requestId: RequestId,
  replyTo: ReplyTopic,
  nonce: Nonce,
  /** Issuer DN of the top certificate the SECC presented (RFC 4514 string). */
  issuer: z.string().min(1).max(OTA_MAX_DN_CHARS),
  /** Authority key identifier of that certificate (hex), when it has one. */
  aki: Hex(128).optional(),
});
export type RootCaRequest = z.infer<typeof RootCaRequest>;

export const RootListRequest = z.strictObject({
  v: z.literal(1),
  type: z.literal('roots.req'),
  requestId: RequestId,
  replyTo: ReplyTopic,
  nonce: Nonce,
});
export type RootListRequest = z.infer<typeof RootListRequest>;

export const AnswerStatus = z.enum(['ok', 'not-found', 'denied']);
export type AnswerStatus = z.infer<typeof AnswerStatus>;

export const RootCaAnswer = z.strictObject({
  v: z.literal(1),
  type: z.literal('rootca.resp'),
  requestId: RequestId,
  nonce: Nonce,
  status: AnswerStatus,
  /** DER of the root certificate, base64; present when status = ok. */
  cert: B64(8 * 1024).optional(),
  /** SHA-256 of the signer's SubjectPublicKeyInfo (hex). */
  keyId: Hex(64).length(64),
  /** ECDSA-P256-SHA256 (DER) over rootCaSigningInput(), base64. */
  sig: B64(200),
});
export type RootCaAnswer = z.infer<typeof RootCaAnswer>;

export const RootListAnswer = z.strictObject({
  v: z.literal(1),
  type: z.literal('roots.resp'),
  requestId: RequestId,
  nonce: Nonce,
  status: AnswerStatus,
  certs: z.array(B64(8 * 1024)).max(OTA_MAX_ROOTS_PER_LIST),
  keyId: Hex(64).length(64),
  sig: B64(200),
});
export type RootListAnswer = z.infer<typeof RootListAnswer>;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function encodeMessage(message: object): Uint8Array {
  return encoder.encode(JSON.stringify(message));
}

/**
 * Size-checks, UTF-8-decodes, JSON-parses and schema-validates one payload. Never throws anything but a typed
 * OtaError (OVERSIZED before any parsing, MALFORMED for everything else).
 */
export function decodeMessage<S extends z.ZodType>(schema: S, payload: Uint8Array, maxBytes = OTA_MAX_ROOT_ANSWER_BYTES): z.infer<S> {
  if (payload.byteLength > maxBytes) {
    throw otaError('OTA_ANSWER_OVERSIZED', `payload of ${payload.byteLength} bytes exceeds ${maxBytes}`, { bytes: payload.byteLength, maxBytes });
  }
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch (err) {
    throw otaError('OTA_ANSWER_MALFORMED', 'payload is not UTF-8 JSON', {}, err);
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw otaError('OTA_ANSWER_MALFORMED', `payload does not match the schema: ${issues.join('; ')}`, { issues });
  }
  return r.data;
}

/** Reads just the request id of a payload (for routing); undefined when there is none. Bounded and total. */
export function peekRequestId(payload: Uint8Array, maxBytes: number): string | undefined {
  if (payload.byteLength > maxBytes) return undefined;
  try {
    const v = JSON.parse(decoder.decode(payload)) as unknown;
    const id = v !== null && typeof v === 'object' ? (v as { requestId?: unknown }).requestId : undefined;
    return typeof id === 'string' && RequestId.safeParse(id).success ? id : undefined;
  } catch {
    return undefined;
  }
}

