/**
 * Link and transport decoders: SLAC MMEs, QCA7000 serial framing, SDP, the V2GTP header/datagram codec and the
 * stream reassembler, and the pilot board's line protocol. Byte inputs (one .bin case each); seeds from the
 * project's own encoders.
 */
import { encodeFrame, decodeFrame, ASSOC, type SlacMessage } from '../../../firmware/slac/codec.ts';
import { MATCH_MVF_LENGTH } from '../../../firmware/slac/constants.ts';
import { encodeQcaFrame, QcaFrameDecoder, QCA_MAX_FRAME, QCA_MIN_FRAME } from '../../../hal/plc/qca-framing.ts';
import { decodeDiscoveryReq, decodeDiscoveryRes, encodeDiscoveryReq, encodeDiscoveryRes } from '../../../firmware/sdp/codec.ts';
import { decodeDatagram, decodeHeader, encodeV2gtp, V2gtpReassembler } from '../../../firmware/v2gtp/codec.ts';
import { PayloadType } from '../../../firmware/v2gtp/constants.ts';
import { parsePilotLine, PilotLineSplitter, PILOT_LINE_MAX } from '../../../hal/pilot/serial-board.ts';
import {
  bytesFile, bytesFromFile, chunksOf, concat, FuzzOracleError, generateBytes, int, isTyped, mulberry32, pick, typed,
  type LengthField, type Outcome, type Rng, type Target,
} from '../core.ts';

const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const fill = (n: number, v: number) => new Uint8Array(n).fill(v);
const seq = (n: number, from = 0) => Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);

/** Byte targets share their file format. */
const bytesTarget = (t: Omit<Target<Uint8Array>, 'toFile' | 'fromFile'>): Target<Uint8Array> => ({ ...t, toFile: bytesFile, fromFile: bytesFromFile });

/** A stream seed: cut byte (0 = one chunk, else a chunking seed) + the stream. */
const streamSeeds = (streams: Uint8Array[]): Uint8Array[] => streams.flatMap((s) => [0, 1, 7, 70, 200].map((cut) => concat(Uint8Array.of(cut), s)));

// ---- SLAC ------------------------------------------------------------------------------------------------------------

function slacMessages(): SlacMessage[] {
  const mac = seq(6, 0x10);
  const run = seq(8, 0x40);
  return [
    { type: 'CM_SLAC_PARM.REQ', ...ASSOC, runId: run, cipherSuiteSetSize: 0 },
    { type: 'CM_SLAC_PARM.CNF', ...ASSOC, msoundTarget: fill(6, 0xff), numSounds: 10, timeOut: 6, respType: 1, forwardingSta: mac, runId: run },
    { type: 'CM_START_ATTEN_CHAR.IND', ...ASSOC, numSounds: 10, timeOut: 6, respType: 1, forwardingSta: mac, runId: run },
    { type: 'CM_MNBC_SOUND.IND', ...ASSOC, senderId: seq(17), count: 9, runId: run, rnd: seq(16, 0x80) },
    { type: 'CM_ATTEN_PROFILE.IND', pevMac: mac, groups: seq(58, 20) },
    { type: 'CM_ATTEN_CHAR.IND', ...ASSOC, sourceAddress: mac, runId: run, sourceId: seq(17), respId: seq(17, 3), numSounds: 10, groups: seq(58, 30) },
    { type: 'CM_ATTEN_CHAR.RSP', ...ASSOC, sourceAddress: mac, runId: run, sourceId: seq(17), respId: seq(17, 3), result: 0 },
    { type: 'CM_SLAC_MATCH.REQ', ...ASSOC, pevId: seq(17), pevMac: mac, evseId: seq(17, 9), evseMac: seq(6, 0x60), runId: run },
    { type: 'CM_SLAC_MATCH.CNF', ...ASSOC, pevId: seq(17), pevMac: mac, evseId: seq(17, 9), evseMac: seq(6, 0x60), runId: run, nid: seq(7, 0x33), nmk: seq(16, 0x99) },
    { type: 'CM_SET_KEY.REQ', keyType: 1, myNonce: 0x01020304, yourNonce: 0, pid: 4, prn: 0x1234, pmn: 0, ccoCapability: 0, nid: seq(7, 0x33), newEks: 1, newKey: seq(16, 0x99) },
    { type: 'CM_SET_KEY.CNF', result: 0, myNonce: 1, yourNonce: 2, pid: 4, prn: 0x1234, pmn: 0, ccoCapability: 0 },
  ];
}

const SLAC_LENGTH_FIELDS = (b: Uint8Array): LengthField[] => [
  { offset: 12, size: 2 }, // ethertype
  { offset: 14, size: 1 }, // MMV
  { offset: 15, size: 2, littleEndian: true }, // MMTYPE
  { offset: 19 + 6, size: 1 }, // ATTEN_PROFILE NumGroups
  { offset: 19 + 51, size: 1 }, // ATTEN_CHAR.IND NumGroups
  { offset: 19 + 2, size: 2, littleEndian: true }, // MATCH MVFLength
  ...(b.length > 70 ? [{ offset: b.length - 1, size: 1 } as LengthField] : []),
];

export const slac = (): Target<Uint8Array> => bytesTarget({
  name: 'slac',
  what: 'SLAC MME decoder (firmware/slac/codec.ts decodeFrame)',
  seeds: () => {
    const src = seq(6, 0x10);
    const frames = slacMessages().map((message) => encodeFrame({ dst: fill(6, 0xff), src, message }));
    // AV 1.0 header (MMV 0) and the MATCH MVFLength constants, as peers send them.
    const av10 = new Uint8Array(frames[0]!);
    av10[14] = 0;
    return [...frames, av10, Uint8Array.of(MATCH_MVF_LENGTH.REQ & 0xff)];
  },
  generate: (rng, seeds) => generateBytes(rng, seeds, { lengthFields: SLAC_LENGTH_FIELDS, randomMax: 128 }),
  run: (b) => {
    const r = decodeFrame(b);
    if (!r.ok) {
      if (!isTyped(r.error)) throw new FuzzOracleError(`decodeFrame returned an untyped error: ${String(r.error)}`);
      return 'rejected';
    }
    // Decoded fields are copies: a reused receive buffer must not change a decoded message.
    for (const v of [r.frame.dst, r.frame.src, ...Object.values(r.frame.message)]) {
      if (v instanceof Uint8Array && v.buffer === b.buffer) throw new FuzzOracleError('decoded field aliases the input buffer');
    }
    return 'ok';
  },
});

// ---- QCA framing ----------------------------------------------------------------------------------------------------

export const qca = (): Target<Uint8Array> => bytesTarget({
  name: 'qca',
  what: 'QCA7000 serial framing decoder (hal/plc/qca-framing.ts), chunked streams',
  seeds: () => {
    const frames = slacMessages().map((message) => encodeQcaFrame(encodeFrame({ dst: fill(6, 0xff), src: seq(6), message })));
    const big = encodeQcaFrame(seq(QCA_MAX_FRAME));
    return streamSeeds([concat(...frames.slice(0, 4)), concat(fill(5, 0xaa), frames[5]!, seq(3), frames[7]!), big, concat(frames[1]!, big)]);
  },
  generate: (rng, seeds) => generateBytes(rng, seeds, {
    lengthFields: (b) => {
      const fields: LengthField[] = [];
      for (let i = 1; i + 5 < b.length && fields.length < 8; i++) if (b[i] === 0xaa && b[i + 1] === 0xaa && b[i + 2] === 0xaa && b[i + 3] === 0xaa) fields.push({ offset: i + 4, size: 2, littleEndian: true });
      return fields;
    },
    randomMax: 2048,
  }),
  run: (input) => {
    const d = new QcaFrameDecoder();
    let n = 0;
    for (const chunk of chunksOf(input)) {
      for (const f of d.push(chunk)) {
        n++;
        if (f.length < QCA_MIN_FRAME || f.length > QCA_MAX_FRAME) throw new FuzzOracleError(`frame of ${f.length} bytes out of ${QCA_MIN_FRAME}..${QCA_MAX_FRAME}`);
      }
    }
    if (n !== d.stats.frames) throw new FuzzOracleError(`${n} frames out, stats say ${d.stats.frames}`);
    return n ? 'ok' : 'rejected';
  },
});

// ---- SDP --------------------------------------------------------------------------------------------------------------

export const sdp = (): Target<Uint8Array> => bytesTarget({
  name: 'sdp',
  what: 'SECCDiscoveryReq/Res codec (firmware/sdp/codec.ts)',
  seeds: () => [
    encodeDiscoveryReq({ security: 'tls', transport: 'tcp' }),
    encodeDiscoveryReq({ security: 'none', transport: 'tcp' }),
    encodeDiscoveryRes({ address: 'fe80::1', port: 50000, security: 'tls', transport: 'tcp' }),
    encodeDiscoveryRes({ address: 'fe80::21b:2fff:fe0c:1234', port: 65535, security: 'none', transport: 'tcp' }),
    encodeDiscoveryRes({ address: '2001:db8:0:0:1:0:0:1', port: 15118, security: 'tls', transport: 'tcp' }),
  ],
  generate: (rng, seeds) => generateBytes(rng, seeds, { lengthFields: () => [{ offset: 2, size: 2 }, { offset: 4, size: 4 }], randomMax: 40 }),
  run: (b) => {
    let ok = false;
    if (typed(() => {
      const req = decodeDiscoveryReq(b);
      // Strict codec: a decoded request re-encodes to exactly its bytes.
      if (!same(encodeDiscoveryReq(req), b)) throw new FuzzOracleError('SECCDiscoveryReq does not re-encode to its bytes');
    }) === 'ok') ok = true;
    if (typed(() => {
      const res = decodeDiscoveryRes(b);
      if (!same(encodeDiscoveryRes(res), b)) throw new FuzzOracleError(`SECCDiscoveryRes ${res.address} does not re-encode to its bytes`);
    }) === 'ok') ok = true;
    return ok ? 'ok' : 'rejected';
  },
});

// ---- V2GTP header and datagram ------------------------------------------------------------------------------------------

const V2GTP_FIELDS = (): LengthField[] => [{ offset: 0, size: 1 }, { offset: 1, size: 1 }, { offset: 2, size: 2 }, { offset: 4, size: 4 }];

function v2gtpFrames(): Uint8Array[] {
  return [
    encodeV2gtp(PayloadType.EXI, Uint8Array.of(0x80, 0x00, 0xdb, 0xab, 0x93, 0x71, 0xd3, 0x23)),
    encodeV2gtp(PayloadType.EXI, seq(300)),
    encodeV2gtp(PayloadType.SDP_REQUEST, Uint8Array.of(0x00, 0x00)),
    encodeV2gtp(PayloadType.SDP_RESPONSE, seq(20)),
    encodeV2gtp(PayloadType.EXI, new Uint8Array(0)),
  ];
}

export const v2gtp = (): Target<Uint8Array> => bytesTarget({
  name: 'v2gtp',
  what: 'V2GTP header and datagram codec (firmware/v2gtp/codec.ts decodeHeader, decodeDatagram)',
  seeds: v2gtpFrames,
  generate: (rng, seeds) => generateBytes(rng, seeds, { lengthFields: V2GTP_FIELDS, randomMax: 64 }),
  run: (b) => {
    const options = [{}, { maxPayload: 20 }, { accept: [PayloadType.SDP_RESPONSE], maxPayload: 20 }, { maxPayload: 0 }];
    let ok = false;
    for (const o of options) {
      if (typed(() => {
        const h = decodeHeader(b, o);
        if (h.length > (o.maxPayload ?? 65_536)) throw new FuzzOracleError(`header length ${h.length} above the cap`);
      }) === 'ok') ok = true;
      if (typed(() => {
        const m = decodeDatagram(b, o);
        if (!same(encodeV2gtp(m.payloadType, m.payload), b)) throw new FuzzOracleError('datagram does not re-encode to its bytes');
      }) === 'ok') ok = true;
    }
    return ok ? 'ok' : 'rejected';
  },
});

// ---- V2GTP reassembler ------------------------------------------------------------------------------------------------

export const v2gtpStream = (): Target<Uint8Array> => bytesTarget({
  name: 'v2gtp-stream',
  what: 'V2GTP stream reassembler (firmware/v2gtp/codec.ts V2gtpReassembler), chunked streams, 3 payload caps',
  seeds: () => {
    const f = v2gtpFrames();
    return streamSeeds([concat(...f), concat(f[1]!, f[0]!, f[1]!), encodeV2gtp(PayloadType.EXI, seq(9000))]);
  },
  generate: (rng, seeds) => generateBytes(rng, seeds, {
    lengthFields: (b) => [{ offset: 1, size: 1 }, { offset: 3, size: 2 }, { offset: 5, size: 4 }, ...(b.length > 20 ? [{ offset: 1 + 8 + int(mulberry32(b.length), b.length - 9), size: 4 } as LengthField] : [])],
    randomMax: 512,
  }),
  run: (input) => {
    const chunks = chunksOf(input);
    const streamLength = chunks.reduce((n, c) => n + c.length, 0);
    let outcome: Outcome = 'rejected';
    for (const maxPayload of [65_536, 300, 8]) {
      const r = new V2gtpReassembler({ maxPayload });
      const out: Uint8Array[] = [];
      let broken: unknown;
      for (const c of chunks) {
        try {
          for (const m of r.push(c)) {
            if (m.payload.length > maxPayload) throw new FuzzOracleError(`payload of ${m.payload.length} bytes above the cap ${maxPayload}`);
            out.push(encodeV2gtp(m.payloadType, m.payload));
          }
        } catch (err) {
          if (!isTyped(err)) throw err;
          broken = err;
          break;
        }
      }
      if (broken) {
        // A broken stream stays broken, with the same error.
        let again: unknown;
        try {
          r.push(Uint8Array.of(1, 0xfe));
        } catch (err) {
          again = err;
        }
        if (again !== broken) throw new FuzzOracleError('a broken reassembler accepted more input or threw another error');
      } else {
        // Nothing invented or lost: the messages and the held bytes are the stream.
        if (out.reduce((n, m) => n + m.length, 0) + r.buffered !== streamLength) throw new FuzzOracleError('reassembled bytes plus held bytes differ from the stream');
        outcome = 'ok';
      }
      // Linear work however the stream is cut.
      if (r.copiedBytes > 3 * streamLength + 8) throw new FuzzOracleError(`copied ${r.copiedBytes} bytes for a stream of ${streamLength}`);
      const body = concat(...out);
      if (!same(body, input.subarray(input.length ? 1 : 0, 1 + body.length))) throw new FuzzOracleError('reassembled messages are not the stream prefix');
    }
    return outcome;
  },
});

// ---- pilot lines ------------------------------------------------------------------------------------------------------

export const pilot = (): Target<Uint8Array> => bytesTarget({
  name: 'pilot',
  what: 'pilot board line splitter and parser (hal/pilot/serial-board.ts), latin1 chunked streams',
  seeds: () => {
    const lines = ['CP A 0', 'CP B 5.0', 'CP C 100\r', 'OK S2 1', 'ERR busy', 'HELLO pilot-board v1.2', `CP B ${'9'.repeat(3)}`, 'x'.repeat(PILOT_LINE_MAX) + '\r'];
    return streamSeeds([Buffer.from(`${lines.join('\n')}\n`, 'latin1'), Buffer.from(`${'y'.repeat(200)}\nCP B 5\n`, 'latin1')]);
  },
  generate: (rng: Rng, seeds) => {
    if (rng() < 0.3) {
      // Line-shaped noise: tokens of the protocol, numbers, separators.
      const tokens = ['CP', 'OK', 'ERR', 'HELLO', 'S2', 'A', 'B', 'C', 'D', 'E', 'F', 'G', ' ', '\t', '\r', '\n', '\r\n', '5', '5.0', '100', '100.1', '-1', '1e3', '999', '.', '\u00ff', '\u0000'];
      let s = String.fromCharCode(pick(rng, [0, 1, 7, 70, 200]));
      for (let k = int(rng, 40); k > 0; k--) s += pick(rng, tokens);
      return new Uint8Array(Buffer.from(s, 'latin1'));
    }
    return generateBytes(rng, seeds, { randomMax: 200 });
  },
  run: (input) => {
    const s = new PilotLineSplitter();
    let cp = 0;
    const delivered: string[] = [];
    for (const chunk of chunksOf(input)) {
      s.push(Buffer.from(chunk).toString('latin1'), (line) => {
        delivered.push(line);
        if (line.length > PILOT_LINE_MAX + 1) throw new FuzzOracleError(`line of ${line.length} chars passed the ${PILOT_LINE_MAX} limit`);
        const l = parsePilotLine(line);
        if (l.kind === 'cp') {
          const { state, dutyPercent } = l.reading;
          if (!'ABCDEF'.includes(state) || state.length !== 1 || !(dutyPercent >= 0 && dutyPercent <= 100)) throw new FuzzOracleError(`CP reading ${state} ${dutyPercent}`);
          cp++;
        }
      });
    }
    // The README's promise, however the stream is cut: every complete non-empty line of at most PILOT_LINE_MAX
    // characters, not counting a final `\r`, is delivered; longer ones are not.
    const lines = Buffer.from(input.subarray(1)).toString('latin1').split('\n').slice(0, -1);
    const expected = lines.filter((l) => l.length > 0 && (l.length <= PILOT_LINE_MAX || (l.length === PILOT_LINE_MAX + 1 && l.endsWith('\r'))));
    if (delivered.length !== expected.length || delivered.some((l, i) => l !== expected[i])) {
      throw new FuzzOracleError(`delivered ${delivered.length} lines, the protocol says ${expected.length}`);
    }
    return cp ? 'ok' : 'rejected';
  },
});
