/**
 * The decoded message log (`messages.jsonl`, one JSON object per V2G message) and the session event stream the
 * live dashboard subscribes to. Pure: the composition root hands in the session driver's MessageRecord and the
 * calendar time.
 *
 * Event stream (for the dashboard and any other live consumer; `SessionEventHub.subscribe`):
 *   { type: 'session-start', id, dir?, time }          a session folder opened (dir absent: capture off)
 *   { type: 'message', record: MessageLogRecord }      every V2G message as it crosses, in order
 *   { type: 'session-end', id, time, ok, code? }       the session ended (report written)
 */
import { parseHex, toHex } from '../../core/bytes.ts';
import { decodeAny, type SchemaId } from '../exi/index.ts';
import type { MessageRecord } from '../session/driver.ts';

export interface MessageLogRecord {
  /** 1, 2, … within the session. */
  seq: number;
  /** Calendar time (ISO 8601, ms). */
  time: string;
  /** 'tx' EV → SECC, 'rx' SECC → EV. */
  direction: 'tx' | 'rx';
  /** EXI grammar: appHandshake, iso2, din, … */
  protocol: string;
  /** Message name: supportedAppProtocolReq, SessionSetupReq, CurrentDemandRes, … */
  message: string;
  /** The EXI stream (V2GTP payload) as hex: exactly the bytes after the 8-byte V2GTP header on the wire. */
  exi: string;
  /** The decoded form (bigints as decimal strings, bytes as hex). */
  decoded: unknown;
  /** Responses: request sent → response received, ms. */
  rttMs?: number;
}

/** JSON-safe copy of a decoded document: bigint → decimal string, bytes → hex. */
export function jsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return toHex(v);
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = jsonSafe(x);
    return out;
  }
  return v;
}

/**
 * The engine hands over the document it worked with; where that is a summary rather than the message (the
 * SupportedAppProtocol exchange), the log carries the EXI decoded here, so `decoded` is always the wire message.
 */
function decodedForm(r: MessageRecord): unknown {
  const doc = r.document as Record<string, unknown> | undefined;
  const whole = doc && typeof doc === 'object' && (('V2G_Message' in doc) || r.name in doc);
  if (whole) return jsonSafe(doc);
  if (doc && typeof doc === 'object' && 'Header' in doc && 'Body' in doc) return jsonSafe({ V2G_Message: doc });
  try {
    return jsonSafe(decodeAny(r.schema as SchemaId, parseHex(r.hex) ?? new Uint8Array(0)));
  } catch {
    return jsonSafe(r.document);
  }
}

export function messageLogRecord(r: MessageRecord, seq: number, wallMs: number): MessageLogRecord {
  return {
    seq, time: new Date(wallMs).toISOString(), direction: r.direction, protocol: r.schema, message: r.name, exi: r.hex,
    decoded: decodedForm(r), ...(r.rttMs !== undefined ? { rttMs: Math.round(r.rttMs * 10) / 10 } : {}),
  };
}

export type SessionEvent =
  | { type: 'session-start'; id: string; dir?: string; time: string }
  | { type: 'message'; record: MessageLogRecord }
  | { type: 'session-end'; id: string; time: string; ok: boolean; code?: string };

/** Fan-out of session events; a throwing subscriber is dropped, never the session. */
export class SessionEventHub {
  private readonly listeners = new Set<(e: SessionEvent) => void>();

  subscribe(listener: (e: SessionEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(e: SessionEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        this.listeners.delete(l);
      }
    }
  }
}
