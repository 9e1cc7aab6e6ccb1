import { z } from 'zod';
import { createHash } from 'node:crypto';
import { EvccError, isEvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { MqttClient, MqttMessage } from '../../hal/mqtt/types.ts';
import { OTA_TOPIC_PREFIX } from './constants.ts';
import type { SecurityEvents } from '../log/security-log.ts';

/**
 * Remote attestation over the OEM link (ARCHITECTURE.md §4 `attestation`; issue #10). Topics under the vehicle's
 * prefix, so the broker ACL (`evcc/v1/%u/#`) confines each vehicle to its own:
 *   attest/hello      vehicle → backend, after every (re)connect: "I booted / I am back", with its claimed release
 *   attest/challenge  backend → vehicle: a fresh 128-bit nonce, the PCRs to quote, the challenge's expiry
 *   attest/quote      vehicle → backend: TPM2_Quote (TPMS_ATTEST + signature by the attestation key) over those
 *                     PCRs qualified by the nonce, the PCR values and the measured-boot event log as evidence
 * The quote is evidence by itself (signed inside the TPM, nonce inside the signed structure), so nothing here needs
 * the link's TLS to be trusted; the release claim and the event log are claims the backend checks against the quote.
 */
export function attestationTopics(vehicleId: string) {
  const base = `${OTA_TOPIC_PREFIX}/${vehicleId}/attest`;
  return { hello: `${base}/hello`, challenge: `${base}/challenge`, quote: `${base}/quote` };
}
export const ATTESTATION_FILTERS = { hello: `${OTA_TOPIC_PREFIX}/+/attest/hello`, quote: `${OTA_TOPIC_PREFIX}/+/attest/quote` };

export const ATTEST_NONCE_BYTES = 16;
/** Quote message cap: TPMS_ATTEST (~150 B), signature, PCR values and the event log (a handful of lines). */
export const ATTEST_MAX_QUOTE_BYTES = 32 * 1024;
export const ATTEST_MAX_EVENT_LOG_CHARS = 16 * 1024;

const hex = (n?: number) => z.string().regex(n ? new RegExp(`^[0-9a-f]{${2 * n}}$`) : /^([0-9a-f]{2})+$/);
const b64 = z.string().regex(/^[A-Za-z0-9+/]*=*$/).max(4096);

export const ReleaseClaim = z.object({
  /** The release version the vehicle believes it booted (installed bundle's manifest); null when unknown. */
  version: z.number().int().positive().nullable(),
  /** Measured boot check of this boot: 'approved' (evcc boot passed) or 'degraded' with the refusal code. */
  mode: z.enum(['approved', 'degraded']),
  reason: z.string().max(64).optional(),
}).strict();
export type ReleaseClaim = z.infer<typeof ReleaseClaim>;

export const AttestationHello = z.object({ v: z.literal(1), type: z.literal('attest.hello'), release: ReleaseClaim }).strict();
export const AttestationChallenge = z.object({
  v: z.literal(1), type: z.literal('attest.challenge'), challengeId: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  nonce: hex(ATTEST_NONCE_BYTES), pcrs: z.array(z.number().int().min(0).max(23)).min(1).max(24), expiresAt: z.string().max(40),
}).strict();
export type AttestationChallenge = z.infer<typeof AttestationChallenge>;
export const AttestationQuote = z.object({
  v: z.literal(1), type: z.literal('attest.quote'), challengeId: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/), nonce: hex(ATTEST_NONCE_BYTES),
  attest: b64, signature: b64, pcrs: z.array(z.object({ index: z.number().int().min(0).max(23), value: hex(32) }).strict()).min(1).max(24),
  eventLog: z.string().max(ATTEST_MAX_EVENT_LOG_CHARS), release: ReleaseClaim,
}).strict();
export type AttestationQuote = z.infer<typeof AttestationQuote>;

export function decodeAttestation<S extends z.ZodType>(schema: S, payload: Uint8Array, maxBytes: number): z.infer<S> {
  if (payload.byteLength > maxBytes) throw new EvccError('ATTEST_MESSAGE_MALFORMED', `attestation message of ${payload.byteLength} bytes exceeds ${maxBytes}`);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch (err) {
    throw new EvccError('ATTEST_MESSAGE_MALFORMED', 'attestation message is not JSON', {}, { cause: err });
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new EvccError('ATTEST_MESSAGE_MALFORMED', `attestation message malformed: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

// ---- TPMS_ATTEST of a quote (TPM 2.0 Part 2 §10.12) ---------------------------------------------------------------

export const TPM_GENERATED_VALUE = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;
const TPM_ALG_SHA256 = 0x000b;

export interface QuoteInfo {
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
  firmwareVersion: bigint;
  /** sha256-bank PCR indices selected (other banks make the quote malformed here). */
  pcrs: number[];
  pcrDigest: Uint8Array;
}

/** Parses a quote's TPMS_ATTEST; every overrun or foreign structure is ATTEST_QUOTE_MALFORMED. */
export function parseQuoteAttest(attest: Uint8Array): QuoteInfo {
  const b = Buffer.from(attest);
  let at = 0;
  const bad = (why: string) => new EvccError('ATTEST_QUOTE_MALFORMED', `quote structure malformed: ${why}`, { offset: at });
  const need = (n: number) => {
    if (at + n > b.length) throw bad('truncated');
  };
  const u8 = () => (need(1), b.readUInt8(at++));
  const u16 = () => (need(2), (at += 2), b.readUInt16BE(at - 2));
  const u32 = () => (need(4), (at += 4), b.readUInt32BE(at - 4));
  const u64 = () => (need(8), (at += 8), b.readBigUInt64BE(at - 8));
  const sized = () => {
    const n = u16();
    need(n);
    at += n;
    return new Uint8Array(b.subarray(at - n, at));
  };
  if (u32() !== TPM_GENERATED_VALUE) throw bad('not TPM_GENERATED_VALUE');
  if (u16() !== TPM_ST_ATTEST_QUOTE) throw bad('not a quote (TPM_ST_ATTEST_QUOTE)');
  const qualifiedSigner = sized();
  const extraData = sized();
  const clock = u64();
  const resetCount = u32();
  const restartCount = u32();
  const safe = u8() === 1;
  const firmwareVersion = u64();
  const count = u32();
  if (count !== 1) throw bad(`${count} PCR banks selected (expected sha256 only)`);
  if (u16() !== TPM_ALG_SHA256) throw bad('PCR bank is not sha256');
  const size = u8();
  if (size < 3 || size > 4) throw bad('PCR select size');
  const pcrs: number[] = [];
  for (let i = 0; i < size; i++) {
    const byte = u8();
    for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) pcrs.push(i * 8 + bit);
  }
  const pcrDigest = sized();
  if (at !== b.length) throw bad('trailing bytes');
  return { qualifiedSigner, extraData, clock, resetCount, restartCount, safe, firmwareVersion, pcrs, pcrDigest };
}

/** The quote's pcrDigest for these values (ascending index): SHA-256 of their concatenation. */
export function pcrDigestOf(values: readonly Uint8Array[]): Uint8Array {
  const h = createHash('sha256');
  for (const v of values) h.update(v);
  return new Uint8Array(h.digest());
}

// ---- vehicle side -----------------------------------------------------------------------------------------------

/** What the responder needs from the vehicle: the TPM's quote, the boot's event log, the release claim. */
export interface AttestationPorts {
  quote(nonce: Uint8Array, pcrs: number[]): Promise<{ attest: Uint8Array; signature: Uint8Array; pcrs: { index: number; value: Uint8Array }[] }>;
  /** The initramfs hook's event log text ('' when missing: the backend then sees what PCR 14 says without it). */
  eventLog(): Promise<string>;
  release(): Promise<ReleaseClaim>;
}

/**
 * The vehicle half: on every connect of the OEM link it subscribes its challenge topic and says hello (the backend
 * challenges after every boot that way), then answers each challenge with a quote. Runs in approved and degraded
 * states alike — the link credential does not depend on the state (firmware/keys/link-credential.ts).
 */
export class AttestationResponder {
  private readonly detach: (() => void)[] = [];
  private readonly topics: ReturnType<typeof attestationTopics>;
  /** Answers sent (for tests and the bench). */
  answered = 0;

  /** `events`: the security log (firmware/log/security-log.ts), one `attestation.answer` entry per answered challenge. */
  constructor(private readonly o: { client: MqttClient; vehicleId: string; ports: AttestationPorts; log: Logger; events?: SecurityEvents }) {
    this.topics = attestationTopics(o.vehicleId);
  }

  start(): void {
    const { client } = this.o;
    this.detach.push(client.onMessage((m) => void this.onMessage(m)));
    this.detach.push(client.onStatus((s) => {
      if (s === 'connected') void this.hello();
    }));
    if (client.status === 'connected') void this.hello();
  }

  private async hello(): Promise<void> {
    const { client, log } = this.o;
    try {
      const granted = await client.subscribe([this.topics.challenge], 1);
      if (granted.some((g) => g >= 0x80)) throw new EvccError('ATTEST_MESSAGE_MALFORMED', 'broker refused the attestation challenge subscription');
      const release = await this.o.ports.release();
      await client.publish(this.topics.hello, JSON.stringify({ v: 1, type: 'attest.hello', release }), { qos: 1 });
      log.info({ version: release.version, mode: release.mode, cp: 'OTA-ATTEST-HELLO' }, `attestation hello sent (release ${release.version ?? 'unknown'}, ${release.mode})`);
    } catch (err) {
      log.warn({ code: isEvccError(err) ? err.code : 'INTERNAL', cp: 'OTA-ATTEST-HELLO-FAILED' }, `attestation hello not sent: ${(err as Error).message}`);
    }
  }

  private async onMessage(m: MqttMessage): Promise<void> {
    if (m.topic !== this.topics.challenge || m.retain) return;
    const { log } = this.o;
    try {
      const c = decodeAttestation(AttestationChallenge, m.payload, 4096);
      const q = await this.o.ports.quote(Buffer.from(c.nonce, 'hex'), c.pcrs);
      const [eventLog, release] = await Promise.all([this.o.ports.eventLog(), this.o.ports.release()]);
      const answer = {
        v: 1, type: 'attest.quote', challengeId: c.challengeId, nonce: c.nonce,
        attest: Buffer.from(q.attest).toString('base64'), signature: Buffer.from(q.signature).toString('base64'),
        pcrs: q.pcrs.map((p) => ({ index: p.index, value: Buffer.from(p.value).toString('hex') })),
        eventLog: eventLog.slice(0, ATTEST_MAX_EVENT_LOG_CHARS), release,
      };
      await this.o.client.publish(this.topics.quote, JSON.stringify(answer), { qos: 1 });
      this.answered++;
      log.info({ challengeId: c.challengeId, pcrs: c.pcrs, cp: 'OTA-ATTEST-QUOTED' }, 'attestation challenge answered with a TPM quote');
      await this.o.events?.record('attestation.answer', { challengeId: c.challengeId, nonce: c.nonce, pcrs: answer.pcrs, release: release.version ?? null, mode: release.mode });
    } catch (err) {
      log.warn({ code: isEvccError(err) ? err.code : 'INTERNAL', cp: 'OTA-ATTEST-FAILED' }, `attestation challenge not answered: ${(err as Error).message}`);
    }
  }

  stop(): void {
    for (const d of this.detach.splice(0)) d();
  }
}
