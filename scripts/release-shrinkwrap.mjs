#!/usr/bin/env node
// Release step for the Yocto build (yocto-layer/meta-evcc): turns the release's package-lock.json into what the
// recipe's npmsw:// fetcher needs, written to yocto-layer/meta-evcc/recipes-evcc/evcc/release/ (not committed):
//   npm-shrinkwrap.json        production dependencies only, each with `resolved` (tarball URL) and `integrity`
//   build-tools-shrinkwrap.json  the TypeScript compiler the recipe's build step runs (a devDependency, never installed)
//   evcc-release.inc           EVCC_SRCREV (the commit the lock was read from) and the npm licences with checksums
// Why a step of its own: this machine's npm writes lock files without `resolved` (omit-lockfile-registry-resolved),
// and the npmsw fetcher silently skips every entry without one — it would fetch 0 dependencies. `resolved` comes from
// the registry the release builder has configured (`npm config get registry`, or --registry), and every tarball's
// integrity there must equal the lock's: a registry serving other bytes than the ones we tested stops the release.
//
//   node scripts/release-shrinkwrap.mjs [--rev <git rev>] [--registry <url>] [--out <dir>]
//   node scripts/release-shrinkwrap.mjs --lock <package-lock.json> --srcrev <40 hex> [...]   (lock from a file)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
export const RELEASE_DIR = join(repo, 'yocto-layer/meta-evcc/recipes-evcc/evcc/release');
/** devDependencies the recipe needs at build time (tsc compiles dist/); fetched, used in do_compile, never installed. */
export const BUILD_TOOLS = ['typescript'];

class ReleaseError extends Error {}

/** The package name of a lock entry: `node_modules/a/node_modules/@s/b` → `@s/b` (an alias entry carries `name`). */
export function packageName(lockPath, entry) {
  return entry.name ?? lockPath.slice(lockPath.lastIndexOf('node_modules/') + 'node_modules/'.length);
}

/** Lock entries installed in production: not dev-only, not the root, not links or bundled copies. */
export function productionEntries(lock) {
  if (!lock || typeof lock.packages !== 'object' || (lock.lockfileVersion ?? 0) < 2) {
    throw new ReleaseError('package-lock.json: lockfileVersion 2 or later with a "packages" map is required');
  }
  const out = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.dev || entry.inBundle) continue;
    if (entry.link) throw new ReleaseError(`${path}: linked (workspace) packages cannot be fetched by npmsw`);
    if (!entry.version || !entry.integrity) throw new ReleaseError(`${path}: no version/integrity in the lock`);
    out.push([path, entry]);
  }
  return out;
}

/** npm licence expression → OE LICENSE syntax ("(MIT OR Apache-2.0)" → "(MIT | Apache-2.0)"). */
export function oeLicense(spdx, where) {
  if (typeof spdx !== 'string' || !/^[\w.+\-() ]+$/.test(spdx) || /^(UNLICENSED|SEE LICENSE)/i.test(spdx)) {
    throw new ReleaseError(`${where}: no usable SPDX licence in the lock (${JSON.stringify(spdx)})`);
  }
  return spdx.replace(/\s+OR\s+/g, ' | ').replace(/\s+AND\s+/g, ' & ').replace(/\+$/, '');
}

const LICENSE_FILE = /^(licen[cs]e|copying)(\.(md|txt|markdown|mit|bsd|apache|apache-2\.0))?$/i;

/**
 * The LIC_FILES_CHKSUM entry of one installed package: its licence file's md5, or — for a package that ships none —
 * the md5 of the `"license"` line of its package.json (beginline=endline=N, the bytes of that line with its newline,
 * which is how OE's licence QA hashes a line range).
 */
export function licenseChecksum(pkgDir, lockPath) {
  const file = readdirSync(pkgDir).filter((f) => LICENSE_FILE.test(f)).sort()[0];
  if (file) {
    return `file://${lockPath}/${file};md5=${createHash('md5').update(readFileSync(join(pkgDir, file))).digest('hex')}`;
  }
  const lines = readFileSync(join(pkgDir, 'package.json'), 'utf8').split(/(?<=\n)/);
  const n = lines.findIndex((l) => /^\s*"license"\s*:/.test(l));
  if (n < 0) throw new ReleaseError(`${lockPath}: neither a licence file nor a "license" line in package.json`);
  const md5 = createHash('md5').update(lines[n]).digest('hex');
  return `file://${lockPath}/package.json;beginline=${n + 1};endline=${n + 1};md5=${md5}`;
}

/** Registry metadata URL of a package (scoped names keep the @ and encode the slash, as npm does). */
export function packumentUrl(registry, name) {
  return new URL(name.replace('/', '%2f'), registry.endsWith('/') ? registry : `${registry}/`).href;
}

async function fetchPackument(registry, name) {
  const headers = { accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8' };
  if (process.env.EVCC_REGISTRY_TOKEN) headers.authorization = `Bearer ${process.env.EVCC_REGISTRY_TOKEN}`;
  const url = packumentUrl(registry, name);
  let res;
  try {
    res = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    throw new ReleaseError(`${name}: registry unreachable (${url}): ${e.cause?.code ?? e.message}`);
  }
  if (!res.ok) throw new ReleaseError(`${name}: registry answered ${res.status} for ${url}`);
  return res.json();
}

/** Fills `resolved` for every entry from the registry's metadata; the registry's integrity must equal the lock's. */
export async function resolveEntries(entries, registry, concurrency = 8) {
  const packuments = new Map();
  const packument = (name) => {
    if (!packuments.has(name)) packuments.set(name, fetchPackument(registry, name));
    return packuments.get(name);
  };
  const out = new Array(entries.length);
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const i = next++;
      const [path, entry] = entries[i];
      const name = packageName(path, entry);
      const dist = (await packument(name)).versions?.[entry.version]?.dist;
      if (!dist?.tarball) throw new ReleaseError(`${name}@${entry.version}: not on the registry ${registry}`);
      if (dist.integrity !== entry.integrity) {
        throw new ReleaseError(
          `${name}@${entry.version}: the registry's integrity ${dist.integrity ?? '(none)'} differs from the lock's ` +
            `${entry.integrity}: refusing to release other bytes than the ones tested`,
        );
      }
      out[i] = [path, { ...entry, resolved: dist.tarball }];
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, entries.length || 1) }, worker));
  return out;
}

/** The shrinkwrap npm.bbclass reads: root entry without devDependencies, the given entries without dev flags. */
export function shrinkwrapOf(lock, resolvedEntries, rootOverride) {
  const root = { ...lock.packages[''] };
  delete root.devDependencies;
  const packages = { '': rootOverride ?? root };
  for (const [path, entry] of resolvedEntries) {
    const e = { ...entry };
    if (e.devOptional) e.optional = true;
    delete e.dev;
    delete e.devOptional;
    packages[path] = e;
  }
  const { name, version } = packages[''];
  return { name, version, lockfileVersion: 3, requires: true, packages };
}

function buildToolEntries(lock) {
  return BUILD_TOOLS.map((name) => {
    const path = `node_modules/${name}`;
    const entry = lock.packages[path];
    if (!entry?.version || !entry.integrity) throw new ReleaseError(`${path}: build tool missing from the lock`);
    return [path, entry];
  });
}

/** evcc-release.inc: the pinned source revision and the npm licences (LICENSE expression + LIC_FILES_CHKSUM). */
export function releaseInc({ srcrev, entries, modulesDir }) {
  const licenses = new Set();
  const chksums = [];
  for (const [path, entry] of entries) {
    licenses.add(oeLicense(entry.license, path));
    const dir = join(modulesDir, path.slice('node_modules/'.length));
    let installed;
    try {
      installed = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version;
    } catch {
      installed = undefined;
    }
    if (installed !== entry.version) {
      throw new ReleaseError(`${path}: installed ${installed ?? 'nothing'}, lock says ${entry.version}: run npm ci first`);
    }
    chksums.push(licenseChecksum(dir, path));
  }
  const expr = [...licenses].sort().map((l) => (/[|&]/.test(l) && !/^\(.*\)$/.test(l) ? `(${l})` : l));
  return [
    '# Generated by scripts/release-shrinkwrap.mjs: the release this layer builds. Not committed; regenerate per release.',
    `EVCC_SRCREV = "${srcrev}"`,
    `EVCC_NPM_LICENSE = "${expr.join(' & ')}"`,
    'EVCC_NPM_LIC_FILES_CHKSUM = " \\',
    ...chksums.map((c) => `    ${c} \\`),
    '"',
    '',
  ].join('\n');
}

function git(args) {
  return execFileSync('git', args, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

async function main() {
  const { values } = parseArgs({
    options: {
      rev: { type: 'string' },
      lock: { type: 'string' },
      srcrev: { type: 'string' },
      registry: { type: 'string' },
      out: { type: 'string' },
      modules: { type: 'string' },
    },
  });
  let lockText;
  let srcrev;
  if (values.lock) {
    if (!/^[0-9a-f]{40}$/.test(values.srcrev ?? '')) throw new ReleaseError('--lock needs --srcrev <40-hex commit>');
    lockText = readFileSync(values.lock, 'utf8');
    srcrev = values.srcrev;
  } else {
    // The lock of the commit the image builds, not of the working tree: SRCREV and shrinkwrap must agree.
    const rev = values.rev ?? 'HEAD';
    try {
      srcrev = git(['rev-parse', '--verify', `${rev}^{commit}`]);
      lockText = git(['show', `${srcrev}:package-lock.json`]);
    } catch (e) {
      throw new ReleaseError(`git: cannot read package-lock.json at ${rev}: ${String(e.stderr ?? e.message).trim()}`);
    }
  }
  let lock;
  try {
    lock = JSON.parse(lockText);
  } catch (e) {
    throw new ReleaseError(`package-lock.json is not JSON: ${e.message}`);
  }
  const registry =
    values.registry ?? execFileSync('npm', ['config', 'get', 'registry'], { cwd: repo, encoding: 'utf8' }).trim();
  if (!/^https?:\/\//.test(registry)) throw new ReleaseError(`registry must be an http(s) URL, got ${registry}`);
  const out = resolve(values.out ?? RELEASE_DIR);
  const modulesDir = resolve(values.modules ?? join(repo, 'node_modules'));

  const prod = await resolveEntries(productionEntries(lock), registry);
  const tools = await resolveEntries(buildToolEntries(lock), registry);
  const toolsRoot = {
    name: 'evcc-build-tools',
    version: lock.version,
    dependencies: Object.fromEntries(tools.map(([p, e]) => [packageName(p, e), e.version])),
  };
  const inc = releaseInc({ srcrev, entries: prod, modulesDir });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'npm-shrinkwrap.json'), `${JSON.stringify(shrinkwrapOf(lock, prod), null, 2)}\n`);
  writeFileSync(
    join(out, 'build-tools-shrinkwrap.json'),
    `${JSON.stringify(shrinkwrapOf(lock, tools, toolsRoot), null, 2)}\n`,
  );
  writeFileSync(join(out, 'evcc-release.inc'), inc);
  console.log(
    `release-shrinkwrap: ${prod.length} production packages and ${tools.length} build tool(s) resolved from ` +
      `${registry}; EVCC_SRCREV=${srcrev}; written to ${out}`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((e) => {
    console.error(`release-shrinkwrap: ${e instanceof ReleaseError ? e.message : (e?.stack ?? e)}`);
    process.exit(1);
  });
}
