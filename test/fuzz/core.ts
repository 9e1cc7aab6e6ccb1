/**
 * The fuzz campaign's core: what a target (one decoder family) declares, the byte mutators, and the loop that runs
 * one family and measures it (issue #13 item 9).
 *
 * Not coverage-guided: input i of a family is a pure function of (family, seed, i) — a seed built with the project's
 * own encoders, mutated (bit flips, byte edits, truncation, insertion, deletion, duplication, splicing, length-field
 * edits), or random bytes. So any input can be regenerated from its index alone: the watchdog (run.ts) names a hung
 * input by the index the worker last reported, without the worker having to say anything.
 *
 * Outcomes: `ok` (decoded), `rejected` (a typed EvccError, or a decoder's typed error result), or a failure — anything
 * else thrown, an oracle violation (`FuzzOracleError`: a decoder broke its own contract, e.g. output larger than its
 * bound), a hang (run.ts), or a slow input (> SLOW_MS, counted only when a second run alone is slow too).
 */
import { createHash } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import { mulberry32, type Rng } from '../integration/exi-random.ts';

export { mulberry32, type Rng };

export type Outcome = 'ok' | 'rejected';

/** A decoder broke its contract without throwing (output out of bounds, an invariant lost): counted as a crash. */
export class FuzzOracleError extends Error {
  override readonly name = 'FuzzOracleError';
}

/** How a failing input is written to test/fuzz/regressions/<family>/<hash>.<ext>. */
export type CaseFile = { ext: 'bin'; data: Uint8Array } | { ext: 'json'; data: unknown };

export interface Target<I> {
  name: string;
  /** One line: what is fuzzed. */
  what: string;
  /** Valid inputs, made with the project's own encoders (built once per process). */
  seeds(): I[];
  /** Input `i` of the campaign: a seed, a mutated seed, a splice, or random input. Deterministic in `rng`. */
  generate(rng: Rng, seeds: readonly I[]): I;
  /** Runs the decoder(s) on one input. Throwing anything but an EvccError is a crash. */
  run(input: I): Outcome | Promise<Outcome>;
  toFile(input: I): CaseFile;
  fromFile(file: CaseFile): I;
  /**
   * false when seeds() differs between processes (fresh keys, a fresh test PKI): the worker then publishes each input
   * before running it, so a hung one can be saved (run.ts); true (default) lets run.ts regenerate it from its index.
   */
  deterministicSeeds?: boolean;
}

/** A target with its async set-up (keys, a test PKI, session credentials). */
export interface TargetFactory {
  name: string;
  create(): Promise<Target<unknown>>;
}

// ---- randomness --------------------------------------------------------------------------------------------------------

export const int = (rng: Rng, n: number): number => Math.floor(rng() * n);
export const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)]!;

/** The rng of input `index` of `family` under campaign seed `seed`. */
export function inputRng(family: string, seed: number, index: number): Rng {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < family.length; i++) h = Math.imul(h ^ family.charCodeAt(i), 16777619);
  h = Math.imul(h ^ index, 2654435761) ^ Math.imul(index >>> 16, 40503);
  return mulberry32(h >>> 0);
}

export function randomBytes(rng: Rng, max: number): Uint8Array {
  const out = new Uint8Array(int(rng, max + 1));
  for (let i = 0; i < out.length; i++) out[i] = int(rng, 256);
  return out;
}

// ---- byte mutators ------------------------------------------------------------------------------------------------------

const INTERESTING_8 = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff];
const INTERESTING_32 = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

/** A length-like field of a format: where it is, how wide, which byte order (for targeted edits). */
export interface LengthField {
  offset: number;
  size: 1 | 2 | 4;
  littleEndian?: boolean;
}

function writeUint(b: Uint8Array, f: LengthField, value: number): void {
  for (let k = 0; k < f.size; k++) {
    const shift = 8 * (f.littleEndian ? k : f.size - 1 - k);
    if (f.offset + k < b.length) b[f.offset + k] = Math.floor(value / 2 ** shift) & 0xff;
  }
}

/** A length value worth trying for a field next to data of `len` bytes: the edges, off-by-one, and huge. */
function lengthValue(rng: Rng, len: number): number {
  const r = int(rng, 4);
  if (r === 0) return pick(rng, INTERESTING_32);
  if (r === 1) return Math.max(0, len + int(rng, 5) - 2);
  if (r === 2) return int(rng, 2 * len + 2);
  return int(rng, 2 ** 32);
}

export interface MutateOptions {
  /** Length fields of the format (targeted edits); without: a length-like value at a random offset. */
  lengthFields?: (b: Uint8Array) => LengthField[];
  /** Inputs to splice with. */
  others?: readonly Uint8Array[];
  /** Cap on the output size. */
  maxLength?: number;
}

/** One to four stacked mutations of `input` (never modifies it). */
export function mutateBytes(rng: Rng, input: Uint8Array, o: MutateOptions = {}): Uint8Array {
  let b: Uint8Array = new Uint8Array(input);
  const rounds = 1 + int(rng, 4);
  for (let round = 0; round < rounds; round++) {
    const at = (extra = 0) => int(rng, b.length + extra);
    switch (int(rng, 10)) {
      case 0: // bit flips
      case 1:
        if (b.length) for (let k = 1 + int(rng, 4); k > 0; k--) b[at()]! ^= 1 << int(rng, 8);
        break;
      case 2: // byte set: interesting or random
        if (b.length) b[at()] = rng() < 0.5 ? pick(rng, INTERESTING_8) : int(rng, 256);
        break;
      case 3: // truncation
        b = b.slice(0, at(1));
        break;
      case 4: { // insertion
        const p = at(1);
        const ins = randomBytes(rng, 16);
        b = concat(b.subarray(0, p), ins, b.subarray(p));
        break;
      }
      case 5: { // deletion of a range
        const p = at(1);
        b = concat(b.subarray(0, p), b.subarray(Math.min(b.length, p + 1 + int(rng, 16))));
        break;
      }
      case 6: { // duplication of a range
        const p = at(1);
        const q = Math.min(b.length, p + 1 + int(rng, 32));
        b = concat(b.subarray(0, q), b.subarray(p, q), b.subarray(q));
        break;
      }
      case 7: { // splice: a prefix of this one, a suffix of another
        const other = o.others?.length ? pick(rng, o.others) : randomBytes(rng, 64);
        b = concat(b.subarray(0, at(1)), other.subarray(int(rng, other.length + 1)));
        break;
      }
      default: { // length-field edits
        const fields = o.lengthFields?.(b) ?? [];
        const f: LengthField = fields.length && rng() < 0.8
          ? pick(rng, fields)
          : { offset: at(), size: pick(rng, [1, 2, 4] as const), littleEndian: rng() < 0.5 };
        writeUint(b, f, lengthValue(rng, b.length) % 2 ** (8 * f.size));
        break;
      }
    }
  }
  return o.maxLength !== undefined && b.length > o.maxLength ? b.slice(0, o.maxLength) : b;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** The common generation mix of byte-input families: 10 % seeds as they are, 75 % mutated seeds, 15 % random bytes. */
export function generateBytes(rng: Rng, seeds: readonly Uint8Array[], o: MutateOptions & { randomMax?: number } = {}): Uint8Array {
  const r = rng();
  if (r < 0.1) return pick(rng, seeds);
  if (r < 0.85) return mutateBytes(rng, pick(rng, seeds), { others: seeds, ...o });
  return randomBytes(rng, o.randomMax ?? 256);
}

// ---- byte-input targets -------------------------------------------------------------------------------------------------

export const bytesFile = (b: Uint8Array): CaseFile => ({ ext: 'bin', data: b });
export function bytesFromFile(f: CaseFile): Uint8Array {
  if (f.ext !== 'bin') throw new Error('expected a .bin case');
  return f.data;
}

/** Hex helpers for JSON cases. */
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

/**
 * A stream input: the payload bytes and how they are cut into chunks. The first byte seeds the cut (so a stream case
 * stays one .bin file): 0 = the whole input in one chunk, else chunks of 1…n bytes from a generator seeded with it.
 */
export function chunksOf(input: Uint8Array): Uint8Array[] {
  if (input.length === 0) return [];
  const cut = input[0]!;
  const body = input.subarray(1);
  if (cut === 0) return [body];
  const rng = mulberry32(cut);
  const max = cut < 64 ? 1 + (cut % 4) : cut < 128 ? 16 : 512;
  const out: Uint8Array[] = [];
  for (let off = 0; off < body.length; ) {
    const n = 1 + int(rng, max);
    out.push(body.subarray(off, off + n));
    off += n;
  }
  return out;
}

// ---- outcome classification ---------------------------------------------------------------------------------------------

/** A typed rejection: an EvccError (or subclass) with a code. */
export function isTyped(err: unknown): boolean {
  return err instanceof EvccError && typeof err.code === 'string' && err.code.length > 0;
}

/** Runs `f`; an EvccError is `rejected`, anything else propagates (a crash). */
export function typed(f: () => unknown): Outcome {
  try {
    f();
    return 'ok';
  } catch (err) {
    if (isTyped(err)) return 'rejected';
    throw err;
  }
}

export async function typedAsync(f: () => Promise<unknown>): Promise<Outcome> {
  try {
    await f();
    return 'ok';
  } catch (err) {
    if (isTyped(err)) return 'rejected';
    throw err;
  }
}

export function caseHash(file: CaseFile): string {
  const data = file.ext === 'bin' ? file.data : Buffer.from(stableJson(file.data));
  return createHash('sha256').update(data).digest('hex').slice(0, 16);
}

export function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x), 1);
}

/** One line naming a failure: the error's class and message, and where it was thrown (dedup key). */
export function failureSignature(err: unknown): string {
  if (!(err instanceof Error)) return `non-Error thrown: ${String(err).slice(0, 200)}`;
  const frame = err.stack?.split('\n').find((l) => l.trim().startsWith('at '))?.trim() ?? '';
  const msg = err.message.replace(/\d+/g, 'N').slice(0, 160);
  return `${err.name}: ${msg} ${frame.replace(/:\d+:\d+\)?$/, '')}`;
}
