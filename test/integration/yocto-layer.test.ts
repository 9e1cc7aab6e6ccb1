import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkKasFile,
  checkLayer,
  checkLicenseEntries,
  parseAssignments,
  platformBoundPackages,
  shrinkwrapCoverage,
  valueOf,
  type KasConfig,
} from '../../deploy/yocto/check-layer.ts';
import { describeWith, tool } from '../support/prereq.ts';

/**
 * Issue #12 "Yocto layer that a real build accepts", kept honest without bitbake or network: the layer check
 * (deploy/yocto/check-layer.ts), the release step that makes the npm shrinkwrap (scripts/release-shrinkwrap.mjs,
 * run against a registry on 127.0.0.1 that serves the lock's own integrity values), and the kas file validated by
 * Debian's kas with its own schema.
 */
const execFileAsync = promisify(execFile);
const repo = process.cwd();
const layer = join(repo, 'yocto-layer/meta-evcc');
const kasFile = join(repo, 'yocto-layer/kas/evcc-rpi.yml');
const releaseScript = join(repo, 'scripts/release-shrinkwrap.mjs');
/** kas repositories pinned to their scarthgap branch, not a commit (the kas file says why). */
const BRANCH_PINNED = ['meta-rauc', 'meta-security'];

type Entry = { version?: string; integrity?: string; resolved?: string; dev?: boolean; license?: string; name?: string };
type Lock = { name: string; version: string; lockfileVersion: number; packages: Record<string, Entry> };
const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as Lock;
const prodPaths = Object.entries(lock.packages)
  .filter(([p, e]) => p !== '' && !e.dev)
  .map(([p]) => p);
const nameOf = (path: string, e: Entry) => e.name ?? path.slice(path.lastIndexOf('node_modules/') + 13);

function scratchLayer(): string {
  const dir = mkdtempSync(join(tmpdir(), 'evcc-yocto-layer-'));
  cpSync(layer, join(dir, 'meta-evcc'), { recursive: true, filter: (src) => !src.includes('/release/') });
  return join(dir, 'meta-evcc');
}
function edit(file: string, from: string | RegExp, to: string): void {
  const text = readFileSync(file, 'utf8');
  const next = text.replace(from, to);
  if (next === text) throw new Error(`fixture edit found nothing to replace in ${file}`);
  writeFileSync(file, next);
}

describe('yocto layer: the offline check', () => {
  it('passes on the layer as committed', () => {
    expect(checkLayer(layer, repo)).toEqual([]);
  });

  it('claims scarthgap only and depends on meta-networking for tcpdump', () => {
    const conf = parseAssignments(readFileSync(join(layer, 'conf/layer.conf'), 'utf8'));
    expect(valueOf(conf, 'LAYERSERIES_COMPAT_evcc')).toBe('scarthgap');
    expect(valueOf(conf, 'LAYERDEPENDS_evcc')?.split(' ')).toContain('networking-layer');
    expect(readFileSync(join(layer, 'conf/distro/evcc.conf'), 'utf8')).toMatch(/^INIT_MANAGER = "systemd"$/m);
  });

  it('pins the source by a variable the release sets, never AUTOREV', () => {
    const recipe = parseAssignments(readFileSync(join(layer, 'recipes-evcc/evcc/evcc_git.bb'), 'utf8'));
    expect(valueOf(recipe, 'SRCREV')).toBe('${EVCC_SRCREV}');
    expect(valueOf(recipe, 'SRC_URI')).toMatch(/npmsw:\/\/\$\{EVCC_RELEASE_DIR\}\/npm-shrinkwrap\.json/);
  });

  it('finds each kind of fault it is there for', () => {
    const copy = scratchLayer();
    try {
      edit(join(copy, 'recipes-core/rauc/rauc-conf.bbappend'), 'FILESEXTRAPATHS:prepend', 'FILESEXTRAPATHS_prepend');
      edit(join(copy, 'recipes-core/rauc/rauc-conf.bbappend'), /$/, '\nSRC_URI:append = " file://system.conf file://absent.conf"\n');
      edit(join(copy, 'recipes-evcc/evcc/evcc_git.bb'), 'md5=3b83ef96387f14655fc854ddc3c6bd57', 'md5=set-by-release');
      edit(join(copy, 'recipes-evcc/evcc/evcc_git.bb'), 'SRCREV = "${EVCC_SRCREV}"', 'SRCREV ?= "${AUTOREV}"');
      edit(join(copy, 'recipes-evcc/evcc/evcc_git.bb'), 'EVCC_UNITS = "evcc-boot.service ', 'EVCC_UNITS = "');
      edit(join(copy, 'conf/layer.conf'), 'LAYERSERIES_COMPAT_evcc = "scarthgap"', 'LAYERSERIES_COMPAT_evcc = "scarthgap styhead"');
      edit(join(copy, 'conf/layer.conf'), ' networking-layer', '');
      const findings = checkLayer(copy, repo).join('\n');
      expect(findings).toMatch(/rauc-conf\.bbappend:\d+: old override syntax "FILESEXTRAPATHS_prepend"/);
      expect(findings).toMatch(/file:\/\/system\.conf is in SRC_URI twice/);
      expect(findings).toMatch(/file:\/\/absent\.conf not found/);
      expect(findings).toMatch(/LIC_FILES_CHKSUM LICENSE has no real md5 \(set-by-release\)/);
      expect(findings).toMatch(/AUTOREV needs network at parse time/);
      expect(findings).toMatch(/deploy\/systemd\/evcc-boot\.service is not installed/);
      expect(findings).toMatch(/styhead moved to \$\{UNPACKDIR\}/);
      expect(findings).toMatch(/RDEPENDS tcpdump needs layer networking-layer/);
    } finally {
      rmSync(join(copy, '..'), { recursive: true, force: true });
    }
  });

  it('computes licence checksums the way OE does (a line range hashes the bytes of those lines)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'evcc-lic-'));
    try {
      writeFileSync(join(dir, 'package.json'), '{\n  "name": "x",\n  "license": "MIT",\n  "version": "1.0.0"\n}\n');
      const lineMd5 = createHash('md5').update('  "license": "MIT",\n').digest('hex');
      const wrong = 'file://package.json;beginline=3;endline=3;md5=8b8b0d8e1c4a2c0c9f02fd4d8d1b4b0a';
      expect(checkLicenseEntries(`file://package.json;beginline=3;endline=3;md5=${lineMd5}`, dir, 't')).toEqual([]);
      expect(checkLicenseEntries(wrong, dir, 't')[0]).toMatch(/md5 8b8b0d8e1c4a2c0c9f02fd4d8d1b4b0a but the file has/);
      expect(checkLicenseEntries('file://missing;md5=00000000000000000000000000000000', dir, 't')[0]).toMatch(/does not exist/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no production package is bound to an OS or CPU (npmsw would install it on every target)', () => {
    expect(platformBoundPackages(lock)).toEqual([]);
    const withEsbuild = structuredClone(lock) as Lock & { packages: Record<string, Entry & { cpu?: string[] }> };
    withEsbuild.packages['node_modules/@esbuild/linux-x64'] = { version: '0.25.0', integrity: 'sha512-x', cpu: ['x64'] };
    expect(platformBoundPackages(withEsbuild)).toEqual([expect.stringMatching(/^node_modules\/@esbuild\/linux-x64: production package bound to os=\* cpu=x64/)]);
  });

  it('a prepared release next to the recipe (never committed) matches the current lock', () => {
    const prepared = join(layer, 'recipes-evcc/evcc/release/npm-shrinkwrap.json');
    const tracked = execFileSync('git', ['ls-files', 'yocto-layer/meta-evcc/recipes-evcc/evcc/release'], { cwd: repo, encoding: 'utf8' });
    expect(tracked.split('\n').filter((f) => f && !f.endsWith('.gitignore'))).toEqual([]);
    if (!existsSync(prepared)) return;
    const findings = shrinkwrapCoverage(JSON.parse(readFileSync(prepared, 'utf8')), lock);
    expect(findings, 'stale release/: run node scripts/release-shrinkwrap.mjs again').toEqual([]);
  });
});

/** A registry on 127.0.0.1 answering abbreviated metadata for every package of the lock (its own integrity). */
function fakeRegistry(tamper?: string): Promise<{ server: Server; url: string; requests: string[] }> {
  const byName = new Map<string, Record<string, { dist: { tarball: string; integrity?: string } }>>();
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '/').slice(1));
    requests.push(name);
    const versions = byName.get(name);
    if (!versions || !/application\/vnd\.npm\.install-v1\+json/.test(req.headers.accept ?? '')) {
      res.writeHead(404).end('{}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name, versions }));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      for (const [path, e] of Object.entries(lock.packages)) {
        if (path === '' || !e.version) continue;
        const name = nameOf(path, e);
        const versions = byName.get(name) ?? {};
        const base = name.split('/').at(-1);
        const integrity = name === tamper ? 'sha512-AAAA' : e.integrity;
        versions[e.version] = { dist: { tarball: `${url}${name}/-/${base}-${e.version}.tgz`, integrity } };
        byName.set(name, versions);
      }
      resolve({ server, url, requests });
    });
  });
}

describe('yocto layer: the release step fills the shrinkwrap from the configured registry', () => {
  let registry: { server: Server; url: string; requests: string[] };
  let out: string;
  const srcrev = 'ab'.repeat(20);
  beforeAll(async () => {
    registry = await fakeRegistry();
    out = mkdtempSync(join(tmpdir(), 'evcc-release-'));
    await execFileAsync(process.execPath, [releaseScript, '--lock', join(repo, 'package-lock.json'), '--srcrev', srcrev, '--registry', registry.url, '--out', out], { cwd: repo });
  });
  afterAll(() => {
    registry?.server.close();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('covers every production dependency of package-lock.json, resolved, and nothing else', () => {
    const shrinkwrap = JSON.parse(readFileSync(join(out, 'npm-shrinkwrap.json'), 'utf8')) as Lock;
    expect(shrinkwrapCoverage(shrinkwrap, lock)).toEqual([]);
    const entries = Object.entries(shrinkwrap.packages).filter(([p]) => p !== '');
    expect(entries.map(([p]) => p).sort()).toEqual([...prodPaths].sort());
    expect(entries.every(([, e]) => e.resolved?.startsWith(registry.url))).toBe(true);
    expect(entries.some(([p]) => /@esbuild\/|node_modules\/(tsx|vitest|typescript)$/.test(p))).toBe(false);
    expect(shrinkwrap.packages['']).not.toHaveProperty('devDependencies');
  });

  it('resolves the TypeScript compiler separately, for the build step only', () => {
    const tools = JSON.parse(readFileSync(join(out, 'build-tools-shrinkwrap.json'), 'utf8')) as Lock;
    expect(Object.keys(tools.packages).sort()).toEqual(['', 'node_modules/typescript']);
    expect(tools.packages['node_modules/typescript']).toMatchObject({
      version: lock.packages['node_modules/typescript']!.version,
      integrity: lock.packages['node_modules/typescript']!.integrity,
    });
    expect(tools.packages['node_modules/typescript']!.resolved).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/typescript\/-\/typescript-/);
  });

  it('writes the release include: the pinned commit and every npm licence with a real checksum', () => {
    const inc = parseAssignments(readFileSync(join(out, 'evcc-release.inc'), 'utf8'));
    expect(valueOf(inc, 'EVCC_SRCREV')).toBe(srcrev);
    const chksums = valueOf(inc, 'EVCC_NPM_LIC_FILES_CHKSUM')!;
    expect(chksums.split(' ')).toHaveLength(prodPaths.length);
    expect(checkLicenseEntries(chksums, repo, 'evcc-release.inc')).toEqual([]);
    const declared = valueOf(inc, 'EVCC_NPM_LICENSE')!;
    for (const p of prodPaths) expect(declared, p).toContain(lock.packages[p]!.license!.replace(/[()]/g, '').split(' ')[0]);
  });

  it('refuses a registry whose tarball integrity differs from the lock', async () => {
    const bad = await fakeRegistry('zod');
    const dir = mkdtempSync(join(tmpdir(), 'evcc-release-bad-'));
    try {
      const run = execFileAsync(process.execPath, [releaseScript, '--lock', join(repo, 'package-lock.json'), '--srcrev', srcrev, '--registry', bad.url, '--out', dir], { cwd: repo });
      await expect(run).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/^release-shrinkwrap: zod@[\d.]+: the registry's integrity sha512-AAAA differs from the lock's/) });
      expect(existsSync(join(dir, 'npm-shrinkwrap.json'))).toBe(false);
    } finally {
      bad.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the coverage check names a dropped, an unresolved and a dev entry', () => {
    const shrinkwrap = JSON.parse(readFileSync(join(out, 'npm-shrinkwrap.json'), 'utf8')) as Lock;
    const [first, second] = prodPaths;
    delete shrinkwrap.packages[first!];
    delete shrinkwrap.packages[second!]!.resolved;
    shrinkwrap.packages['node_modules/tsx'] = { ...lock.packages['node_modules/tsx'], dev: true };
    const findings = shrinkwrapCoverage(shrinkwrap, lock).join('\n');
    expect(findings).toContain(`${first}@${lock.packages[first!]!.version}: production dependency missing`);
    expect(findings).toContain(`${second}: no resolved URL`);
    expect(findings).toContain('node_modules/tsx: marked dev');
  });
});

describeWith([tool('kas')])('yocto layer: the kas file', () => {
  const loadWithKas = (file: string) =>
    execFileSync('/usr/bin/python3', ['-c', 'import json, sys\nfrom kas.includehandler import load_config\nprint(json.dumps(load_config(sys.argv[1])))', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  it("passes kas's own schema and version check, and names the layers the layer depends on", () => {
    const kas = JSON.parse(loadWithKas(kasFile)) as KasConfig;
    expect(checkKasFile(kas, repo, layer, BRANCH_PINNED)).toEqual([]);
    expect(kas.repos?.poky?.refspec).toMatch(/^[0-9a-f]{40}$/);
  });

  it('kas rejects a file its schema does not allow, and the structure check a missing layer', () => {
    const dir = mkdtempSync(join(tmpdir(), 'evcc-kas-'));
    try {
      const broken = join(dir, 'broken.yml');
      writeFileSync(broken, readFileSync(kasFile, 'utf8').replace('machine:', 'machines:'));
      expect(() => loadWithKas(broken)).toThrow(/validat/i);
      const kas = JSON.parse(loadWithKas(kasFile)) as KasConfig;
      delete kas.repos!['meta-openembedded']!.layers!['meta-networking'];
      kas.repos!.poky!.refspec = 'scarthgap';
      const findings = checkKasFile(kas, repo, layer, BRANCH_PINNED).join('\n');
      expect(findings).toContain('LAYERDEPENDS networking-layer needs meta-openembedded/meta-networking');
      expect(findings).toContain('poky refspec scarthgap is not a commit');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
