import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SchemaId } from '../../firmware/exi/index.ts';

const here = dirname(fileURLToPath(import.meta.url));

/** The shared vectors (../shared/vectors next to the repo), overridable with EVCC_VECTORS. */
export function exiVectorsPath(file: string): string {
  const dir = process.env.EVCC_VECTORS ?? resolve(here, '../../../shared/vectors');
  const p = resolve(dir, file);
  if (!existsSync(p)) throw new Error(`EXI vectors not found at ${p} (set EVCC_VECTORS)`);
  return p;
}

const SCHEMAS: Record<string, SchemaId> = {
  appHandshake: 'appHandshake',
  'ISO15118-2': 'iso2',
  DIN70121: 'din',
  'ISO15118-20 CommonMessages': 'iso20',
  'ISO15118-20 DC': 'iso20dc',
  'ISO15118-20 AC': 'iso20ac',
};

export function vectorSchema(name: string): SchemaId {
  const id = SCHEMAS[name];
  if (!id) throw new Error(`unknown vector schema ${name}`);
  return id;
}
