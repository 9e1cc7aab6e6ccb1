import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeAny, encodeAny, ExiError, type SchemaId } from '../../firmware/exi/index.ts';
import { exiVectorsPath, vectorSchema } from './exi-support.ts';

/**
 * Must show 1 (issue #3): the 417 public messages decode to exactly their `decoded` form and re-encode
 * bit-identically; the flagged edge cases behave as their `expected_result` says.
 */
interface Vector {
  id: number;
  source: string;
  schema: string;
  message: string;
  hex: string;
  decoded: unknown;
  expected_result?: string;
  note?: string;
}

const vectors = JSON.parse(readFileSync(exiVectorsPath('exi-public.json'), 'utf8')) as Vector[];
const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * The one vector decoded by EXIficient (V2Gdecoder) prints EXIficient's XML→JSON convention: numbers as strings,
 * hexBinary upper case, base64Binary (here DigestValue) as base64, a single repeated child as a bare object, an
 * empty element as "". Compare in that convention.
 */
function exificientConvention(v: unknown, key = ''): unknown {
  if (key === 'DigestValue' && typeof v === 'string') return Buffer.from(v, 'hex').toString('base64');
  if (Array.isArray(v)) return v.length === 1 ? exificientConvention(v[0]) : v.map((x) => exificientConvention(x));
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'string') return /^[0-9a-f]+$/i.test(v) && v.length >= 16 ? v.toUpperCase() : v;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v);
    if (entries.length === 0) return '';
    return Object.fromEntries(entries.map(([k, x]) => [k, exificientConvention(x, k)]));
  }
  return v;
}

function decodeError(schema: SchemaId, hex: string): unknown {
  try {
    decodeAny(schema, bytes(hex));
    return undefined;
  } catch (err) {
    return err;
  }
}

const plain = vectors.filter((v) => !v.expected_result && !v.source.includes('EXIficient'));

describe('EXI public vectors: decode exactly, re-encode bit-identically', () => {
  it('the vector file has the 417 messages of six schemas', () => {
    expect(vectors).toHaveLength(417);
    expect(new Set(vectors.map((v) => vectorSchema(v.schema)))).toEqual(new Set(['appHandshake', 'iso2', 'din', 'iso20', 'iso20dc', 'iso20ac']));
  });

  for (const schemaName of [...new Set(plain.map((v) => v.schema))]) {
    it(`${schemaName}: ${plain.filter((v) => v.schema === schemaName).length} messages`, () => {
      const schema = vectorSchema(schemaName);
      for (const v of plain.filter((x) => x.schema === schemaName)) {
        const decoded = decodeAny(schema, bytes(v.hex));
        expect(decoded, `vector ${v.id} ${v.message}`).toEqual(v.decoded);
        expect(toHex(encodeAny(schema, decoded)), `vector ${v.id} ${v.message} re-encoding`).toBe(v.hex);
      }
    });
  }
});

describe('EXI public vectors: flagged edge cases', () => {
  const flagged = vectors.filter((v) => v.expected_result);
  it('has the flagged cases this test knows about', () => {
    expect(flagged.map((v) => v.id).sort((a, b) => a - b)).toEqual([43, 52, 128, 183, 185, 187, 191, 217]);
  });

  it('truncated streams are rejected with EXI_TRUNCATED (43, 52); 43 decodes once its padding byte is back', () => {
    for (const v of flagged.filter((x) => x.expected_result!.startsWith('must FAIL'))) {
      const err = decodeError(vectorSchema(v.schema), v.hex);
      expect(err, `vector ${v.id}`).toBeInstanceOf(ExiError);
      expect((err as ExiError).code).toBe('EXI_TRUNCATED');
    }
    const v43 = vectors[43]!;
    const fixed = decodeAny('iso2', bytes(`${v43.hex}00`));
    // The source printed this decoder's input with upper-case SessionID and boolean EVReady; values are equal.
    expect(JSON.stringify(fixed).toLowerCase().replace(/"evready":1/, '"evready":true')).toBe(JSON.stringify(v43.decoded).toLowerCase());
  });

  it('string-table value hits decode (183, 185, 187) and re-encode bit-identically with valueHits', () => {
    for (const id of [183, 185, 187]) {
      const v = vectors[id]!;
      const schema = vectorSchema(v.schema);
      const decoded = decodeAny(schema, bytes(v.hex));
      expect(decoded, `vector ${id}`).toEqual(v.decoded);
      expect(toHex(encodeAny(schema, decoded, { valueHits: true }))).toBe(v.hex);
      // Without hits (the ISO 15118 stacks' way) the same message is the hit-free twin the note pairs it with.
      const twin = vectors[id - 1]!;
      expect(twin.decoded).toEqual(v.decoded);
      expect(toHex(encodeAny(schema, decoded))).toBe(twin.hex);
    }
  });

  it('a second-level (undeclared) EE is valid non-strict EXI (128): decodes, and re-encodes identically when allowed', () => {
    const v = vectors[128]!;
    const decoded = decodeAny('iso2', bytes(v.hex));
    expect(exificientConvention(decoded)).toEqual(v.decoded);
    expect(toHex(encodeAny('iso2', decoded, { undeclaredEnd: true }))).toBe(v.hex);
    // By default the encoder refuses to drop mandatory content silently.
    expect(() => encodeAny('iso2', decoded)).toThrow(expect.objectContaining({ code: 'EXI_ENCODE_INVALID' }));
  });

  it('trailing bytes are ignored (191, 217); the canonical re-encoding is the hex without them', () => {
    for (const id of [191, 217]) {
      const v = vectors[id]!;
      const schema = vectorSchema(v.schema);
      const decoded = decodeAny(schema, bytes(v.hex));
      expect(decoded).toEqual(v.decoded);
      // 217 carries an 18-character eMAID where ISO-2 allows 15: re-encoding a field trace needs the facet relaxed.
      const re = toHex(encodeAny(schema, decoded, { ignoreLengthFacets: id === 217 }));
      expect(v.hex.startsWith(re) && /^(00)+$/.test(v.hex.slice(re.length))).toBe(true);
      if (id === 217) expect(() => encodeAny(schema, decoded)).toThrow(expect.objectContaining({ code: 'EXI_ENCODE_INVALID' }));
    }
  });

  it('a NUL character inside a string survives decode and encode (vector 2)', () => {
    const v = vectors[2]!;
    const decoded = decodeAny('appHandshake', bytes(v.hex)) as { supportedAppProtocolReq: { AppProtocol: { ProtocolNamespace: string }[] } };
    expect(decoded.supportedAppProtocolReq.AppProtocol[0]!.ProtocolNamespace.endsWith('\u0000')).toBe(true);
    expect(toHex(encodeAny('appHandshake', decoded))).toBe(v.hex);
  });
});
