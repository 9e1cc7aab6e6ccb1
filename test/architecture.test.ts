import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The house rule of ARCHITECTURE.md §2, enforced: nothing in firmware/ touches hardware or the OS directly.
 * It may import hal/ *interfaces* (`hal/<part>/types.ts`) only; concrete drivers are wired in bin/ (composition root).
 * Build-time tools (the EXI generator) and co-located unit tests are exempt.
 */
const FORBIDDEN_MODULES = [
  /^node:(fs|fs\/promises|net|dgram|tls|child_process|os|http|https|http2|cluster|worker_threads)$/,
  /^(fs|net|dgram|tls|child_process|os)$/,
  /^(serialport|@serialport\/.*|node-pty|execa|mqtt|aedes)$/,
];
const EXEMPT = [/\.test\.ts$/, /^firmware\/exi\/generator\//];

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

export function importsOf(source: string): string[] {
  const specs: string[] = [];
  const re = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (const m of source.matchAll(re)) specs.push((m[1] ?? m[2] ?? m[3])!);
  return specs;
}

describe('architecture: firmware/ imports interfaces only', () => {
  it('the import scanner sees static, side-effect and dynamic imports', () => {
    const src = "import { a } from 'node:fs';\nimport 'x';\nconst m = await import('mqtt');\nexport { b } from '../hal/plc/sim.ts';";
    expect(importsOf(src).sort()).toEqual(['../hal/plc/sim.ts', 'mqtt', 'node:fs', 'x']);
  });

  it('no firmware module imports a concrete driver or an OS I/O module', async () => {
    const root = process.cwd();
    const violations: string[] = [];
    for (const file of await walk(join(root, 'firmware'))) {
      const rel = relative(root, file);
      if (EXEMPT.some((re) => re.test(rel))) continue;
      for (const spec of importsOf(await readFile(file, 'utf8'))) {
        if (FORBIDDEN_MODULES.some((re) => re.test(spec))) violations.push(`${rel} imports ${spec}`);
        if (spec.includes('/hal/') || spec.startsWith('hal/')) {
          if (!/\/hal\/[a-z0-9-]+\/types\.ts$/.test(spec)) violations.push(`${rel} imports concrete ${spec}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });
});

/**
 * The layer matrix of ARCHITECTURE.md §2: core ← hal ← firmware ← boot | sim | deploy ← bin. A layer imports only
 * itself and the layers below. sim (the bench world: chargers, modem, OEM backend, vehicle factory) may use the
 * OEM tooling in deploy/ and the boot steps; boot and deploy never import each other or sim.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  core: ['core'],
  hal: ['core', 'hal'],
  firmware: ['core', 'hal', 'firmware'],
  boot: ['core', 'hal', 'firmware', 'boot'],
  deploy: ['core', 'hal', 'firmware', 'deploy'],
  sim: ['core', 'hal', 'firmware', 'boot', 'deploy', 'sim'],
  bin: ['core', 'hal', 'firmware', 'boot', 'deploy', 'sim', 'bin'],
};

describe('architecture: the layer matrix', () => {
  it('every layer imports only itself and the layers below it', async () => {
    const root = process.cwd();
    const violations: string[] = [];
    for (const [layer, allowed] of Object.entries(MAY_IMPORT)) {
      for (const file of await walk(join(root, layer))) {
        const rel = relative(root, file);
        if (/\.test\.ts$/.test(rel)) continue;
        for (const spec of importsOf(await readFile(file, 'utf8'))) {
          if (!spec.startsWith('.')) continue;
          const target = relative(root, resolve(dirname(file), spec)).split('/')[0]!;
          if (target in MAY_IMPORT && !allowed.includes(target)) violations.push(`${rel} (${layer}) imports ${spec} (${target})`);
        }
      }
    }
    expect(violations).toEqual([]);
  });
});
