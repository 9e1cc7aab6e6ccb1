/**
 * The few pieces of the TLS record layer (RFC 5246 §6.2, RFC 8446 §5) the handshake guard needs: cutting a byte
 * stream into records, recognising the client's handshake messages, and building alert records — in clear for
 * TLS 1.2 (before our ChangeCipherSpec no cipher is active) and, for TLS 1.3, encrypted under the client handshake
 * traffic secret (the key the server expects our next flight under).
 */
import { createCipheriv, createHmac } from 'node:crypto';
import type { TlsAlertName } from './types.ts';

export const RECORD_CHANGE_CIPHER_SPEC = 20;
export const RECORD_ALERT = 21;
export const RECORD_HANDSHAKE = 22;
export const RECORD_APPLICATION_DATA = 23;

export const HANDSHAKE_CLIENT_HELLO = 1;
export const HANDSHAKE_CERTIFICATE = 11;

/** Alert descriptions we send or report (RFC 5246 §7.2, RFC 8446 §6). */
export const TLS_ALERTS: Readonly<Record<TlsAlertName, number>> = {
  close_notify: 0,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_revoked: 44,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  access_denied: 49,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  user_canceled: 90,
  certificate_required: 116,
};

/** Name of an alert number as TLS defines it, or `alert_<n>` for one outside our table. */
export function alertName(n: number): string {
  const hit = (Object.entries(TLS_ALERTS) as [TlsAlertName, number][]).find(([, v]) => v === n);
  return hit ? hit[0] : `alert_${n}`;
}

export interface TlsRecord {
  type: number;
  /** The whole record: 5-byte header + fragment. */
  bytes: Uint8Array;
  fragment: Uint8Array;
}

/** Maximum TLSCiphertext fragment (2^14 + 2048, RFC 5246 §6.2.3); a longer length field is not TLS. */
const MAX_FRAGMENT = 16384 + 2048;

/**
 * Incremental record splitter: `push` bytes as they come, get every complete record back. A length field beyond
 * the TLS maximum throws (the stream is not TLS; the caller stops inspecting).
 */
export class RecordSplitter {
  private buf = new Uint8Array(0);

  push(chunk: Uint8Array): TlsRecord[] {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf, 0);
    joined.set(chunk, this.buf.length);
    const out: TlsRecord[] = [];
    let off = 0;
    while (joined.length - off >= 5) {
      const len = (joined[off + 3]! << 8) | joined[off + 4]!;
      if (len > MAX_FRAGMENT) throw new Error(`TLS record length ${len} exceeds the maximum`);
      if (joined.length - off < 5 + len) break;
      const bytes = joined.slice(off, off + 5 + len);
      out.push({ type: bytes[0]!, bytes, fragment: bytes.subarray(5) });
      off += 5 + len;
    }
    this.buf = joined.slice(off);
    return out;
  }

  /** Bytes of an incomplete record still waiting for the rest. */
  remainder(): Uint8Array {
    return this.buf;
  }
}

/** Handshake type of the first message in a plaintext handshake record (undefined for anything else). */
export function firstHandshakeType(r: TlsRecord): number | undefined {
  return r.type === RECORD_HANDSHAKE && r.fragment.length > 0 ? r.fragment[0] : undefined;
}

/** A plaintext alert record (TLS 1.2 before our ChangeCipherSpec; record version 1.2). */
export function plaintextAlert(description: number, level: 1 | 2 = 2): Uint8Array {
  return Uint8Array.from([RECORD_ALERT, 0x03, 0x03, 0x00, 0x02, level, description]);
}

/** TLS 1.3 AEAD parameters by suite (RFC 8446 §B.4). */
const TLS13_SUITES: Record<string, { cipher: string; hash: 'sha256' | 'sha384'; keyLength: number }> = {
  TLS_AES_128_GCM_SHA256: { cipher: 'aes-128-gcm', hash: 'sha256', keyLength: 16 },
  TLS_AES_256_GCM_SHA384: { cipher: 'aes-256-gcm', hash: 'sha384', keyLength: 32 },
  TLS_CHACHA20_POLY1305_SHA256: { cipher: 'chacha20-poly1305', hash: 'sha256', keyLength: 32 },
};

export function isTls13Suite(suite: string): boolean {
  return suite in TLS13_SUITES;
}

/** HKDF-Expand-Label (RFC 8446 §7.1) for outputs up to one hash length (all we need: key and iv). */
export function hkdfExpandLabel(hash: 'sha256' | 'sha384', secret: Uint8Array, label: string, context: Uint8Array, length: number): Uint8Array {
  const fullLabel = Buffer.from(`tls13 ${label}`, 'ascii');
  const info = Buffer.concat([
    Buffer.from([length >> 8, length & 0xff, fullLabel.length]), fullLabel, Buffer.from([context.length]), context,
  ]);
  const t1 = createHmac(hash, secret).update(info).update(Buffer.from([1])).digest();
  if (length > t1.length) throw new Error('hkdfExpandLabel: output longer than one hash block');
  return new Uint8Array(t1.subarray(0, length));
}

/** Traffic key and IV from a TLS 1.3 traffic secret (RFC 8446 §7.3). */
export function trafficKeys(suite: string, secret: Uint8Array): { cipher: string; key: Uint8Array; iv: Uint8Array } {
  const p = TLS13_SUITES[suite];
  if (!p) throw new Error(`no TLS 1.3 AEAD parameters for ${suite}`);
  return {
    cipher: p.cipher,
    key: hkdfExpandLabel(p.hash, secret, 'key', new Uint8Array(0), p.keyLength),
    iv: hkdfExpandLabel(p.hash, secret, 'iv', new Uint8Array(0), 12),
  };
}

/** Per-record nonce: the IV XOR the 64-bit sequence number, left-padded (RFC 8446 §5.3). */
export function recordNonce(iv: Uint8Array, seq: number): Buffer {
  const nonce = Buffer.from(iv);
  let s = BigInt(seq);
  for (let i = nonce.length - 1; i >= nonce.length - 8; i--) {
    nonce[i]! ^= Number(s & 0xffn);
    s >>= 8n;
  }
  return nonce;
}

/**
 * One TLS 1.3 record protected under `secret` (RFC 8446 §5.2): the inner plaintext is `content || type`
 * (no padding), the outer type is application_data.
 */
export function protectTls13Record(suite: string, secret: Uint8Array, seq: number, innerType: number, content: Uint8Array): Uint8Array {
  const { cipher, key, iv } = trafficKeys(suite, secret);
  const inner = Buffer.concat([content, Buffer.from([innerType])]);
  const length = inner.length + 16;
  const header = Buffer.from([RECORD_APPLICATION_DATA, 0x03, 0x03, length >> 8, length & 0xff]);
  const aead = createCipheriv(cipher as 'aes-128-gcm', key, recordNonce(iv, seq), { authTagLength: 16 });
  aead.setAAD(header);
  const body = Buffer.concat([aead.update(inner), aead.final(), aead.getAuthTag()]);
  return new Uint8Array(Buffer.concat([header, body]));
}

/** Alert records encrypted under the TLS 1.3 client handshake traffic secret, sequence numbers from `firstSeq`. */
export function tls13Alerts(suite: string, secret: Uint8Array, alerts: readonly { level: 1 | 2; description: number }[], firstSeq = 0): Uint8Array {
  const records = alerts.map((a, i) => protectTls13Record(suite, secret, firstSeq + i, RECORD_ALERT, Uint8Array.from([a.level, a.description])));
  return new Uint8Array(Buffer.concat(records));
}
