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

  it('never throws a raw exception on arbitrary input', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      for (const f of [() => decodeDatagram(bytes), () => new V2gtpReassembler({ maxPayload: 32 }).push(bytes)]) {
        try { f(); } catch (e) { expect(isEvccError(e)).toBe(true); }
      }
    }));
  });
});
