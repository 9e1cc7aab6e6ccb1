import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packStates, unpackStates } from '../tables.ts';
import { buildSchema } from './build.ts';
import { DEFAULT_SCHEMA_DIR, GENERATED_DIR, generateAll, SCHEMA_SETS } from './main.ts';
import { SchemaSet } from './xsd.ts';

/** The committed generated codecs are exactly what the generator makes of the XSDs (when the schemas are present). */
const schemaDir = process.env.EVCC_SCHEMAS ?? DEFAULT_SCHEMA_DIR;

describe('EXI generator', () => {
  it.skipIf(!existsSync(schemaDir))('regenerating from the XSDs reproduces the committed firmware/exi/generated/*', () => {
    const fresh = generateAll(schemaDir);
    expect([...fresh.keys()].sort()).toEqual(SCHEMA_SETS.map((s) => `${s.id}.ts`).sort());
    for (const [file, text] of fresh) expect(text, `${file} is stale: run npm run gen:exi`).toBe(readFileSync(join(GENERATED_DIR, file), 'utf8'));
  });

  it.skipIf(!existsSync(schemaDir))('state packing (runs of unrolled repetitions) is lossless and shrinks -20', () => {
    const set = new SchemaSet();
    set.load(join(schemaDir, 'iso15118-20/V2G_CI_CommonMessages.xsd'));
    const { tables } = buildSchema(set);
    let before = 0;
    let after = 0;
    for (const g of tables.grammars) {
      const packed = packStates(g.s);
      expect(unpackStates(packed)).toEqual(g.s);
      before += g.s.length;
      after += packed.length;
    }
    expect(after).toBeLessThan(before / 3);
  });
});
