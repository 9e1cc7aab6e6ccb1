/**
 * V2GTP header codec and stream reassembly. Strict on what we accept: version 0x01 / 0xFE only,
 * known payload types only, length within the cap; every failure is a typed V2GTP_* error, never a raw throw.
 */
import { EvccError } from '../../core/errors.ts';
import { DEFAULT_MAX_PAYLOAD, PayloadType, V2GTP_HEADER_LENGTH, V2GTP_INVERSE_VERSION, V2GTP_VERSION } from './constants.ts';

export type V2gtpErrorCode = 'V2GTP_BAD_VERSION' | 'V2GTP_UNKNOWN_PAYLOAD_TYPE' | 'V2GTP_PAYLOAD_TOO_LARGE' | 'V2GTP_TRUNCATED' | 'V2GTP_LENGTH_MISMATCH';

export interface V2gtpMessage {
  payloadType: number;
  payload: Uint8Array;
}

const KNOWN_TYPES = new Set<number>(Object.values(PayloadType));

export function encodeV2gtp(payloadType: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(V2GTP_HEADER_LENGTH + payload.length);
  const dv = new DataView(out.buffer);
  out[0] = V2GTP_VERSION;
  out[1] = V2GTP_INVERSE_VERSION;
  dv.setUint16(2, payloadType);
  dv.setUint32(4, payload.length);
  out.set(payload, V2GTP_HEADER_LENGTH);
  return out;
}

export interface HeaderCheckOptions {
  maxPayload?: number;
  /** Restrict to these payload types (e.g. only SDP_RESPONSE on the SDP socket). */
  accept?: readonly number[];
}

/** Parses and checks an 8-byte header. */
export function decodeHeader(bytes: Uint8Array, o: HeaderCheckOptions = {}): { payloadType: number; length: number } {
  if (bytes.length < V2GTP_HEADER_LENGTH) throw new EvccError<V2gtpErrorCode>('V2GTP_TRUNCATED', `V2GTP header needs 8 bytes, got ${bytes.length}`);
  if (bytes[0] !== V2GTP_VERSION || bytes[1] !== V2GTP_INVERSE_VERSION) {
    throw new EvccError<V2gtpErrorCode>('V2GTP_BAD_VERSION', `V2GTP version bytes ${hex2(bytes[0]!)} ${hex2(bytes[1]!)}, expected 01 FE`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const payloadType = dv.getUint16(2);
  const length = dv.getUint32(4);
  const allowed = o.accept ?? [...KNOWN_TYPES];
  if (!allowed.includes(payloadType)) {
    throw new EvccError<V2gtpErrorCode>('V2GTP_UNKNOWN_PAYLOAD_TYPE', `V2GTP payload type 0x${payloadType.toString(16)} not accepted here`, { payloadType });
  }
  const max = o.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  if (length > max) throw new EvccError<V2gtpErrorCode>('V2GTP_PAYLOAD_TOO_LARGE', `V2GTP payload ${length} bytes exceeds ${max}`, { length, max });
  return { payloadType, length };
}

/** Decodes exactly one datagram (SDP): header plus a payload of exactly the announced length. */
export function decodeDatagram(bytes: Uint8Array, o: HeaderCheckOptions = {}): V2gtpMessage {
  const { payloadType, length } = decodeHeader(bytes, o);
  if (bytes.length !== V2GTP_HEADER_LENGTH + length) {
    throw new EvccError<V2gtpErrorCode>('V2GTP_LENGTH_MISMATCH', `datagram of ${bytes.length} bytes announces ${length} payload bytes`, { bytes: bytes.length, length });
  }
  return { payloadType, payload: bytes.slice(V2GTP_HEADER_LENGTH) };
}

/**
 * Reassembles V2GTP messages from a byte stream (TCP/TLS) fed in arbitrary pieces. After the first error the
 * stream is unusable (the framing is lost): `push` keeps throwing the same error.
 */
export class V2gtpReassembler {
  private buf = new Uint8Array(0);
  private broken: EvccError | undefined;

  constructor(private readonly o: HeaderCheckOptions = {}) {}

  /** Bytes held while waiting for the rest of a message. */
  get buffered(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): V2gtpMessage[] {
    if (this.broken) throw this.broken;
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf);
    joined.set(chunk, this.buf.length);
    const out: V2gtpMessage[] = [];
    let off = 0;
    try {
      while (joined.length - off >= V2GTP_HEADER_LENGTH) {
        // The header is checked as soon as it is complete, so a bad length is refused before buffering its payload.
        const { payloadType, length } = decodeHeader(joined.subarray(off, off + V2GTP_HEADER_LENGTH), this.o);
        if (joined.length - off < V2GTP_HEADER_LENGTH + length) break;
        out.push({ payloadType, payload: joined.slice(off + V2GTP_HEADER_LENGTH, off + V2GTP_HEADER_LENGTH + length) });
        off += V2GTP_HEADER_LENGTH + length;
      }
    } catch (err) {
      this.broken = err as EvccError;
      this.buf = new Uint8Array(0);
      throw err;
    }
    this.buf = joined.slice(off);
    return out;
  }
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0').toUpperCase();
}
