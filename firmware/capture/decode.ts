/**
 * The V2G messages of a captured connection, decoded from its byte streams (TLS already decrypted by the reader):
 * V2GTP framing, then EXI with the schema SupportedAppProtocol negotiated. Pure: bytes and times in, messages out.
 */
import { parseHex, toHex } from '../../core/bytes.ts';
import { decodeAny, type SchemaId } from '../exi/index.ts';
import { decodeV2gtpPayload, schemaForNamespace } from '../exi/v2gtp.ts';
import { decodeHeader } from '../v2gtp/codec.ts';
import { jsonSafe } from './records.ts';

export interface TimedBytes {
  atUs: bigint;
  bytes: Uint8Array;
}

/** The connection shape the decoder needs (hal/capture/read-session.ts CapturedConnection fits it). */
export interface ConnectionStreams {
  clientData: readonly TimedBytes[];
  serverData: readonly TimedBytes[];
}

export interface CapturedV2gMessage {
  atUs: bigint;
  direction: 'tx' | 'rx';
  payloadType: number;
  /** The whole V2GTP message (header + payload), as on the wire inside TLS/TCP. */
  v2gtp: Uint8Array;
  /** The EXI payload, hex. */
  exi: string;
  schema?: string;
  name: string;
  decoded?: unknown;
  responseCode?: string;
  /** Requests: the response's arrival minus this, ms; responses: the same value. */
  rttMs?: number;
  error?: string;
}

/** V2GTP messages of one direction, reassembled across chunks; the chunk that completes a message dates it. */
export function v2gtpFrames(chunks: readonly TimedBytes[]): { atUs: bigint; payloadType: number; frame: Uint8Array; error?: string }[] {
  const out: { atUs: bigint; payloadType: number; frame: Uint8Array; error?: string }[] = [];
  let buf = new Uint8Array(0);
  for (const c of chunks) {
    const joined = new Uint8Array(buf.length + c.bytes.length);
    joined.set(buf);
    joined.set(c.bytes, buf.length);
    buf = joined;
    while (buf.length >= 8) {
      let h: { payloadType: number; length: number };
      try {
        h = decodeHeader(buf.subarray(0, 8), { maxPayload: 1 << 20 });
      } catch (err) {
        out.push({ atUs: c.atUs, payloadType: 0, frame: buf, error: (err as Error).message });
        return out;
      }
      if (buf.length < 8 + h.length) break;
      out.push({ atUs: c.atUs, payloadType: h.payloadType, frame: buf.slice(0, 8 + h.length) });
      buf = buf.slice(8 + h.length);
    }
  }
  return out;
}

function nameOf(schema: string, message: Record<string, unknown>): { name: string; responseCode?: string } {
  const root = Object.keys(message)[0] ?? '?';
  if (schema === 'appHandshake') {
    const body = message[root] as Record<string, unknown> | undefined;
    const rc = body?.ResponseCode;
    return { name: root, ...(typeof rc === 'string' ? { responseCode: rc } : {}) };
  }
  const v2g = message.V2G_Message as { Body?: Record<string, unknown> } | undefined;
  const bodyName = v2g?.Body ? Object.keys(v2g.Body)[0] : undefined;
  const body = bodyName ? (v2g!.Body![bodyName] as Record<string, unknown> | undefined) : undefined;
  const rc = body?.ResponseCode;
  return { name: bodyName ?? root, ...(typeof rc === 'string' ? { responseCode: rc } : {}) };
}

/**
 * Decodes every V2G message of a connection in time order. The schema after the handshake is the one the
 * SupportedAppProtocolRes selected (by SchemaID among the request's AppProtocol entries).
 */
export function decodeConnection(conn: ConnectionStreams): CapturedV2gMessage[] {
  const frames = [
    ...v2gtpFrames(conn.clientData).map((f) => ({ ...f, direction: 'tx' as const })),
    ...v2gtpFrames(conn.serverData).map((f) => ({ ...f, direction: 'rx' as const })),
  ].sort((a, b) => (a.atUs < b.atUs ? -1 : a.atUs > b.atUs ? 1 : a.direction === 'tx' ? -1 : 1));
  const out: CapturedV2gMessage[] = [];
  let offered: { ProtocolNamespace: string; SchemaID: number }[] = [];
  let negotiated: SchemaId | undefined;
  let pending: CapturedV2gMessage | undefined;
  for (const f of frames) {
    const payload = f.frame.subarray(8);
    const m: CapturedV2gMessage = { atUs: f.atUs, direction: f.direction, payloadType: f.payloadType, v2gtp: f.frame, exi: toHex(payload), name: '(undecoded)' };
    if (f.error) {
      m.error = `V2GTP: ${f.error}`;
      out.push(m);
      continue;
    }
    try {
      const d = decodeV2gtpPayload(f.payloadType, payload, negotiated);
      const message = d.message as Record<string, unknown>;
      const n = nameOf(d.schema, message);
      m.schema = d.schema;
      m.name = n.name;
      m.decoded = jsonSafe(message);
      if (n.responseCode) m.responseCode = n.responseCode;
      if (n.name === 'supportedAppProtocolReq') {
        const req = message.supportedAppProtocolReq as { AppProtocol?: { ProtocolNamespace: string; SchemaID: number }[] };
        offered = req.AppProtocol ?? [];
      } else if (n.name === 'supportedAppProtocolRes') {
        const res = message.supportedAppProtocolRes as { SchemaID?: number };
        const chosen = offered.find((p) => p.SchemaID === res.SchemaID);
        negotiated = chosen ? schemaForNamespace(chosen.ProtocolNamespace) : undefined;
      }
    } catch (err) {
      m.error = `EXI: ${(err as Error).message}`;
    }
    if (m.direction === 'tx') pending = m;
    else if (pending) {
      const rtt = Number(m.atUs - pending.atUs) / 1000;
      pending.rttMs = rtt;
      m.rttMs = rtt;
      pending = undefined;
    }
    out.push(m);
  }
  return out;
}

/** Decodes one EXI payload of a known schema (the message log's form), for tests and tools. */
export function decodeExiHex(schema: SchemaId, hex: string): unknown {
  return jsonSafe(decodeAny(schema, parseHex(hex) ?? new Uint8Array(0)));
}
