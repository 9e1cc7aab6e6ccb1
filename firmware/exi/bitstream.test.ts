import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BitReader, BitWriter, bitsFor } from './bitstream.ts';
import { ExiError } from './errors.ts';

describe('EXI bit stream', () => {
  it('n-bit values, bytes and unsigned integers read back as written, at every bit offset', () => {
    const op = fc.oneof(
      fc.integer({ min: 0, max: 24 }).chain((n) => fc.tuple(fc.constant('bits' as const), fc.constant(n), fc.integer({ min: 0, max: 2 ** n - 1 }))),
      fc.tuple(fc.constant('byte' as const), fc.constant(8), fc.integer({ min: 0, max: 255 })),
      fc.tuple(fc.constant('uint' as const), fc.constant(0), fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeNat())),
      fc.tuple(fc.constant('big' as const), fc.constant(0), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const w = new BitWriter(8);
        for (const [kind, n, v] of ops) {
          if (kind === 'bits') w.writeBits(n, v as number);
          else if (kind === 'byte') w.writeByte(v as number);
          else w.writeUnsigned(v as number | bigint);
        }
        const r = new BitReader(w.finish());
        for (const [kind, n, v] of ops) {
          if (kind === 'bits') expect(r.readBits(n)).toBe(v);
          else if (kind === 'byte') expect(r.readByte()).toBe(v);
          else {
            const got = r.readUnsigned(10);
            expect(typeof v === 'bigint' ? BigInt(got) : got).toBe(v);
          }
        }
        expect(r.remainingBits()).toBeLessThan(8);
      }),
    );
  });

  it('unsigned integers are 7-bit groups, least significant first, high bit = more (EXI §7.1.6)', () => {
    const w = new BitWriter();
    w.writeUnsigned(300);
    expect(Buffer.from(w.finish()).toString('hex')).toBe('ac02');
    expect(new BitReader(new Uint8Array([0xac, 0x02])).readUnsigned(5)).toBe(300);
  });

  it('reading past the end is EXI_TRUNCATED; over-long integers are EXI_LIMIT', () => {
    expect(() => new BitReader(new Uint8Array([0xff])).readBits(9)).toThrow(expect.objectContaining({ code: 'EXI_TRUNCATED' }));
    expect(() => new BitReader(new Uint8Array(0)).readByte()).toThrow(ExiError);
    expect(() => new BitReader(new Uint8Array([0xff, 0xff, 0xff])).readUnsigned(2)).toThrow(expect.objectContaining({ code: 'EXI_LIMIT' }));
  });

  it('bitsFor is ⌈log2 n⌉ (event code and table index widths)', () => {
    expect([1, 2, 3, 4, 5, 8, 9, 36, 81].map(bitsFor)).toEqual([0, 1, 2, 2, 3, 3, 4, 6, 7]);
  });
});

describe('EXI bit stream: ASCII runs', () => {
  it('writeAscii equals one writeByte per character at every bit offset', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7 }), fc.string({ unit: fc.integer({ min: 0, max: 127 }).map((c) => String.fromCharCode(c)), maxLength: 400 }), (pre, s) => {
        const a = new BitWriter(4);
        const b = new BitWriter(4);
        a.writeBits(pre, 0);
        b.writeBits(pre, 0);
        a.writeAscii(s);
        for (let i = 0; i < s.length; i++) b.writeByte(s.charCodeAt(i));
        a.writeBits(3, 5);
        b.writeBits(3, 5);
        expect(Buffer.from(a.finish()).toString('hex')).toBe(Buffer.from(b.finish()).toString('hex'));
      }),
    );
  });
});
