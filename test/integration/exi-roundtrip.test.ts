import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeAny, encodeAny, schema, SCHEMA_IDS, type SchemaId } from '../../firmware/exi/index.ts';
import { mulberry32, randomDocument, randomElement } from './exi-random.ts';

/**
 * Must show 3 (issue #3): random valid messages of each schema, generated from the grammar the types come from,
 * survive encode → decode unchanged (with and without string-table value hits).
 */
const RUNS = 120;

describe('EXI round trip: random valid messages of every schema', () => {
  for (const id of SCHEMA_IDS) {
    it(`${id}: encode → decode is the identity`, () => {
      const s = schema(id);
      let built = 0;
      fc.assert(
        fc.property(fc.integer(), fc.boolean(), (seed, valueHits) => {
          const msg = randomDocument(mulberry32(seed), s);
          if (!msg) return;
          built++;
          const bytes = encodeAny(id, msg, { valueHits });
          expect(decodeAny(id, bytes)).toEqual(msg);
        }),
        { numRuns: RUNS },
      );
      expect(built).toBeGreaterThan(RUNS / 2);
    });
  }

  it('whole V2G messages of ISO-2, DIN and every -20 message type round-trip', () => {
    const cases: [SchemaId, string][] = [['iso2', 'V2G_Message'], ['din', 'V2G_Message']];
    for (const id of ['iso20', 'iso20ac', 'iso20dc'] as SchemaId[]) {
      for (const d of schema(id).doc) if (/(Req|Res)$/.test(d.key) && d.grammar) cases.push([id, d.key]);
    }
    let n = 0;
    for (const [id, root] of cases) {
      const g = schema(id).doc.find((d) => d.key === root)!.grammar!;
      for (let seed = 1; seed <= 8; seed++) {
        const v = randomElement(mulberry32(seed * 7919 + root.length), g, 12);
        if (v === undefined) continue;
        const msg = { [root]: v };
        expect(decodeAny(id, encodeAny(id, msg)), `${id} ${root} seed ${seed}`).toEqual(msg);
        n++;
      }
    }
    expect(n).toBeGreaterThan(cases.length * 4);
  });
});

describe('EXI compiled codecs agree with the grammar interpreter', () => {
  it('on random messages of every schema: same bytes, same decoded message, and the fast path is taken', async () => {
    const { decodeDocumentInterpreted, encodeDocumentInterpreted, fastPathStats } = await import('../../firmware/exi/runtime.ts');
    const before = { ...fastPathStats };
    let n = 0;
    for (const id of SCHEMA_IDS) {
      const s = schema(id);
      for (let seed = 1; seed <= 60; seed++) {
        const msg = randomDocument(mulberry32(seed * 104729 + id.length), s);
        if (!msg) continue;
        const fast = encodeAny(id, msg);
        expect(Buffer.from(fast).toString('hex')).toBe(Buffer.from(encodeDocumentInterpreted(s, msg)).toString('hex'));
        expect(decodeAny(id, fast)).toEqual(decodeDocumentInterpreted(s, fast));
        n++;
      }
    }
    expect(n).toBeGreaterThan(400);
    // Valid messages never need the interpreter.
    expect(fastPathStats.encodeFallbacks).toBe(before.encodeFallbacks);
    expect(fastPathStats.decodeFallbacks).toBe(before.decodeFallbacks);
  });
});

describe('EXI fragments round trip', () => {
  it('every fragment element of ISO-2 and xmldsig: encodeFragment → decodeFragment is the identity', async () => {
    const { encodeFragment, decodeFragment } = await import('../../firmware/exi/index.ts');
    let n = 0;
    for (const id of ['iso2', 'xmldsig'] as const) {
      const s = schema(id);
      for (const f of s.frag) {
        if (!f.grammar) continue;
        const v = randomElement(mulberry32(f.name * 31 + 7), f.grammar, 8);
        if (v === undefined) continue;
        const element = { [f.key]: v } as never;
        expect(decodeFragment(id, encodeFragment(id, element)), `${id} ${f.key}`).toEqual(element);
        n++;
      }
    }
    expect(n).toBeGreaterThan(200);
  });
});
