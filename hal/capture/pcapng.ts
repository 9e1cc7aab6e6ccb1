/**
 * pcapng (draft-ietf-opsawg-pcapng): the few block types a session capture needs — Section Header (SHB), Interface
 * Description (IDB, link type Ethernet) and Enhanced Packet (EPB, with the direction flag) — written little-endian,
 * one block per `write` so a capture cut short by a crash stays readable up to its last packet; and a reader of the
 * same subset (other block types are skipped) for `evcc session show`.
 *
 * Written here rather than taken from npm: the maintained pcap packages bind libpcap (native, capture-oriented);
 * the pure-JS pcapng writers on npm are unmaintained. The format subset is ~100 lines.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { EvccError } from '../../core/errors.ts';

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
export const LINKTYPE_ETHERNET = 1;

const OPT_END = 0;
const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;

/** epb_flags bits 0-1: 01 inbound, 10 outbound. */
export type PacketDirection = 'in' | 'out';

export interface CaptureInterface {
  name: string;
  /** Free text; a reconstructed interface says so here. */
  description: string;
  linkType?: number;
}

export interface PcapngPacket {
  interfaceId: number;
  /** Epoch microseconds. */
  timestampUs: bigint;
  data: Uint8Array;
  originalLength: number;
  direction?: PacketDirection;
  comment?: string;
}

export interface PcapngFile {
  interfaces: (CaptureInterface & { tsresol: number })[];
  packets: PcapngPacket[];
  application?: string;
}

const pad4 = (n: number): number => (n + 3) & ~3;

function option(code: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + pad4(value.length));
  const v = new DataView(out.buffer);
  v.setUint16(0, code, true);
  v.setUint16(2, value.length, true);
  out.set(value, 4);
  return out;
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function options(list: Uint8Array[]): Uint8Array {
  if (list.length === 0) return new Uint8Array(0);
  return concatBytes([...list, new Uint8Array(4)]); // opt_endofopt
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** type | total length | body | total length. */
function block(type: number, body: Uint8Array): Uint8Array {
  const total = 12 + body.length;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, total, true);
  out.set(body, 8);
  v.setUint32(total - 4, total, true);
  return out;
}

export function sectionHeaderBlock(application: string): Uint8Array {
  const fixed = new Uint8Array(16);
  const v = new DataView(fixed.buffer);
  v.setUint32(0, BYTE_ORDER_MAGIC, true);
  v.setUint16(4, 1, true);
  v.setUint16(6, 0, true);
  v.setBigInt64(8, -1n, true); // section length not given
  return block(SHB, concatBytes([fixed, options([option(SHB_USERAPPL, text(application))])]));
}

export function interfaceDescriptionBlock(i: CaptureInterface): Uint8Array {
  const fixed = new Uint8Array(8);
  const v = new DataView(fixed.buffer);
  v.setUint16(0, i.linkType ?? LINKTYPE_ETHERNET, true);
  v.setUint32(4, 0, true); // snaplen: no limit
  return block(IDB, concatBytes([fixed, options([option(IF_NAME, text(i.name)), option(IF_DESCRIPTION, text(i.description)), option(IF_TSRESOL, Uint8Array.of(6))])]));
}

export function enhancedPacketBlock(p: PcapngPacket): Uint8Array {
  const fixed = new Uint8Array(20);
  const v = new DataView(fixed.buffer);
  v.setUint32(0, p.interfaceId, true);
  v.setUint32(4, Number(p.timestampUs >> 32n), true);
  v.setUint32(8, Number(p.timestampUs & 0xffffffffn), true);
  v.setUint32(12, p.data.length, true);
  v.setUint32(16, p.originalLength, true);
  const data = new Uint8Array(pad4(p.data.length));
  data.set(p.data);
  const opts: Uint8Array[] = [];
  if (p.direction) {
    const flags = new Uint8Array(4);
    new DataView(flags.buffer).setUint32(0, p.direction === 'in' ? 1 : 2, true);
    opts.push(option(EPB_FLAGS, flags));
  }
  if (p.comment) opts.push(option(OPT_COMMENT, text(p.comment)));
  return block(EPB, concatBytes([fixed, data, options(opts)]));
}

/**
 * A pcapng file written as packets come (synchronous appends on one fd: a write error surfaces at the call that
 * caused it, and the file is valid up to the last whole block).
 */
export class PcapngWriter {
  private fd: number | undefined;
  private readonly ids = new Map<string, number>();
  private count = 0;

  private constructor(readonly path: string, fd: number) {
    this.fd = fd;
  }

  static open(path: string, application = 'evcc'): PcapngWriter {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (err) {
      throw new EvccError('CAPTURE_FAILED', `cannot create capture ${path}: ${(err as Error).message}`, { path }, { cause: err });
    }
    const w = new PcapngWriter(path, fd);
    w.write(sectionHeaderBlock(application));
    return w;
  }

  /** Declares an interface (idempotent by name); returns its id for `packet`. */
  addInterface(i: CaptureInterface): number {
    const known = this.ids.get(i.name);
    if (known !== undefined) return known;
    const id = this.ids.size;
    this.ids.set(i.name, id);
    this.write(interfaceDescriptionBlock(i));
    return id;
  }

  packet(interfaceId: number, data: Uint8Array, o: { atMs: number; direction?: PacketDirection; comment?: string }): void {
    this.write(enhancedPacketBlock({
      interfaceId, timestampUs: BigInt(Math.round(o.atMs * 1000)), data, originalLength: data.length,
      ...(o.direction ? { direction: o.direction } : {}), ...(o.comment ? { comment: o.comment } : {}),
    }));
    this.count++;
  }

  get packets(): number {
    return this.count;
  }

  private write(bytes: Uint8Array): void {
    if (this.fd === undefined) return; // closed: late packets of a finished session are dropped
    try {
      writeSync(this.fd, bytes);
    } catch (err) {
      throw new EvccError('CAPTURE_FAILED', `capture ${this.path}: write failed: ${(err as Error).message}`, { path: this.path }, { cause: err });
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }
}

function invalid(message: string, details: Record<string, unknown> = {}): EvccError {
  return new EvccError('CAPTURE_INVALID', `not a readable pcapng capture: ${message}`, details);
}

function readOptions(bytes: Uint8Array, start: number, end: number): Map<number, Uint8Array[]> {
  const out = new Map<number, Uint8Array[]>();
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = start;
  while (o + 4 <= end) {
    const code = v.getUint16(o, true);
    const len = v.getUint16(o + 2, true);
    if (code === OPT_END) break;
    if (o + 4 + len > end) throw invalid('option runs past its block', { offset: o });
    const list = out.get(code) ?? [];
    list.push(bytes.subarray(o + 4, o + 4 + len));
    out.set(code, list);
    o += 4 + pad4(len);
  }
  return out;
}

const str = (b: Uint8Array | undefined): string => (b ? new TextDecoder().decode(b) : '');

/** Reads the SHB/IDB/EPB subset (little-endian sections); other block types are skipped. */
export function readPcapng(bytes: Uint8Array): PcapngFile {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const file: PcapngFile = { interfaces: [], packets: [] };
  let o = 0;
  let sawHeader = false;
  while (o < bytes.length) {
    if (o + 12 > bytes.length) throw invalid('truncated block header', { offset: o });
    const type = v.getUint32(o, true);
    const total = v.getUint32(o + 4, true);
    if (total < 12 || total % 4 !== 0 || o + total > bytes.length) throw invalid(`bad block length ${total}`, { offset: o });
    if (v.getUint32(o + total - 4, true) !== total) throw invalid('block trailer length differs', { offset: o });
    const body = o + 8;
    const end = o + total - 4;
    if (type === SHB) {
      if (v.getUint32(body, true) !== BYTE_ORDER_MAGIC) throw invalid('big-endian or corrupt section header', { offset: o });
      sawHeader = true;
      file.application = str(readOptions(bytes, body + 16, end).get(SHB_USERAPPL)?.[0]);
    } else if (!sawHeader) {
      throw invalid('no section header block first');
    } else if (type === IDB) {
      const opts = readOptions(bytes, body + 8, end);
      const tsresolByte = opts.get(IF_TSRESOL)?.[0]?.[0] ?? 6;
      if (tsresolByte & 0x80) throw invalid('binary timestamp resolution not supported');
      file.interfaces.push({ name: str(opts.get(IF_NAME)?.[0]), description: str(opts.get(IF_DESCRIPTION)?.[0]), linkType: v.getUint16(body, true), tsresol: tsresolByte });
    } else if (type === EPB) {
      const interfaceId = v.getUint32(body, true);
      const iface = file.interfaces[interfaceId];
      if (!iface) throw invalid(`packet on undeclared interface ${interfaceId}`, { offset: o });
      const raw = (BigInt(v.getUint32(body + 4, true)) << 32n) | BigInt(v.getUint32(body + 8, true));
      const captured = v.getUint32(body + 12, true);
      if (body + 20 + captured > end) throw invalid('packet data runs past its block', { offset: o });
      const opts = readOptions(bytes, body + 20 + pad4(captured), end);
      const flags = opts.get(EPB_FLAGS)?.[0];
      const dir = flags && flags.length >= 4 ? new DataView(flags.buffer, flags.byteOffset, 4).getUint32(0, true) & 3 : 0;
      const timestampUs = iface.tsresol === 6 ? raw : (raw * 1_000_000n) / 10n ** BigInt(iface.tsresol);
      const comment = opts.get(OPT_COMMENT)?.[0];
      file.packets.push({
        interfaceId, timestampUs, data: bytes.slice(body + 20, body + 20 + captured), originalLength: v.getUint32(body + 16, true),
        ...(dir === 1 ? { direction: 'in' as const } : dir === 2 ? { direction: 'out' as const } : {}),
        ...(comment ? { comment: str(comment) } : {}),
      });
    }
    o += total;
  }
  if (!sawHeader) throw invalid('empty file');
  return file;
}
