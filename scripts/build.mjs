// Production build: the device runs JavaScript, never TypeScript through a transpiler (no tsx, no cache a local
// user could plant code in). tsc compiles the product's layers into dist/ (imports rewritten from .ts to .js), then
// the files the code reads at run time next to itself are copied: the charger-simulator scenarios, the dashboard's
// static screen and the AF_PACKET addon when it is built. The output is not committed (.gitignore).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
// `node scripts/build.mjs [outDir]`: tests and benches build their own tree (another test rebuilds dist/ meanwhile).
const dist = process.argv[2] ? resolve(process.argv[2]) : join(repo, 'dist');
rmSync(dist, { recursive: true, force: true });
const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(repo, 'tsconfig.build.json'), '--outDir', dist], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

const assets = [
  ['sim/secc/scenarios', (f) => f.endsWith('.json')],
  ['deploy/dashboard/static', (f) => /\.(html|js|css)$/.test(f)],
  // the initramfs measurement hook: the bench runs the image's own script (boot/measure-hook.ts)
  ['boot/initramfs', () => true],
];
for (const [dir, keep] of assets) {
  const from = join(repo, dir);
  if (!existsSync(from)) continue;
  mkdirSync(join(dist, dir), { recursive: true });
  for (const f of readdirSync(from).filter(keep)) cpSync(join(from, f), join(dist, dir, f));
}
const addon = join(repo, 'hal/plc/native/build/Release/afpacket.node');
if (existsSync(addon)) {
  mkdirSync(join(dist, 'hal/plc/native/build/Release'), { recursive: true });
  cpSync(addon, join(dist, 'hal/plc/native/build/Release/afpacket.node'));
}
console.log(`build: dist/ ready (${join('dist', 'bin', 'evcc.js')})`);
