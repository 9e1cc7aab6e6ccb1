/**
 * Ethernet II / IPv6 / UDP / TCP packets, built (checksums per RFC 8200 §8.1 pseudo-header, RFC 768, RFC 9293) for
 * the bench capture, where the IPv6 traffic runs over a simulated link and loopback sockets and has to be
 * reconstructed, and parsed back for `evcc session show`.
 */
import { EvccError } from '../../core/errors.ts';

export const ETHERTYPE_IPV6 = 0x86dd;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

/** Text form (with `::`, without `%scope`) → 16 bytes. */
export function ipv6Bytes(address: string): Uint8Array {
  const a = address.split('%')[0]!.toLowerCase();
  const halves = a.split('::');
  if (halves.length > 2) throw new EvccError('CONFIG_INVALID', `not an IPv6 address: ${address}`);
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  const fill = 8 - head.length - tail.length;
  if ((halves.length === 1 && fill !== 0) || fill < 0) throw new EvccError('CONFIG_INVALID', `not an IPv6 address: ${address}`);
  const all = [...head, ...Array<string>(fill).fill('0'), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    if (!/^[0-9a-f]{1,4}$/.test(g)) throw new EvccError('CONFIG_INVALID', `not an IPv6 address: ${address}`);
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

export function ipv6Text(b: Uint8Array): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && g[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
  }
  if (best < 0) return g.join(':');
  return `${g.slice(0, best).join(':')}::${g.slice(best + bestLen).join(':')}`;
}

/** The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7: 33:33 + last 4 bytes). */
export function multicastMac(address: Uint8Array): Uint8Array {
  return Uint8Array.of(0x33, 0x33, address[12]!, address[13]!, address[14]!, address[15]!);
}

export function ethernetFrame(dst: Uint8Array, src: Uint8Array, ethertype: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(14 + payload.length);
  out.set(dst, 0);
  out.set(src, 6);
  out[12] = ethertype >> 8;
  out[13] = ethertype & 0xff;
  out.set(payload, 14);
  return out;
}

function checksum(src: Uint8Array, dst: Uint8Array, nextHeader: number, upper: Uint8Array): number {
  let sum = 0;
  const add16 = (b: Uint8Array, len: number) => {
    for (let i = 0; i + 1 < len; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
    if (len % 2) sum += b[len - 1]! << 8;
  };
  add16(src, 16);
  add16(dst, 16);
  sum += upper.length >>> 16;
  sum += upper.length & 0xffff;
  sum += nextHeader;
  add16(upper, upper.length);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export function ipv6Packet(src: Uint8Array, dst: Uint8Array, nextHeader: number, upper: Uint8Array, hopLimit = 64): Uint8Array {
  const out = new Uint8Array(40 + upper.length);
  out[0] = 0x60;
  out[4] = upper.length >> 8;
  out[5] = upper.length & 0xff;
  out[6] = nextHeader;
  out[7] = hopLimit;
  out.set(src, 8);
  out.set(dst, 24);
  out.set(upper, 40);
  return out;
}

export function udpDatagram(src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number, payload: Uint8Array): Uint8Array {
  const u = new Uint8Array(8 + payload.length);
  const v = new DataView(u.buffer);
  v.setUint16(0, srcPort);
  v.setUint16(2, dstPort);
  v.setUint16(4, u.length);
  u.set(payload, 8);
  const c = checksum(src, dst, IPPROTO_UDP, u);
  v.setUint16(6, c === 0 ? 0xffff : c);
  return u;
}

export interface TcpFields {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window?: number;
  /** MSS option (SYN segments). */
  mss?: number;
  payload?: Uint8Array;
}

export function tcpSegment(src: Uint8Array, dst: Uint8Array, f: TcpFields): Uint8Array {
  const opts = f.mss !== undefined ? Uint8Array.of(2, 4, f.mss >> 8, f.mss & 0xff) : new Uint8Array(0);
  const payload = f.payload ?? new Uint8Array(0);
  const headerLen = 20 + opts.length;
  const t = new Uint8Array(headerLen + payload.length);
  const v = new DataView(t.buffer);
  v.setUint16(0, f.srcPort);
  v.setUint16(2, f.dstPort);
  v.setUint32(4, f.seq >>> 0);
  v.setUint32(8, f.ack >>> 0);
  t[12] = (headerLen / 4) << 4;
  t[13] = f.flags;
  v.setUint16(14, f.window ?? 65535);
  t.set(opts, 20);
  t.set(payload, headerLen);
  v.setUint16(16, checksum(src, dst, IPPROTO_TCP, t));
  return t;
}

// ---- parsing (session show) ---------------------------------------------------------------------------------------

export interface ParsedFrame {
  dst: Uint8Array;
  src: Uint8Array;
  ethertype: number;
  payload: Uint8Array;
  ipv6?: {
    src: string;
    dst: string;
    nextHeader: number;
    udp?: { srcPort: number; dstPort: number; payload: Uint8Array };
    tcp?: { srcPort: number; dstPort: number; seq: number; ack: number; flags: number; payload: Uint8Array };
  };
}

/** Parses what it knows; anything else is left as the Ethernet payload (never throws on a short frame). */
export function parseFrame(frame: Uint8Array): ParsedFrame | undefined {
  if (frame.length < 14) return undefined;
  const ethertype = (frame[12]! << 8) | frame[13]!;
  const out: ParsedFrame = { dst: frame.subarray(0, 6), src: frame.subarray(6, 12), ethertype, payload: frame.subarray(14) };
  const p = out.payload;
  if (ethertype !== ETHERTYPE_IPV6 || p.length < 40 || p[0]! >> 4 !== 6) return out;
  const len = (p[4]! << 8) | p[5]!;
  const upper = p.subarray(40, 40 + len);
  const v = new DataView(upper.buffer, upper.byteOffset, upper.byteLength);
  const ip: NonNullable<ParsedFrame['ipv6']> = { src: ipv6Text(p.subarray(8, 24)), dst: ipv6Text(p.subarray(24, 40)), nextHeader: p[6]! };
  if (ip.nextHeader === IPPROTO_UDP && upper.length >= 8) {
    ip.udp = { srcPort: v.getUint16(0), dstPort: v.getUint16(2), payload: upper.subarray(8, Math.min(upper.length, v.getUint16(4))) };
  } else if (ip.nextHeader === IPPROTO_TCP && upper.length >= 20) {
    const off = (upper[12]! >> 4) * 4;
    ip.tcp = { srcPort: v.getUint16(0), dstPort: v.getUint16(2), seq: v.getUint32(4), ack: v.getUint32(8), flags: upper[13]!, payload: upper.subarray(Math.min(off, upper.length)) };
  }
  out.ipv6 = ip;
  return out;
}
