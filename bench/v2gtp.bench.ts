import { cpus, loadavg } from 'node:os';
import { encodeV2gtp, V2gtpReassembler } from '../firmware/v2gtp/codec.ts';
import { PayloadType, V2GTP_HEADER_LENGTH } from '../firmware/v2gtp/constants.ts';
import type { BenchReport, BenchRow } from './run.ts';
import { summarize } from './stats.ts';

/**
 * V2GTP stream reassembly: ms per stream for a 64 KiB message cut in different ways, and the bytes copied per byte
 * pushed (the work count the unit tests bound by 3). The byte trickle is the case ("a 64 KiB message
 * trickled one byte per segment costs 0.42 s of CPU"); it is also timed against a reassembler that concatenates
 * what it holds with every new piece, the quadratic shape the issue measured.
 */
const PAYLOAD = Uint8Array.from({ length: 65_536 }, (_, i) => (i * 31 + 7) & 0xff);
const STREAM = encodeV2gtp(PayloadType.EXI, PAYLOAD);

function pieces(size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let off = 0; off < STREAM.length; off += size) out.push(STREAM.subarray(off, off + size));
  return out;
}

/** The concatenating shape, for the ratio only (header checks left out: they are not what costs). */
function concatenatingReassemble(chunks: Uint8Array[]): number {
  let held = new Uint8Array(0);
  let delivered = 0;
  for (const chunk of chunks) {
    const joined = new Uint8Array(held.length + chunk.length);
    joined.set(held);
    joined.set(chunk, held.length);
    let off = 0;
    while (joined.length - off >= V2GTP_HEADER_LENGTH) {
      const length = new DataView(joined.buffer, off + 4, 4).getUint32(0);
      if (joined.length - off < V2GTP_HEADER_LENGTH + length) break;
      delivered += joined.slice(off + V2GTP_HEADER_LENGTH, off + V2GTP_HEADER_LENGTH + length).length;
      off += V2GTP_HEADER_LENGTH + length;
    }
    held = joined.slice(off);
  }
  return delivered;
}

function reassemble(chunks: Uint8Array[]): { delivered: number; copied: number } {
  const r = new V2gtpReassembler();
  let delivered = 0;
  for (const c of chunks) for (const m of r.push(c)) delivered += m.payload.length;
  return { delivered, copied: r.copiedBytes };
}

function timeMs(fn: () => number, runs: number): ReturnType<typeof summarize> {
  fn(); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    if (fn() !== PAYLOAD.length) throw new Error('reassembly lost bytes');
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return summarize(samples);
}

export async function run(): Promise<BenchReport> {
  const rows: BenchRow[] = [];
  const cases: [string, number][] = [['1 B per push', 1], ['16 B per push', 16], ['1460 B per push (TCP MSS)', 1460], ['whole stream in one push', STREAM.length]];
  let trickleMs = 0;
  for (const [name, size] of cases) {
    const chunks = pieces(size);
    const t = timeMs(() => reassemble(chunks).delivered, 25);
    if (size === 1) trickleMs = t.median;
    const copiedPerByte = reassemble(chunks).copied / STREAM.length;
    rows.push({ name: `64 KiB message, ${name}`, median: t.median, unit: 'ms', min: t.min, max: t.max, n: t.n, note: `${copiedPerByte.toFixed(2)} B copied per B pushed` });
  }
  const quadratic = timeMs(() => concatenatingReassemble(pieces(1)), 3);
  rows.push({ name: '64 KiB message, 1 B per push, concatenating reassembler', median: quadratic.median, unit: 'ms', min: quadratic.min, max: quadratic.max, n: quadratic.n, note: `${(quadratic.median / trickleMs).toFixed(0)}× the reassembler` });
  return {
    title: 'V2GTP reassembly (64 KiB EXI payload)',
    rows,
    notes: [`Load average ${loadavg().map((l) => l.toFixed(1)).join(' / ')} on ${cpus().length} CPUs while measuring.`],
  };
}
