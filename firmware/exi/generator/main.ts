import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSchema } from './build.ts';
import { emitModule } from './emit.ts';
import { SchemaSet } from './xsd.ts';

/**
 * `npm run gen:exi [-- --schemas DIR] [--out DIR]`: regenerates firmware/exi/generated/* from the XSDs.
 * The generated modules are committed; builds and tests do not need the schemas.
 */
export const SCHEMA_SETS: { id: string; title: string; entry: string }[] = [
  { id: 'appHandshake', title: 'SupportedAppProtocol (urn:iso:15118:2:2010:AppProtocol)', entry: 'appProtocol/V2G_CI_AppProtocol.xsd' },
  { id: 'iso2', title: 'ISO 15118-2:2013 (urn:iso:15118:2:2013:MsgDef)', entry: 'iso15118-2/V2G_CI_MsgDef.xsd' },
  { id: 'din', title: 'DIN SPEC 70121:2012 (urn:din:70121:2012:MsgDef)', entry: 'din70121/V2G_CI_MsgDef.xsd' },
  { id: 'iso20', title: 'ISO 15118-20 CommonMessages (urn:iso:std:iso:15118:-20:CommonMessages)', entry: 'iso15118-20/V2G_CI_CommonMessages.xsd' },
  { id: 'iso20ac', title: 'ISO 15118-20 AC (urn:iso:std:iso:15118:-20:AC)', entry: 'iso15118-20/V2G_CI_AC.xsd' },
  { id: 'iso20dc', title: 'ISO 15118-20 DC (urn:iso:std:iso:15118:-20:DC)', entry: 'iso15118-20/V2G_CI_DC.xsd' },
  { id: 'iso20acdp', title: 'ISO 15118-20 ACDP (urn:iso:std:iso:15118:-20:ACDP)', entry: 'iso15118-20/V2G_CI_ACDP.xsd' },
  { id: 'iso20wpt', title: 'ISO 15118-20 WPT (urn:iso:std:iso:15118:-20:WPT)', entry: 'iso15118-20/V2G_CI_WPT.xsd' },
  { id: 'xmldsig', title: 'W3C XML Signature (http://www.w3.org/2000/09/xmldsig#)', entry: 'xmldsig-core-schema.xsd' },
];

export function generateAll(schemaDir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of SCHEMA_SETS) {
    const set = new SchemaSet();
    set.load(join(schemaDir, s.entry));
    out.set(`${s.id}.ts`, emitModule(s.id, s.title, [s.entry], buildSchema(set)));
  }
  return out;
}

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_SCHEMA_DIR = resolve(here, '../../../../shared/schemas');
export const GENERATED_DIR = resolve(here, '../generated');

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string): string => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] ? resolve(args[i + 1]!) : dflt;
  };
  const schemaDir = opt('--schemas', process.env.EVCC_SCHEMAS ?? DEFAULT_SCHEMA_DIR);
  const outDir = opt('--out', GENERATED_DIR);
  mkdirSync(outDir, { recursive: true });
  for (const [file, text] of generateAll(schemaDir)) {
    writeFileSync(join(outDir, file), text);
    console.log(`wrote ${join(outDir, file)} (${text.length} bytes)`);
  }
}
