import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, macFromString, toHex, type SlacFrame, type SlacMessage } from './codec.ts';
import { SlacError } from './errors.ts';

/** Exact layouts (PROTOCOLS.md §1, HomePlug Green PHY 1.1 / ISO 15118-3 Annex A) and a liberal, total decoder. */
const EV = macFromString('02:00:00:00:ee:01');
const SE = macFromString('02:00:00:00:c0:01');
const BC = macFromString('ff:ff:ff:ff:ff:ff');
const RUN = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const seq = (n: number, from: number) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
const hex = (b: Uint8Array, from: number, to: number) => toHex(b.subarray(from, to));

function frame(dst: Uint8Array, message: SlacMessage, src = EV): Uint8Array {
  return encodeFrame({ dst, src, message });
}

function expectHeader(b: Uint8Array, dst: Uint8Array, src: Uint8Array, mmtype: number): void {
  expect(hex(b, 0, 6)).toBe(toHex(dst));
  expect(hex(b, 6, 12)).toBe(toHex(src));
  expect(hex(b, 12, 19)).toBe(`88e101${(mmtype & 0xff).toString(16).padStart(2, '0')}${(mmtype >> 8).toString(16)}0000`);
}

describe('SLAC codec: exact layouts', () => {
  it('CM_SLAC_PARM.REQ', () => {
    const b = frame(BC, { type: 'CM_SLAC_PARM.REQ', applicationType: 0, securityType: 0, runId: RUN, cipherSuiteSetSize: 0 });
    expect(b.length).toBe(60);
    expectHeader(b, BC, EV, 0x6064);
    expect(hex(b, 19, 30)).toBe('00000102030405060708' + '00');
    expect(hex(b, 30, 60)).toBe('00'.repeat(30)); // padding
  });

  it('CM_SLAC_PARM.CNF', () => {
    const b = frame(EV, { type: 'CM_SLAC_PARM.CNF', msoundTarget: BC, numSounds: 10, timeOut: 6, respType: 0, forwardingSta: EV, applicationType: 0, securityType: 0, runId: RUN }, SE);
    expectHeader(b, EV, SE, 0x6065);
    expect(hex(b, 19, 25)).toBe('ffffffffffff');
    expect([b[25], b[26], b[27]]).toEqual([10, 6, 0]);
    expect(hex(b, 28, 34)).toBe(toHex(EV));
    expect([b[34], b[35]]).toEqual([0, 0]);
    expect(hex(b, 36, 44)).toBe(toHex(RUN));
    expect(b.length).toBe(60);
  });

  it('CM_START_ATTEN_CHAR.IND', () => {
    const b = frame(BC, { type: 'CM_START_ATTEN_CHAR.IND', applicationType: 0, securityType: 0, numSounds: 10, timeOut: 6, respType: 0, forwardingSta: EV, runId: RUN });
    expectHeader(b, BC, EV, 0x606a);
    expect([b[19], b[20], b[21], b[22], b[23]]).toEqual([0, 0, 10, 6, 0]);
    expect(hex(b, 24, 30)).toBe(toHex(EV));
    expect(hex(b, 30, 38)).toBe(toHex(RUN));
  });

  it('CM_MNBC_SOUND.IND is 71 bytes', () => {
    const b = frame(BC, { type: 'CM_MNBC_SOUND.IND', applicationType: 0, securityType: 0, senderId: seq(17, 0x41), count: 9, runId: RUN, rnd: seq(16, 0xa0) });
    expect(b.length).toBe(71);
    expectHeader(b, BC, EV, 0x6076);
    expect(hex(b, 21, 38)).toBe(toHex(seq(17, 0x41)));
    expect(b[38]).toBe(9);
    expect(hex(b, 39, 47)).toBe(toHex(RUN));
    expect(hex(b, 47, 55)).toBe('00'.repeat(8));
    expect(hex(b, 55, 71)).toBe(toHex(seq(16, 0xa0)));
  });

  it('CM_ATTEN_PROFILE.IND', () => {
    const b = frame(SE, { type: 'CM_ATTEN_PROFILE.IND', pevMac: EV, groups: seq(58, 10) }, macFromString('00:b0:52:00:00:c1'));
    expect(b.length).toBe(19 + 8 + 58);
    expect(hex(b, 19, 25)).toBe(toHex(EV));
    expect([b[25], b[26]]).toEqual([58, 0]);
    expect(hex(b, 27, 85)).toBe(toHex(seq(58, 10)));
  });

  it('CM_ATTEN_CHAR.IND and .RSP', () => {
    const ind = frame(EV, { type: 'CM_ATTEN_CHAR.IND', applicationType: 0, securityType: 0, sourceAddress: EV, runId: RUN, sourceId: seq(17, 1), respId: seq(17, 0x30), numSounds: 10, groups: seq(58, 20) }, SE);
    expect(ind.length).toBe(129);
    expectHeader(ind, EV, SE, 0x606e);
    expect(hex(ind, 21, 27)).toBe(toHex(EV));
    expect(hex(ind, 27, 35)).toBe(toHex(RUN));
    expect(hex(ind, 35, 52)).toBe(toHex(seq(17, 1)));
    expect(hex(ind, 52, 69)).toBe(toHex(seq(17, 0x30)));
    expect([ind[69], ind[70]]).toEqual([10, 58]);
    expect(hex(ind, 71, 129)).toBe(toHex(seq(58, 20)));
    const rsp = frame(SE, { type: 'CM_ATTEN_CHAR.RSP', applicationType: 0, securityType: 0, sourceAddress: EV, runId: RUN, sourceId: seq(17, 1), respId: seq(17, 0x30), result: 0 });
    expectHeader(rsp, SE, EV, 0x606f);
    expect(rsp.length).toBe(70);
    expect(hex(rsp, 21, 27)).toBe(toHex(EV));
    expect(hex(rsp, 52, 69)).toBe(toHex(seq(17, 0x30)));
    expect(rsp[69]).toBe(0);
  });

  it('CM_SLAC_MATCH.REQ and .CNF', () => {
    const common = { applicationType: 0, securityType: 0, pevId: seq(17, 0x50), pevMac: EV, evseId: seq(17, 0x70), evseMac: SE, runId: RUN } as const;
    const req = frame(SE, { type: 'CM_SLAC_MATCH.REQ', ...common });
    expect(req.length).toBe(85);
    expectHeader(req, SE, EV, 0x607c);
    expect(hex(req, 21, 23)).toBe('3e00');
    expect(hex(req, 23, 40)).toBe(toHex(seq(17, 0x50)));
    expect(hex(req, 40, 46)).toBe(toHex(EV));
    expect(hex(req, 46, 63)).toBe(toHex(seq(17, 0x70)));
    expect(hex(req, 63, 69)).toBe(toHex(SE));
    expect(hex(req, 69, 77)).toBe(toHex(RUN));
    expect(hex(req, 77, 85)).toBe('00'.repeat(8));
    const cnf = frame(EV, { type: 'CM_SLAC_MATCH.CNF', ...common, nid: seq(7, 0x90), nmk: seq(16, 0xc0) }, SE);
    expect(cnf.length).toBe(109);
    expect(hex(cnf, 21, 23)).toBe('5600');
    expect(hex(cnf, 85, 92)).toBe(toHex(seq(7, 0x90)));
    expect(cnf[92]).toBe(0);
    expect(hex(cnf, 93, 109)).toBe(toHex(seq(16, 0xc0)));
  });

  it('CM_SET_KEY.REQ and .CNF', () => {
    const modem = macFromString('00:b0:52:00:00:01');
    const req = frame(modem, { type: 'CM_SET_KEY.REQ', keyType: 1, myNonce: 0x11223344, yourNonce: 0, pid: 4, prn: 0, pmn: 0, ccoCapability: 0, nid: seq(7, 0x90), newEks: 1, newKey: seq(16, 0xc0) });
    expectHeader(req, modem, EV, 0x6008);
    expect(req[19]).toBe(1);
    expect(hex(req, 20, 24)).toBe('44332211');
    expect(hex(req, 24, 28)).toBe('00000000');
    expect([req[28], req[29], req[30], req[31], req[32]]).toEqual([4, 0, 0, 0, 0]);
    expect(hex(req, 33, 40)).toBe(toHex(seq(7, 0x90)));
    expect(req[40]).toBe(1);
    expect(hex(req, 41, 57)).toBe(toHex(seq(16, 0xc0)));
    const cnf = frame(EV, { type: 'CM_SET_KEY.CNF', result: 1, myNonce: 5, yourNonce: 0x11223344, pid: 4, prn: 0, pmn: 0, ccoCapability: 0 }, modem);
    expectHeader(cnf, EV, modem, 0x6009);
    expect(cnf[19]).toBe(1);
    expect(hex(cnf, 24, 28)).toBe('44332211');
  });
});

describe('SLAC codec: liberal decoding', () => {
  it('reads NumGroups instead of demanding a length (326-byte ATTEN_CHAR.IND of the field)', () => {
    const b = new Uint8Array(326);
    b.set(frame(EV, { type: 'CM_ATTEN_CHAR.IND', applicationType: 0, securityType: 0, sourceAddress: EV, runId: RUN, sourceId: seq(17, 1), respId: seq(17, 2), numSounds: 10, groups: seq(58, 20) }, SE));
    const r = decodeFrame(b);
    expect(r.ok && r.frame.message.type === 'CM_ATTEN_CHAR.IND' && r.frame.message.groups.length).toBe(58);
  });

  it('accepts 64-byte sounds (random field cut short)', () => {
    const full = frame(BC, { type: 'CM_MNBC_SOUND.IND', applicationType: 0, securityType: 0, senderId: seq(17, 0), count: 3, runId: RUN, rnd: seq(16, 1) });
    const r = decodeFrame(full.subarray(0, 64));
    expect(r.ok && r.frame.message.type === 'CM_MNBC_SOUND.IND' && r.frame.message.count).toBe(3);
  });

  it('reports unknown types, other ethertypes and truncation as typed errors', () => {
    const vendor = frame(EV, { type: 'CM_SET_KEY.CNF', result: 1, myNonce: 0, yourNonce: 0, pid: 4, prn: 0, pmn: 0, ccoCapability: 0 });
    vendor[15] = 0xa0;
    vendor[16] = 0x00;
    expect(decodeFrame(vendor)).toMatchObject({ ok: false, error: { code: 'SLAC_DECODE_UNKNOWN_MMTYPE' } });
    const ipv6 = Uint8Array.from(vendor);
    ipv6[12] = 0x86; ipv6[13] = 0xdd;
    expect(decodeFrame(ipv6)).toMatchObject({ ok: false, error: { code: 'SLAC_DECODE_NOT_HOMEPLUG' } });
    const cnf = frame(EV, { type: 'CM_SLAC_MATCH.CNF', applicationType: 0, securityType: 0, pevId: seq(17, 0), pevMac: EV, evseId: seq(17, 0), evseMac: SE, runId: RUN, nid: seq(7, 0), nmk: seq(16, 0) }, SE);
    expect(decodeFrame(cnf.subarray(0, 100))).toMatchObject({ ok: false, error: { code: 'SLAC_DECODE_TRUNCATED' } });
    const ind = frame(EV, { type: 'CM_ATTEN_CHAR.IND', applicationType: 0, securityType: 0, sourceAddress: EV, runId: RUN, sourceId: seq(17, 1), respId: seq(17, 2), numSounds: 10, groups: seq(58, 20) }, SE);
    ind[70] = 200; // NumGroups beyond the frame
    expect(decodeFrame(ind)).toMatchObject({ ok: false, error: { code: 'SLAC_DECODE_TRUNCATED' } });
  });
});

/* ------------------------------------------------------------------------------------------- properties */

const mac = fc.uint8Array({ minLength: 6, maxLength: 6 });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const u8 = fc.integer({ min: 0, max: 255 });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const assoc = { applicationType: u8, securityType: u8 };

const message: fc.Arbitrary<SlacMessage> = fc.oneof(
  fc.record({ type: fc.constant('CM_SLAC_PARM.REQ' as const), ...assoc, runId: bytes(8), cipherSuiteSetSize: fc.constant(0) }),
  fc.record({ type: fc.constant('CM_SLAC_PARM.CNF' as const), msoundTarget: mac, numSounds: u8, timeOut: u8, respType: u8, forwardingSta: mac, ...assoc, runId: bytes(8) }),
  fc.record({ type: fc.constant('CM_START_ATTEN_CHAR.IND' as const), ...assoc, numSounds: u8, timeOut: u8, respType: u8, forwardingSta: mac, runId: bytes(8) }),
  fc.record({ type: fc.constant('CM_MNBC_SOUND.IND' as const), ...assoc, senderId: bytes(17), count: u8, runId: bytes(8), rnd: bytes(16) }),
  fc.record({ type: fc.constant('CM_ATTEN_PROFILE.IND' as const), pevMac: mac, groups: fc.uint8Array({ maxLength: 255 }) }),
  fc.record({ type: fc.constant('CM_ATTEN_CHAR.IND' as const), ...assoc, sourceAddress: mac, runId: bytes(8), sourceId: bytes(17), respId: bytes(17), numSounds: u8, groups: fc.uint8Array({ maxLength: 255 }) }),
  fc.record({ type: fc.constant('CM_ATTEN_CHAR.RSP' as const), ...assoc, sourceAddress: mac, runId: bytes(8), sourceId: bytes(17), respId: bytes(17), result: u8 }),
  fc.record({ type: fc.constant('CM_SLAC_MATCH.REQ' as const), ...assoc, pevId: bytes(17), pevMac: mac, evseId: bytes(17), evseMac: mac, runId: bytes(8) }),
  fc.record({ type: fc.constant('CM_SLAC_MATCH.CNF' as const), ...assoc, pevId: bytes(17), pevMac: mac, evseId: bytes(17), evseMac: mac, runId: bytes(8), nid: bytes(7), nmk: bytes(16) }),
  fc.record({ type: fc.constant('CM_SET_KEY.REQ' as const), keyType: u8, myNonce: u32, yourNonce: u32, pid: u8, prn: u16, pmn: u8, ccoCapability: u8, nid: bytes(7), newEks: u8, newKey: bytes(16) }),
  fc.record({ type: fc.constant('CM_SET_KEY.CNF' as const), result: u8, myNonce: u32, yourNonce: u32, pid: u8, prn: u16, pmn: u8, ccoCapability: u8 }),
);
const slacFrame: fc.Arbitrary<SlacFrame> = fc.record({ dst: mac, src: mac, message });

const KNOWN_CODES = new Set(['SLAC_DECODE_TRUNCATED', 'SLAC_DECODE_NOT_HOMEPLUG', 'SLAC_DECODE_BAD_MMV', 'SLAC_DECODE_UNKNOWN_MMTYPE']);

/** Total bytes a decoded frame holds: bounded by the input (plus the fixed 16-byte RND of a short sound). */
function heldBytes(f: SlacFrame): number {
  let n = f.dst.length + f.src.length;
  for (const v of Object.values(f.message)) if (v instanceof Uint8Array) n += v.length;
  return n;
}

function checkTotal(input: Uint8Array): void {
  let r: ReturnType<typeof decodeFrame>;
  expect(() => (r = decodeFrame(input))).not.toThrow();
  if (r!.ok) {
    expect(heldBytes(r!.frame)).toBeLessThanOrEqual(input.length + 16);
  } else {
    expect(r!.error).toBeInstanceOf(SlacError);
    expect(KNOWN_CODES.has(r!.error.code)).toBe(true);
  }
}

describe('SLAC codec: properties', () => {
  it('decode(encode(frame)) gives the frame back, for every message type and field value', () => {
    fc.assert(fc.property(slacFrame, (f) => {
      const r = decodeFrame(encodeFrame(f));
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.frame).toEqual(f);
    }), { numRuns: 3000 });
  });

  it('random bytes give a typed error or a message, never an exception or unbounded allocation', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2000 }), checkTotal), { numRuns: 5000 });
  });

  it('random bytes behind a valid HomePlug header (every MMTYPE, MMV 0..3)', () => {
    const mmtypes = [0x6008, 0x6009, 0x6064, 0x6065, 0x606a, 0x606e, 0x606f, 0x6076, 0x607c, 0x607d, 0x6086, 0xa000];
    fc.assert(fc.property(fc.constantFrom(...mmtypes), fc.integer({ min: 0, max: 3 }), fc.uint8Array({ maxLength: 400 }), (mmtype, mmv, body) => {
      const b = new Uint8Array(19 + body.length);
      b.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xe1, mmv, mmtype & 0xff, mmtype >> 8, 0, 0]);
      b.set(body, 19);
      checkTotal(b);
    }), { numRuns: 5000 });
  });

  it('mutated valid frames (bit flips, truncation, extension) stay total', () => {
    const mutated = fc.tuple(slacFrame, fc.array(fc.tuple(fc.nat(), u8), { maxLength: 8 }), fc.nat(), fc.uint8Array({ maxLength: 64 }))
      .map(([f, flips, cut, tail]) => {
        const b = encodeFrame(f);
        for (const [at, v] of flips) b[at % b.length] = v;
        const kept = b.subarray(0, cut % (b.length + 1));
        const out = new Uint8Array(kept.length + tail.length);
        out.set(kept);
        out.set(tail, kept.length);
        return out;
      });
    fc.assert(fc.property(mutated, checkTotal), { numRuns: 5000 });
  });

  it('a 64 KiB frame decodes in bounded time and size', () => {
    const big = new Uint8Array(65536).fill(0xff);
    big.set([0x88, 0xe1, 1, 0x6e, 0x60, 0, 0], 12);
    checkTotal(big);
  });
});
