import { execFile, spawn } from 'node:child_process';
import { mkdtemp, mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = process.cwd();

/**
 * The device runs JavaScript, not TypeScript through a transpiler (issue: tsx's shared cache let a local user plant
 * code that root ran). `npm run build` produces dist/; an "installed" layout holds dist/ and the production
 * dependencies only — no tsx, no esbuild, no typescript — and the product runs from it on plain node.
 */
let home: string;

beforeAll(async () => {
  await run(process.execPath, [join(repo, 'scripts/build.mjs')], { cwd: repo, timeout: 120_000 });
  home = await mkdtemp(join(tmpdir(), 'evcc-installed-'));
  await symlink(join(repo, 'dist'), join(home, 'dist'));
  // node_modules with the production dependency tree only (npm's own view of it).
  const { stdout } = await run('npm', ['ls', '--omit=dev', '--parseable', '--all'], { cwd: repo, maxBuffer: 8 << 20 }).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
  const top = new Set<string>();
  for (const p of stdout.split('\n')) {
    const rel = relative(join(repo, 'node_modules'), p);
    if (!p || rel.startsWith('..') || rel === '') continue;
    const parts = rel.split('/');
    top.add(parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!);
  }
  for (const name of top) {
    await mkdir(dirname(join(home, 'node_modules', name)), { recursive: true });
    await symlink(join(repo, 'node_modules', name), join(home, 'node_modules', name));
  }
}, 180_000);

afterAll(async () => {
  if (home) await rm(home, { recursive: true, force: true });
});

describe('production build: the installed layout runs on plain node, without any transpiler', () => {
  it('holds no tsx, esbuild or typescript, and dist has no TypeScript to run', async () => {
    const installed = await readdir(join(home, 'node_modules'));
    expect(installed).not.toContain('tsx');
    expect(installed).not.toContain('esbuild');
    expect(installed).not.toContain('typescript');
    expect(installed).toContain('commander'); // the check can fail: production deps are there
    const r = await run(process.execPath, ['-e', "import('tsx').then(() => process.exit(3), () => process.exit(0))"], { cwd: home }).then(() => 0, (e: { code: number }) => e.code);
    expect(r).toBe(0);
  });

  it('the main job (--no-tpm) runs a whole session from dist/ and evcc --help lists the commands', async () => {
    const help = await run(process.execPath, [join(home, 'dist/bin/evcc.js'), '--help'], { cwd: home });
    expect(help.stdout).toMatch(/bench-session/);
    const child = spawn(process.execPath, [join(home, 'dist/bin/evcc.js'), 'bench-session', '--no-tpm', '--json'], { cwd: home, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code, err.slice(-3000)).toBe(0);
    const report = JSON.parse(out) as { ok: boolean; protocol: string; endReason: { code: string } };
    expect(report).toMatchObject({ ok: true, protocol: 'iso2', endReason: { code: 'SESSION_COMPLETED' } });
    expect(err).not.toMatch(/tsx|esbuild/);
  }, 120_000);
});
