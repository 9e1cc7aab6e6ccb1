import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeAny, decodeFragment, encodeAny, ExiError, SCHEMA_IDS, type SchemaId } from '../../firmware/exi/index.ts';
import { exiVectorsPath, vectorSchema } from './exi-support.ts';

/**
 * Must show 4 (issue #3): random and mutated inputs to every decoder give a typed error or a valid message —
 * no other exception escapes, nothing hangs, and the output stays proportional to the input (bounded memory).
 */
const vectors = (JSON.parse(readFileSync(exiVectorsPath('exi-public.json'), 'utf8')) as { schema: string; hex: string }[]).map((v) => ({
  schema: vectorSchema(v.schema),
  bytes: new Uint8Array(Buffer.from(v.hex, 'hex')),
}));

const json = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));

function check(schema: SchemaId, input: Uint8Array, fragment = false): 'ok' | 'error' {
  try {
    const v = fragment ? decodeFragment(schema, input) : decodeAny(schema, input);
    // Bounded output: every event costs at least one bit of input.
    expect(json(v).length).toBeLessThanOrEqual(input.length * 400 + 400);
    return 'ok';
  } catch (err) {
    if (!(err instanceof ExiError)) throw err;
    expect(err.code).toMatch(/^EXI_/);
    return 'error';
  }
}

describe('EXI decoders under fuzzing', () => {
  it('random bytes (with a valid header) into every schema decoder, document and fragment', () => {
    fc.assert(
      fc.property(fc.constantFrom(...SCHEMA_IDS), fc.uint8Array({ minLength: 0, maxLength: 300 }), fc.boolean(), fc.boolean(), (schema, body, withHeader, fragment) => {
        const input = withHeader ? new Uint8Array([0x80, ...body]) : body;
        check(schema, input, fragment);
      }),
      { numRuns: 3000 },
    );
  });

  it('mutated public vectors (bit flips, truncation, insertion, splicing) give a message or a typed error', () => {
    const outcomes = { ok: 0, error: 0 };
    fc.assert(
      fc.property(
        fc.nat(vectors.length - 1),
        fc.array(fc.tuple(fc.nat(), fc.nat(7)), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.constantFrom('flip', 'truncate', 'insert', 'splice'),
        fc.nat(vectors.length - 1),
        (i, flips, cut, how, j) => {
          const v = vectors[i]!;
          let b = new Uint8Array(v.bytes);
          if (how === 'flip') for (const [pos, bit] of flips) b[pos % b.length]! ^= 1 << bit;
          else if (how === 'truncate') b = b.slice(0, cut % (b.length + 1));
          else if (how === 'insert') {
            const at = cut % (b.length + 1);
            b = new Uint8Array([...b.slice(0, at), ...flips.map(([x]) => x & 0xff), ...b.slice(at)]);
          } else {
            const other = vectors[j]!.bytes;
            b = new Uint8Array([...b.slice(0, cut % (b.length + 1)), ...other.slice(cut % (other.length + 1))]);
          }
          outcomes[check(v.schema, b)]++;
        },
      ),
      { numRuns: 4000 },
    );
    // Both outcomes occur: mutations are neither all rejected nor all accepted.
    expect(outcomes.ok).toBeGreaterThan(100);
    expect(outcomes.error).toBeGreaterThan(100);
  });

  it('hostile lengths and depths are bounded: huge string/binary lengths, long integers, deep nesting', () => {
    // appHandshake: SE(supportedAppProtocolReq), SE(AppProtocol), SE(ProtocolNamespace), CH, length = 2^35.
    const hugeString = new Uint8Array([0x80, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    expect(() => decodeAny('appHandshake', hugeString)).toThrow(ExiError);
    // A never-ending run of 7-bit groups in the ProtocolNamespace length.
    const endless = new Uint8Array([0x80, 0x07, ...new Array<number>(64).fill(0xff)]);
    expect(() => decodeAny('appHandshake', endless)).toThrow(ExiError);
    // Every decoder refuses a wrong header.
    for (const id of SCHEMA_IDS) expect(() => decodeAny(id, new Uint8Array([0x00, 0x00]))).toThrow(expect.objectContaining({ code: 'EXI_HEADER' }));
    expect(() => decodeAny('iso2', new Uint8Array(0))).toThrow(expect.objectContaining({ code: 'EXI_TRUNCATED' }));
  });
});

describe('EXI encoders under fuzzing', () => {
  it('arbitrary values (random JSON-like objects, mutated decoded messages) give bytes or a typed error', () => {
    const decoded = vectors.slice(0, 200).flatMap((v) => {
      try {
        return [{ schema: v.schema, message: decodeAny(v.schema, v.bytes) }];
      } catch {
        return [];
      }
    });
    const mutate = (m: unknown, rnd: number[], depth = 0): unknown => {
      if (m && typeof m === 'object') {
        const entries = Object.entries(m as Record<string, unknown>);
        if (entries.length === 0) return m;
        const r = rnd[depth % rnd.length]!;
        const [k, v] = entries[r % entries.length]!;
        const copy: Record<string, unknown> = Array.isArray(m) ? ([...m] as unknown as Record<string, unknown>) : { ...(m as Record<string, unknown>) };
        const choice = r % 7;
        if (choice === 0) delete copy[k];
        else if (choice === 1) copy[k] = 'x';
        else if (choice === 2) copy[k] = -1;
        else if (choice === 3) copy[k] = [v, v];
        else if (choice === 4) copy[`${k}_`] = v;
        else if (choice === 5) copy[k] = 2 ** 60;
        else copy[k] = mutate(v, rnd, depth + 1);
        return copy;
      }
      return m;
    };
    fc.assert(
      fc.property(fc.nat(decoded.length - 1), fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), fc.anything(), fc.constantFrom(...SCHEMA_IDS), (i, rnd, junk, schema) => {
        for (const [s, m] of [[decoded[i]!.schema, mutate(decoded[i]!.message, rnd)], [schema, junk], [schema, { V2G_Message: junk }]] as [SchemaId, unknown][]) {
          try {
            const bytes = encodeAny(s, m);
            expect(bytes).toBeInstanceOf(Uint8Array);
          } catch (err) {
            if (!(err instanceof ExiError)) throw err;
          }
        }
      }),
      { numRuns: 1500 },
    );
  });
});
