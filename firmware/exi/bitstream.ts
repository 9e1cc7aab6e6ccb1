import { exiError } from './errors.ts';

/**
 * Bit-packed EXI streams (EXI §7: alignment "bit-packed"): values are written MSB first across byte boundaries;
 * unsigned integers are little-endian 7-bit groups with a continuation bit (§7.1.6).
 */
export class BitReader {
  private pos = 0; // bit position
  private readonly end: number;

  constructor(private readonly buf: Uint8Array) {
    this.end = buf.length * 8;
  }

  get bitPosition(): number {
    return this.pos;
  }

  remainingBits(): number {
    return this.end - this.pos;
  }

  readBits(n: number): number {
    if (n === 0) return 0;
    const pos = this.pos;
    if (pos + n > this.end) throw exiError('EXI_TRUNCATED', 'EXI stream truncated', { bit: pos, need: n });
    this.pos = pos + n;
    let byteIdx = pos >>> 3;
    const off = pos & 7;
    // Fast path: fits within the current byte.
    if (off + n <= 8) return (this.buf[byteIdx]! >>> (8 - off - n)) & ((1 << n) - 1);
    let value = this.buf[byteIdx]! & (0xff >>> off);
    let left = n - (8 - off);
    byteIdx++;
    while (left >= 8) {
      value = value * 256 + this.buf[byteIdx++]!;
      left -= 8;
    }
    if (left > 0) value = value * (1 << left) + (this.buf[byteIdx]! >>> (8 - left));
    return value;
  }

  /** 8 bits (an unsigned-integer group, a byte of binary, an ASCII code point). */
  readByte(): number {
    const pos = this.pos;
    if (pos + 8 > this.end) throw exiError('EXI_TRUNCATED', 'EXI stream truncated', { bit: pos, need: 8 });
    this.pos = pos + 8;
    const i = pos >>> 3;
    const off = pos & 7;
    if (off === 0) return this.buf[i]!;
    return ((this.buf[i]! << off) | (this.buf[i + 1]! >>> (8 - off))) & 0xff;
  }

  readBit(): number {
    const pos = this.pos;
    if (pos >= this.end) throw exiError('EXI_TRUNCATED', 'EXI stream truncated', { bit: pos, need: 1 });
    this.pos = pos + 1;
    return (this.buf[pos >>> 3]! >>> (7 - (pos & 7))) & 1;
  }

  /** Unsigned integer of at most `maxGroups` 7-bit groups; a bigint when over 2^53. */
  readUnsigned(maxGroups: number): number | bigint {
    let value = 0;
    let mult = 1;
    for (let g = 0; g < maxGroups; g++) {
      const b = this.readByte();
      if (g >= 7) return this.readUnsignedBig(value, g, b, maxGroups);
      value += (b & 0x7f) * mult;
      if ((b & 0x80) === 0) return value;
      mult *= 128;
    }
    throw exiError('EXI_LIMIT', 'unsigned integer longer than its type allows', { maxGroups });
  }

  private readUnsignedBig(low: number, g0: number, first: number, maxGroups: number): number | bigint {
    let value = BigInt(low);
    let shift = BigInt(7 * g0);
    let b = first;
    for (let g = g0; ; ) {
      value |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      g++;
      if (g >= maxGroups) throw exiError('EXI_LIMIT', 'unsigned integer longer than its type allows', { maxGroups });
      shift += 7n;
      b = this.readBits(8);
    }
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  /** A small unsigned integer used as a length or code point: bounded by `max`. */
  readLength(max: number): number {
    const v = this.readUnsigned(5);
    if (typeof v !== 'number' || v > max) throw exiError('EXI_LIMIT', 'length over bound', { length: String(v), max });
    return v;
  }
}

export class BitWriter {
  private buf: Uint8Array;
  private byte = 0; // index of the byte being filled
  private bit = 0; // bits used in buf[byte]

  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
  }

  private grow(): void {
    const next = new Uint8Array(this.buf.length * 2);
    next.set(this.buf);
    this.buf = next;
  }

  writeBits(n: number, value: number): void {
    if (n === 0) return;
    if (this.byte + 5 >= this.buf.length) this.grow();
    const free0 = 8 - this.bit;
    if (n < free0) {
      // Fits in the current byte with room to spare (event codes, booleans, small n-bit values).
      this.buf[this.byte]! |= (value & ((1 << n) - 1)) << (free0 - n);
      this.bit += n;
      return;
    }
    let left = n;
    while (left > 0) {
      const free = 8 - this.bit;
      if (left <= free) {
        this.buf[this.byte]! |= (value & ((1 << left) - 1)) << (free - left);
        this.bit += left;
        if (this.bit === 8) {
          this.byte++;
          this.bit = 0;
        }
        return;
      }
      // Take the top `free` bits of the remaining `left` bits.
      const shift = left - free;
      const top = shift >= 31 ? Math.floor(value / 2 ** shift) : value >>> shift;
      this.buf[this.byte]! |= top & ((1 << free) - 1);
      this.byte++;
      this.bit = 0;
      left = shift;
      if (this.byte + 5 >= this.buf.length) this.grow();
    }
  }

  writeByte(v: number): void {
    if (this.byte + 5 >= this.buf.length) this.grow();
    const bit = this.bit;
    if (bit === 0) {
      this.buf[this.byte++] = v;
      return;
    }
    this.buf[this.byte]! |= v >>> bit;
    this.buf[++this.byte] = (v << (8 - bit)) & 0xff;
  }

  /** Each UTF-16 unit of an all-ASCII string as one byte (its unsigned-integer code point). */
  writeAscii(s: string): void {
    while (this.byte + s.length + 5 >= this.buf.length) this.grow();
    const buf = this.buf;
    const bit = this.bit;
    let byte = this.byte;
    if (bit === 0) {
      for (let i = 0; i < s.length; i++) buf[byte++] = s.charCodeAt(i);
    } else {
      const back = 8 - bit;
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        buf[byte]! |= c >>> bit;
        buf[++byte] = (c << back) & 0xff;
      }
    }
    this.byte = byte;
  }

  writeUnsigned(v: number | bigint): void {
    if (typeof v === 'bigint') {
      if (v <= BigInt(Number.MAX_SAFE_INTEGER)) return this.writeUnsigned(Number(v));
      let x = v;
      while (x >= 128n) {
        this.writeBits(8, Number(x & 0x7fn) | 0x80);
        x >>= 7n;
      }
      this.writeBits(8, Number(x));
      return;
    }
    let x = v;
    while (x >= 128) {
      this.writeByte((x % 128) | 0x80);
      x = Math.floor(x / 128);
    }
    this.writeByte(x);
  }

  reset(): void {
    this.buf.fill(0, 0, Math.min(this.buf.length, this.byte + 1));
    this.byte = 0;
    this.bit = 0;
  }

  /** The stream padded to a byte boundary with zero bits (EXI §8: padding). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.byte + (this.bit ? 1 : 0));
  }
}

export function bitsFor(count: number): number {
  // ⌈log2 count⌉ for count ≥ 1 (EXI n-bit event codes and table indices).
  return count <= 1 ? 0 : 32 - Math.clz32(count - 1);
}
