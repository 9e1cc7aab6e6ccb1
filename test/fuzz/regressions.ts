/**
 * The saved failures: test/fuzz/regressions/<family>/<hash>.bin|json, one reproducible case each, replayed by
 * regressions.test.ts in `npm test`.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { caseHash, stableJson, type CaseFile } from './core.ts';

export const REGRESSIONS_DIR = fileURLToPath(new URL('./regressions', import.meta.url));

/** Writes one case; returns its path (the same case twice is one file). */
export function saveCase(family: string, file: CaseFile, dir = REGRESSIONS_DIR): string {
  const d = join(dir, family);
  mkdirSync(d, { recursive: true });
  const path = join(d, `${caseHash(file)}.${file.ext}`);
  writeFileSync(path, file.ext === 'bin' ? file.data : `${stableJson(file.data)}\n`);
  return path;
}

export interface SavedCase {
  family: string;
  name: string;
  file: CaseFile;
}

export function loadCases(dir = REGRESSIONS_DIR): SavedCase[] {
  if (!existsSync(dir)) return [];
  const out: SavedCase[] = [];
  for (const family of readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort()) {
    for (const name of readdirSync(join(dir, family)).sort()) {
      const p = join(dir, family, name);
      if (name.endsWith('.bin')) out.push({ family, name, file: { ext: 'bin', data: new Uint8Array(readFileSync(p)) } });
      else if (name.endsWith('.json')) out.push({ family, name, file: { ext: 'json', data: JSON.parse(readFileSync(p, 'utf8')) as unknown } });
    }
  }
  return out;
}
