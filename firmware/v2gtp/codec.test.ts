import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { PayloadType } from './constants.ts';
import { decodeDatagram, encodeV2gtp, V2gtpReassembler } from './codec.ts';

describe('V2GTP', () => {
  it('encodes the 8-byte header as ISO 15118-2 lays it out', () => {
    expect(Buffer.from(encodeV2gtp(PayloadType.SDP_REQUEST, new Uint8Array([0x00, 0x00]))).toString('hex')).toBe('01fe9000000000020000');
  });

  it('reassembles messages fed byte by byte and in arbitrary pieces', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 5 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (payloads, cuts) => {
      const stream = Buffer.concat(payloads.map((p) => encodeV2gtp(PayloadType.EXI, p)));
      const r = new V2gtpReassembler();
      const got: Uint8Array[] = [];
      let off = 0;
      let i = 0;
      while (off < stream.length) {
        const n = cuts[i++ % cuts.length]!;
        got.push(...r.push(stream.subarray(off, off + n)).map((m) => m.payload));
        off += n;
      }
      expect(got.map((g) => Buffer.from(g).toString('hex'))).toEqual(payloads.map((p) => Buffer.from(p).toString('hex')));
      expect(r.buffered).toBe(0);
    }));
  });

  it('refuses bad version bytes, unknown types and oversize lengths before buffering the payload', () => {
    const code = (f: () => unknown): string => {
      try { f(); return 'OK'; } catch (e) { return isEvccError(e) ? e.code : 'RAW'; }
    };
    expect(code(() => new V2gtpReassembler().push(Uint8Array.from([0x02, 0xfd, 0x80, 0x01, 0, 0, 0, 0])))).toBe('V2GTP_BAD_VERSION');
    expect(code(() => new V2gtpReassembler().push(Uint8Array.from([0x01, 0xfe, 0x12, 0x34, 0, 0, 0, 0])))).toBe('V2GTP_UNKNOWN_PAYLOAD_TYPE');
    const r = new V2gtpReassembler({ maxPayload: 1000 });
    expect(code(() => r.push(Uint8Array.from([0x01, 0xfe, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff])))).toBe('V2GTP_PAYLOAD_TOO_LARGE');
    expect(code(() => r.push(new Uint8Array(1)))).toBe('V2GTP_PAYLOAD_TOO_LARGE'); // stays broken
    expect(code(() => decodeDatagram(encodeV2gtp(PayloadType.SDP_RESPONSE, new Uint8Array(20)).subarray(0, 27)))).toBe('V2GTP_LENGTH_MISMATCH');
    expect(code(() => decodeDatagram(new Uint8Array(3)))).toBe('V2GTP_TRUNCATED');
  });

  it('reassembles a 64 KiB payload trickled one byte per push, copying each byte a bounded number of times', () => {
    const payload = Uint8Array.from({ length: 65_536 }, (_, i) => (i * 31 + 7) & 0xff);
    const stream = encodeV2gtp(PayloadType.EXI, payload);
    const r = new V2gtpReassembler();
    const got: Uint8Array[] = [];
    let heldAsFed = true;
    for (let i = 0; i < stream.length; i++) {
      for (const m of r.push(stream.subarray(i, i + 1))) got.push(m.payload);
      if (i < stream.length - 1 && r.buffered !== i + 1) heldAsFed = false;
    }
    expect(heldAsFed).toBe(true);
    expect(got).toHaveLength(1);
    expect(Buffer.from(got[0]!).equals(Buffer.from(payload))).toBe(true);
    // Concatenating the held bytes with every new piece copies n(n+1)/2 ≈ 2.1e9 bytes here; linear work stays
    // within the documented 3n (each byte once, plus the buffer doubling's re-copies).
    expect(r.copiedBytes).toBeLessThanOrEqual(3 * stream.length);
    expect(r.copiedBytes).toBeGreaterThanOrEqual(stream.length);
    expect(r.buffered).toBe(0);
  });

  it('copies at most 3 bytes per byte pushed however the stream is cut', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 20_000 }), { minLength: 1, maxLength: 4 }), fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 20 }), (sizes, cuts) => {
      const stream = Buffer.concat(sizes.map((n) => encodeV2gtp(PayloadType.EXI, new Uint8Array(n).fill(n & 0xff))));
      const r = new V2gtpReassembler();
      const got: number[] = [];
      for (let off = 0, i = 0; off < stream.length; off += cuts[i++ % cuts.length]!) {
        got.push(...r.push(stream.subarray(off, off + cuts[i % cuts.length]!)).map((m) => m.payload.length));
      }
      expect(got).toEqual(sizes);
      expect(r.copiedBytes).toBeLessThanOrEqual(3 * stream.length);
    }));
  });

  it('holds a header split over pushes until it is complete', () => {
    const r = new V2gtpReassembler();
    const msg = encodeV2gtp(PayloadType.SDP_RESPONSE, Uint8Array.from([0xaa, 0xbb]));
    expect(r.push(msg.subarray(0, 1))).toEqual([]);
    expect(r.push(msg.subarray(1, 5))).toEqual([]);
    expect(r.buffered).toBe(5);
    expect(r.push(msg.subarray(5, 9))).toEqual([]);
    expect(r.buffered).toBe(9);
    const [m] = r.push(msg.subarray(9));
    expect(m).toEqual({ payloadType: PayloadType.SDP_RESPONSE, payload: Uint8Array.from([0xaa, 0xbb]) });
  });

  it('delivers every message of one chunk in order, keeps the tail, and hands out empty payloads', () => {
    const r = new V2gtpReassembler();
    const msgs = [Uint8Array.from([1]), new Uint8Array(0), Uint8Array.from([2, 3, 4])].map((p) => encodeV2gtp(PayloadType.EXI, p));
    const next = encodeV2gtp(PayloadType.EXI, Uint8Array.from([5, 6]));
    const chunk = Buffer.concat([...msgs, next.subarray(0, 9)]);
    expect(r.push(chunk).map((m) => [...m.payload])).toEqual([[1], [], [2, 3, 4]]);
    expect(r.buffered).toBe(9);
    expect(r.push(next.subarray(9)).map((m) => [...m.payload])).toEqual([[5, 6]]);
    expect(r.push(encodeV2gtp(PayloadType.EXI, new Uint8Array(0))).map((m) => m.payload.length)).toEqual([0]);
  });

  it('hands out payloads that do not alias the pushed chunk', () => {
    const chunk = encodeV2gtp(PayloadType.EXI, Uint8Array.from([9, 9, 9]));
    const [m] = new V2gtpReassembler().push(chunk);
    chunk.fill(0);
    expect([...m!.payload]).toEqual([9, 9, 9]);
  });

  it('refuses bad version bytes as soon as they arrive, without waiting for the rest of the header', () => {
    const r = new V2gtpReassembler();
    expect(r.push(Uint8Array.from([0x01]))).toEqual([]);
    expect(() => r.push(Uint8Array.from([0xff]))).toThrowError(expect.objectContaining({ code: 'V2GTP_BAD_VERSION' }));
    expect(r.buffered).toBe(0);
    expect(() => r.push(encodeV2gtp(PayloadType.EXI, new Uint8Array(1)))).toThrowError(expect.objectContaining({ code: 'V2GTP_BAD_VERSION' }));
    // A TLS alert record (7 bytes) read on a plain V2GTP socket.
    expect(() => new V2gtpReassembler().push(Uint8Array.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]))).toThrowError(expect.objectContaining({ code: 'V2GTP_BAD_VERSION' }));
  });

  it('refuses an oversize length at the header, having copied no payload byte', () => {
    const r = new V2gtpReassembler({ maxPayload: 1000 });
    const header = encodeV2gtp(PayloadType.EXI, new Uint8Array(1001)).subarray(0, 9);
    expect(() => r.push(header)).toThrowError(expect.objectContaining({ code: 'V2GTP_PAYLOAD_TOO_LARGE' }));
    expect(r.copiedBytes).toBe(8);
    expect(r.buffered).toBe(0);
    expect(new V2gtpReassembler({ maxPayload: 1000 }).push(encodeV2gtp(PayloadType.EXI, new Uint8Array(1000)))[0]!.payload).toHaveLength(1000);
  });

  it('never throws a raw exception on arbitrary input', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      for (const f of [() => decodeDatagram(bytes), () => new V2gtpReassembler({ maxPayload: 32 }).push(bytes)]) {
        try { f(); } catch (e) { expect(isEvccError(e)).toBe(true); }
      }
    }));
  });
});
