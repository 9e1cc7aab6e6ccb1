/**
 * EXI: every schema (appHandshake, ISO-2, DIN, the -20 namespaces, xmldsig), document and fragment grammars, the
 * specialized (compiled) and the interpreted decoder. One .bin case: byte 0 selects schema and mode, the rest is the
 * EXI stream. Seeds: random valid documents and fragments of each grammar (exi-random's walk) encoded with our
 * encoder, plus the shared public vectors when present.
 *
 * Oracles besides "typed error or message": the output stays proportional to the input; a decoded message re-encodes
 * (or is refused typed) and decodes back to the same message; the compiled and the interpreted decoder agree.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { decodeAny, decodeFragment, encodeAny, encodeFragment, schema, SCHEMA_IDS, type SchemaId } from '../../../firmware/exi/index.ts';
import { decodeDocumentInterpreted, type ExiObject } from '../../../firmware/exi/runtime.ts';
import { mulberry32, randomDocument, randomElement } from '../../integration/exi-random.ts';
import { bytesFile, bytesFromFile, concat, FuzzOracleError, generateBytes, isTyped, pick, type Outcome, type Target } from '../core.ts';

export const EXI_MODES = ['document', 'fragment', 'interpreted', 'strict'] as const;
type Mode = (typeof EXI_MODES)[number];

/** Byte 0 of a case: schema index × 4 + mode. */
export function exiSelector(b: number): { schema: SchemaId; mode: Mode } {
  return { schema: SCHEMA_IDS[Math.floor(b / 4) % SCHEMA_IDS.length]!, mode: EXI_MODES[b % 4]! };
}
const selectorOf = (s: SchemaId, mode: Mode): number => SCHEMA_IDS.indexOf(s) * 4 + EXI_MODES.indexOf(mode);

const json = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));

function decodeIn(s: SchemaId, mode: Mode, bytes: Uint8Array): ExiObject {
  switch (mode) {
    case 'document':
      return decodeAny(s, bytes);
    case 'fragment':
      return decodeFragment(s, bytes as never) as ExiObject;
    case 'interpreted':
      return decodeDocumentInterpreted(schema(s), bytes);
    case 'strict':
      return decodeAny(s, bytes, { strictArrayEnds: true, maxDepth: 24 });
  }
}

/** Decodes, or undefined for a typed refusal. */
function attempt(f: () => ExiObject): ExiObject | undefined {
  try {
    return f();
  } catch (err) {
    if (isTyped(err)) return undefined;
    throw err;
  }
}

function vectorSeeds(): Uint8Array[] {
  const file = `${process.env.EVCC_VECTORS ?? new URL('../../../../shared/vectors', import.meta.url).pathname}/exi-public.json`;
  if (!existsSync(file)) return [];
  const names: Record<string, SchemaId> = { appHandshake: 'appHandshake', 'ISO15118-2': 'iso2', DIN70121: 'din', 'ISO15118-20 CommonMessages': 'iso20', 'ISO15118-20 DC': 'iso20dc', 'ISO15118-20 AC': 'iso20ac' };
  const vectors = JSON.parse(readFileSync(file, 'utf8')) as { schema: string; hex: string }[];
  return vectors.flatMap((v, i) => {
    const s = names[v.schema];
    // Every 4th vector: they are many, and the mutations of a few cover their shapes.
    return s && i % 4 === 0 ? [concat(Uint8Array.of(selectorOf(s, 'document')), Buffer.from(v.hex, 'hex'))] : [];
  });
}

function grammarSeeds(perSchema: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const id of SCHEMA_IDS) {
    const s = schema(id);
    const frags = s.frag.filter((f) => f.grammar);
    for (let k = 0; k < perSchema; k++) {
      const rng = mulberry32(0x5eed + k * 131 + id.length * 7919);
      const doc = randomDocument(rng, s, 8);
      if (doc) {
        try {
          const b = encodeAny(id, doc);
          out.push(concat(Uint8Array.of(selectorOf(id, pick(rng, ['document', 'interpreted', 'strict'] as const))), b));
        } catch {
          // A combination the grammar refuses (the random walk knows no identity constraints).
        }
      }
      const f = frags.length ? pick(rng, frags) : undefined;
      const el = f ? randomElement(rng, f.grammar!, 6) : undefined;
      if (f && el !== undefined) {
        try {
          out.push(concat(Uint8Array.of(selectorOf(id, 'fragment')), encodeFragment(id, { [f.key]: el } as never)));
        } catch {
          // As above.
        }
      }
    }
  }
  return out;
}

export const exi = (): Target<Uint8Array> => ({
  name: 'exi',
  what: 'EXI decoders of every schema: document, fragment, interpreted, strict (firmware/exi)',
  seeds: () => [...grammarSeeds(24), ...vectorSeeds()],
  generate: (rng, seeds) => {
    const b = generateBytes(rng, seeds, { randomMax: 300 });
    // Random bytes: mostly with the EXI header byte of a schema-informed stream after the selector.
    if (b.length > 1 && rng() < 0.5 && !seeds.includes(b)) b[1] = 0x80;
    return b;
  },
  run: (input): Outcome => {
    if (input.length === 0) return 'rejected';
    const { schema: id, mode } = exiSelector(input[0]!);
    const bytes = input.subarray(1);
    const v = attempt(() => decodeIn(id, mode, bytes));
    if (v === undefined) {
      if (mode === 'document' && attempt(() => decodeDocumentInterpreted(schema(id), bytes)) !== undefined) {
        throw new FuzzOracleError(`${id}: the interpreted decoder accepts a stream the compiled one refuses`);
      }
      return 'rejected';
    }
    // Bounded output: every event costs at least one bit of input.
    if (json(v).length > bytes.length * 400 + 400) throw new FuzzOracleError(`${id} ${mode}: ${json(v).length} chars decoded from ${bytes.length} bytes`);
    if (mode === 'document') {
      const w = attempt(() => decodeDocumentInterpreted(schema(id), bytes));
      if (w === undefined || !isDeepStrictEqual(v, w)) throw new FuzzOracleError(`${id}: the compiled and the interpreted decoder disagree`);
    }
    // What we decoded we can encode (or refuse, typed), and it decodes to the same message.
    let again: Uint8Array | undefined;
    try {
      again = mode === 'fragment' ? encodeFragment(id, v as never) : encodeAny(id, v);
    } catch (err) {
      if (!isTyped(err)) throw err;
    }
    if (again) {
      const back = attempt(() => (mode === 'fragment' ? (decodeFragment(id, again as never) as ExiObject) : decodeAny(id, again)));
      if (back === undefined || !isDeepStrictEqual(back, v)) throw new FuzzOracleError(`${id} ${mode}: re-encoded message does not decode to the same message`);
    }
    return 'ok';
  },
  toFile: bytesFile,
  fromFile: bytesFromFile,
});
