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
  checkVersion(bytes);
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

function checkVersion(bytes: Uint8Array): void {
  if (bytes[0] !== V2GTP_VERSION || bytes[1] !== V2GTP_INVERSE_VERSION) {
    throw new EvccError<V2gtpErrorCode>('V2GTP_BAD_VERSION', `V2GTP version bytes ${hex2(bytes[0]!)} ${hex2(bytes[1]!)}, expected 01 FE`);
  }
}

/** Decodes exactly one datagram (SDP): header plus a payload of exactly the announced length. */
export function decodeDatagram(bytes: Uint8Array, o: HeaderCheckOptions = {}): V2gtpMessage {
  const { payloadType, length } = decodeHeader(bytes, o);
  if (bytes.length !== V2GTP_HEADER_LENGTH + length) {
    throw new EvccError<V2gtpErrorCode>('V2GTP_LENGTH_MISMATCH', `datagram of ${bytes.length} bytes announces ${length} payload bytes`, { bytes: bytes.length, length });
  }
  return { payloadType, payload: bytes.slice(V2GTP_HEADER_LENGTH) };
}

/** The payload buffer's first size when a message announces more; it doubles from there towards the announced length. */
const INITIAL_PAYLOAD_CAPACITY = 4096;

/**
 * Reassembles V2GTP messages from a byte stream (TCP/TLS) fed in arbitrary pieces. After the first error the
 * stream is unusable (the framing is lost): `push` keeps throwing the same error.
 *
 * Linear in the stream length however it is cut: each header byte is copied once into an 8-byte header buffer,
 * each payload byte into the message's own buffer, which grows by doubling (so a header that claims the cap costs
 * memory only as its bytes arrive) and is handed out as the payload once full. `copiedBytes` counts this work.
 */
export class V2gtpReassembler {
  private readonly header = new Uint8Array(V2GTP_HEADER_LENGTH);
  private headerFill = 0;
  /** The message whose header has been accepted and whose payload is arriving. */
  private incoming: { payloadType: number; length: number; buf: Uint8Array; fill: number } | undefined;
  private broken: EvccError | undefined;
  private copied = 0;

  constructor(private readonly o: HeaderCheckOptions = {}) {}

  /** Bytes held while waiting for the rest of a message. */
  get buffered(): number {
    return this.incoming ? V2GTP_HEADER_LENGTH + this.incoming.fill : this.headerFill;
  }

  /**
   * Bytes copied since construction, buffer growth included: at most 3 × the bytes pushed (each byte once, plus
   * the doubling's re-copies, which sum to less than twice the payload). A work counter for tests and the bench.
   */
  get copiedBytes(): number {
    return this.copied;
  }

  push(chunk: Uint8Array): V2gtpMessage[] {
    if (this.broken) throw this.broken;
    const out: V2gtpMessage[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (!this.incoming) {
        const n = Math.min(V2GTP_HEADER_LENGTH - this.headerFill, chunk.length - off);
        this.header.set(chunk.subarray(off, off + n), this.headerFill);
        this.headerFill += n;
        this.copied += n;
        off += n;
        // Checked as soon as they arrive: a peer speaking something else (a TLS record on a plain socket, a
        // 7-byte TLS alert) fails at once instead of waiting for an eighth byte. The rest of the header is
        // checked when complete, so a bad length is refused before buffering its payload.
        if (this.headerFill >= 2) this.checked(() => checkVersion(this.header));
        if (this.headerFill < V2GTP_HEADER_LENGTH) break;
        this.headerFill = 0;
        const { payloadType, length } = this.checked(() => decodeHeader(this.header, this.o));
        this.incoming = { payloadType, length, buf: new Uint8Array(Math.min(length, INITIAL_PAYLOAD_CAPACITY)), fill: 0 };
      }
      const m = this.incoming;
      const n = Math.min(m.length - m.fill, chunk.length - off);
      if (m.fill + n > m.buf.length) m.buf = this.grow(m.buf, m.fill, Math.min(m.length, Math.max(2 * m.buf.length, m.fill + n)));
      m.buf.set(chunk.subarray(off, off + n), m.fill);
      m.fill += n;
      this.copied += n;
      off += n;
      if (m.fill === m.length) {
        out.push({ payloadType: m.payloadType, payload: m.buf });
        this.incoming = undefined;
      }
    }
    return out;
  }

  /** Runs a header check; its error breaks the stream for good. */
  private checked<T>(check: () => T): T {
    try {
      return check();
    } catch (err) {
      this.broken = err as EvccError;
      this.headerFill = 0;
      throw err;
    }
  }

  private grow(buf: Uint8Array, fill: number, capacity: number): Uint8Array {
    const bigger = new Uint8Array(capacity);
    bigger.set(buf.subarray(0, fill));
    this.copied += fill;
    return bigger;
  }
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0').toUpperCase();
}
