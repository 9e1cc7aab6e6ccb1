import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SCHEMA_DIR, GENERATED_DIR, generateAll, SCHEMA_SETS } from './main.ts';

/** The committed generated codecs are exactly what the generator makes of the XSDs (when the schemas are present). */
const schemaDir = process.env.EVCC_SCHEMAS ?? DEFAULT_SCHEMA_DIR;

describe('EXI generator', () => {
  it.skipIf(!existsSync(schemaDir))('regenerating from the XSDs reproduces the committed firmware/exi/generated/*', () => {
    const fresh = generateAll(schemaDir);
    expect([...fresh.keys()].sort()).toEqual(SCHEMA_SETS.map((s) => `${s.id}.ts`).sort());
    for (const [file, text] of fresh) expect(text, `${file} is stale: run npm run gen:exi`).toBe(readFileSync(join(GENERATED_DIR, file), 'utf8'));
  });
});
