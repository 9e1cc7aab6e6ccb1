import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Every regular file below `dir` (recursively); a missing dir gives none. For "nothing secret on disk" scans. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}
