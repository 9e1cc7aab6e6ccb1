/**
 * SECCDiscoveryReq / SECCDiscoveryRes codec (V2GTP payload types 0x9000 / 0x9001). Decoding validates every field
 * and answers junk with a typed `SDP_*` error (the client ignores such datagrams; it never throws them out).
 */
import { EvccError } from '../../core/errors.ts';
import { PayloadType } from '../v2gtp/constants.ts';
import { decodeDatagram, encodeV2gtp } from '../v2gtp/codec.ts';
import { SDP_REQUEST_PAYLOAD_LENGTH, SDP_RESPONSE_PAYLOAD_LENGTH, SdpSecurity, SdpTransport } from './constants.ts';

export type SdpErrorCode =
  | 'SDP_MALFORMED' // not a V2GTP datagram of the expected type and exact length
  | 'SDP_BAD_FIELD' // a field outside its allowed values
  | 'SDP_NO_RESPONSE' // SDP_MAX_REQUESTS unanswered
  | 'SDP_TLS_REQUIRED'; // the SECC offers no TLS while policy requires it (PnC)

export interface SeccDiscoveryReq {
  security: 'tls' | 'none';
  transport: 'tcp';
}

export interface SeccDiscoveryRes {
  /** SECC IPv6 address, canonical lower-case text without scope. */
  address: string;
  port: number;
  security: 'tls' | 'none';
  transport: 'tcp';
}

const securityByte = (s: 'tls' | 'none'): number => (s === 'tls' ? SdpSecurity.TLS : SdpSecurity.NO_TLS);

export function encodeDiscoveryReq(req: SeccDiscoveryReq): Uint8Array {
  return encodeV2gtp(PayloadType.SDP_REQUEST, Uint8Array.from([securityByte(req.security), SdpTransport.TCP]));
}

export function encodeDiscoveryRes(res: SeccDiscoveryRes): Uint8Array {
  const p = new Uint8Array(SDP_RESPONSE_PAYLOAD_LENGTH);
  p.set(ipv6ToBytes(res.address), 0);
  new DataView(p.buffer).setUint16(16, res.port);
  p[18] = securityByte(res.security);
  p[19] = SdpTransport.TCP;
  return encodeV2gtp(PayloadType.SDP_RESPONSE, p);
}

function parseSecurity(b: number): 'tls' | 'none' {
  if (b === SdpSecurity.TLS) return 'tls';
  if (b === SdpSecurity.NO_TLS) return 'none';
  throw new EvccError<SdpErrorCode>('SDP_BAD_FIELD', `Security 0x${b.toString(16)} is neither TLS (0x00) nor no-TLS (0x10)`, { field: 'Security', value: b });
}

function datagram(bytes: Uint8Array, type: number, length: number) {
  try {
    const m = decodeDatagram(bytes, { accept: [type], maxPayload: length });
    if (m.payload.length !== length) throw new EvccError('V2GTP_LENGTH_MISMATCH', `payload ${m.payload.length} bytes, expected ${length}`);
    return m.payload;
  } catch (err) {
    throw new EvccError<SdpErrorCode>('SDP_MALFORMED', `not a valid SDP datagram: ${(err as Error).message}`, { reason: (err as EvccError).code ?? 'unknown', bytes: bytes.length }, { cause: err });
  }
}

export function decodeDiscoveryReq(bytes: Uint8Array): SeccDiscoveryReq {
  const p = datagram(bytes, PayloadType.SDP_REQUEST, SDP_REQUEST_PAYLOAD_LENGTH);
  const security = parseSecurity(p[0]!);
  if (p[1] !== SdpTransport.TCP) throw new EvccError<SdpErrorCode>('SDP_BAD_FIELD', `TransportProtocol 0x${p[1]!.toString(16)} is not TCP`, { field: 'TransportProtocol', value: p[1] });
  return { security, transport: 'tcp' };
}

/** Decodes a response; field semantics (address class, port range, policy) are checked by the client. */
export function decodeDiscoveryRes(bytes: Uint8Array): SeccDiscoveryRes {
  const p = datagram(bytes, PayloadType.SDP_RESPONSE, SDP_RESPONSE_PAYLOAD_LENGTH);
  const address = bytesToIpv6(p.subarray(0, 16));
  const port = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint16(16);
  const security = parseSecurity(p[18]!);
  if (p[19] !== SdpTransport.TCP) throw new EvccError<SdpErrorCode>('SDP_BAD_FIELD', `TransportProtocol 0x${p[19]!.toString(16)} is not TCP`, { field: 'TransportProtocol', value: p[19] });
  return { address, port, security, transport: 'tcp' };
}

/** 16 bytes → RFC 5952 text (lower case, longest zero run compressed). */
export function bytesToIpv6(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.len < 2) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

/** IPv6 text (no scope, no embedded IPv4) → 16 bytes. */
export function ipv6ToBytes(text: string): Uint8Array {
  const bad = (): never => { throw new EvccError<SdpErrorCode>('SDP_BAD_FIELD', `not an IPv6 address: ${text}`, { value: text }); };
  const s = text.split('%')[0]!.toLowerCase();
  if (!/^[0-9a-f:]+$/.test(s) || s.split('::').length > 2) bad();
  const [head, tail] = s.includes('::') ? s.split('::') as [string, string] : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = 8 - h.length - t.length;
  if ((tail === undefined && fill !== 0) || (tail !== undefined && fill < 1)) bad();
  const groups = [...h, ...Array<string>(tail === undefined ? 0 : fill).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    if (!/^[0-9a-f]{1,4}$/.test(g)) bad();
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}
