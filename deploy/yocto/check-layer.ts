/**
 * The offline check of the Yocto layer (yocto-layer/meta-evcc) and its kas file: what a real bitbake parse and build
 * found wrong once (issue #12), checked without bitbake or network so CI keeps the layer honest.
 * Every check returns findings (one line each, naming the file); an empty list means the layer passes.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';

/** One assignment of a bitbake metadata file: `NAME[:override…] op "value"` (continuation lines joined). */
export interface Assignment {
  name: string;
  op: string;
  value: string;
  line: number;
}

const ASSIGN = /^(?:export\s+)?([A-Za-z0-9_${}.\-+/~:]+?)(\[[^\]]*\])?\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*"(.*)"\s*$/s;

/** The assignments of a .bb/.bbappend/.conf/.inc text; function bodies and python blocks are skipped. */
export function parseAssignments(text: string): Assignment[] {
  const out: Assignment[] = [];
  const lines = text.split('\n');
  let depth = 0;
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let logical = lines[i]!;
    while (logical.endsWith('\\') && i + 1 < lines.length) logical = `${logical.slice(0, -1)} ${lines[++i]}`;
    const trimmed = logical.trim();
    if (depth > 0) {
      depth += (trimmed.match(/\{/g) ?? []).length - (trimmed.match(/\}/g) ?? []).length;
      continue;
    }
    if (/\)\s*\{\s*$/.test(trimmed) || /^python\b.*\{\s*$/.test(trimmed)) {
      depth = 1;
      continue;
    }
    if (trimmed.startsWith('#') || trimmed === '') continue;
    const m = ASSIGN.exec(trimmed);
    if (m && !m[2]) out.push({ name: m[1]!, op: m[3]!, value: m[4]!.replace(/\s+/g, ' ').trim(), line: start + 1 });
  }
  return out;
}

/** The last plain value of a variable in one file (`NAME = …`, `?=`, `??=`, `:=`), or undefined. */
export function valueOf(assignments: Assignment[], name: string): string | undefined {
  return assignments.filter((a) => a.name === name && /^(\?\?=|\?=|:=|=)$/.test(a.op)).at(-1)?.value;
}

/** Expands `${NAME}` from the given variables; unknown names stay as they are. */
export function expand(value: string, vars: Record<string, string | undefined>): string {
  return value.replace(/\$\{([A-Za-z0-9_:-]+)\}/g, (whole, name: string) => vars[name] ?? whole);
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

const METADATA = /\.(bb|bbappend|bbclass|conf|inc)$/;

/** The release series this layer may claim, oldest first; every one after scarthgap unpacks into ${UNPACKDIR}. */
export const KNOWN_SERIES = ['kirkstone', 'langdale', 'mickledore', 'nanbield', 'scarthgap', 'styhead', 'walnascar', 'whinlatter'];
const UNPACKDIR_SERIES = new Set(['styhead', 'walnascar', 'whinlatter']);

/** Layer collections that provide packages the layer's recipes runtime-depend on (what bitbake -p resolves). */
export const PROVIDER_LAYER: Record<string, string> = {
  nodejs: 'openembedded-layer',
  tcpdump: 'networking-layer',
  'tpm2-tools': 'tpm-layer',
  'libtss2-tcti-device': 'tpm-layer',
  rauc: 'rauc',
};

/** kas repository/layer path that holds each collection a layer may depend on. */
export const COLLECTION_IN_KAS: Record<string, string> = {
  core: 'poky/meta',
  'openembedded-layer': 'meta-openembedded/meta-oe',
  'meta-python': 'meta-openembedded/meta-python',
  'networking-layer': 'meta-openembedded/meta-networking',
  'tpm-layer': 'meta-security/meta-tpm',
  rauc: 'meta-rauc',
  raspberrypi: 'meta-raspberrypi',
};

/** SRC_URI files:// of recipes outside this layer that our bbappends override (their own SRC_URI, by recipe). */
export const UPSTREAM_FILES: Record<string, string[]> = {
  'rauc-conf': ['system.conf', '${RAUC_KEYRING_FILE}'],
  'rpi-u-boot-scr': ['boot.cmd.in'],
};

/** layer.conf: the keys bitbake needs, a series claim it can honour, and the dependencies the recipes need. */
export function checkLayerConf(layerDir: string): string[] {
  const findings: string[] = [];
  const file = join(layerDir, 'conf/layer.conf');
  if (!existsSync(file)) return [`${file}: missing`];
  const a = parseAssignments(readFileSync(file, 'utf8'));
  const collection = a.find((x) => x.name === 'BBFILE_COLLECTIONS')?.value.trim();
  if (!collection) return ['conf/layer.conf: BBFILE_COLLECTIONS not set'];
  for (const key of ['BBPATH', 'BBFILES', `BBFILE_PATTERN_${collection}`, `BBFILE_PRIORITY_${collection}`, `LAYERVERSION_${collection}`, `LAYERSERIES_COMPAT_${collection}`, `LAYERDEPENDS_${collection}`]) {
    if (!a.some((x) => x.name === key)) findings.push(`conf/layer.conf: ${key} not set`);
  }
  const compat = (valueOf(a, `LAYERSERIES_COMPAT_${collection}`) ?? '').split(/\s+/).filter(Boolean);
  for (const s of compat) if (!KNOWN_SERIES.includes(s)) findings.push(`conf/layer.conf: unknown release series "${s}"`);
  const depends = new Set((valueOf(a, `LAYERDEPENDS_${collection}`) ?? '').split(/\s+/).filter(Boolean));
  for (const recipe of walk(layerDir).filter((f) => /\.(bb|bbappend)$/.test(f))) {
    for (const x of parseAssignments(readFileSync(recipe, 'utf8'))) {
      if (!/^RDEPENDS:/.test(x.name)) continue;
      for (const pkg of x.value.split(/\s+/)) {
        const needed = PROVIDER_LAYER[pkg];
        if (needed && !depends.has(needed)) {
          findings.push(`${relative(layerDir, recipe)}: RDEPENDS ${pkg} needs layer ${needed}, not in LAYERDEPENDS_${collection}`);
        }
      }
    }
  }
  return findings;
}

/** The series the layer claims (LAYERSERIES_COMPAT of its collection). */
export function claimedSeries(layerDir: string): string[] {
  const a = parseAssignments(readFileSync(join(layerDir, 'conf/layer.conf'), 'utf8'));
  const collection = a.find((x) => x.name === 'BBFILE_COLLECTIONS')?.value.trim() ?? '';
  return (valueOf(a, `LAYERSERIES_COMPAT_${collection}`) ?? '').split(/\s+/).filter(Boolean);
}

/** No old override syntax (`_append`, `_prepend`, `_remove`, `_${PN}`, `_pn-`, `_class-`): scarthgap refuses it. */
export function checkOverrideSyntax(layerDir: string): string[] {
  const findings: string[] = [];
  const OLD = [
    /\b[A-Za-z][A-Za-z0-9_]*_(append|prepend|remove)\b(?=[\s_:+.=?(]|$)/,
    /\b[A-Za-z][A-Za-z0-9_]*_\$\{PN\}/,
    /\b[A-Z][A-Z0-9_]*_(pn|class)-/,
  ];
  for (const file of walk(layerDir).filter((f) => METADATA.test(f))) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (line.trim().startsWith('#')) return;
        for (const re of OLD) {
          const m = re.exec(line);
          if (m) findings.push(`${relative(layerDir, file)}:${i + 1}: old override syntax "${m[0]}"`);
        }
      });
  }
  return findings;
}

/** Recipe name of a .bb/.bbappend file name: `evcc_git.bb` → evcc, `libubootenv_%.bbappend` → libubootenv. */
export function recipeName(file: string): string {
  return basename(file).replace(/\.(bb|bbappend)$/, '').replace(/_.*$/, '');
}

/**
 * Every file:// a recipe or bbappend names exists where bitbake's FILESPATH looks (the recipe's files/ and <BPN>/),
 * and none is listed twice for one recipe (counting the SRC_URI of the upstream recipe a bbappend extends).
 * Files are fetched into ${WORKDIR} only before styhead: a `${WORKDIR}/<file>` install is checked against the claim.
 */
export function checkRecipeFiles(layerDir: string, sourceDir?: string): string[] {
  const findings: string[] = [];
  const series = claimedSeries(layerDir);
  for (const recipe of walk(layerDir).filter((f) => /\.(bb|bbappend)$/.test(f))) {
    const rel = relative(layerDir, recipe);
    const text = readFileSync(recipe, 'utf8');
    const a = parseAssignments(text);
    const vars: Record<string, string | undefined> = { BPN: recipeName(recipe), PN: recipeName(recipe), EVCC_REPO_DIR: sourceDir };
    for (const x of a) if (/^(\?\?=|\?=|:=|=)$/.test(x.op) && !x.name.includes(':')) vars[x.name] = x.value;
    const named: string[] = recipe.endsWith('.bbappend') ? [...(UPSTREAM_FILES[recipeName(recipe)] ?? [])] : [];
    for (const x of a.filter((x) => /^SRC_URI(:|$)/.test(x.name))) {
      for (const uri of x.value.split(/\s+/)) if (uri.startsWith('file://')) named.push(uri.slice(7).split(';')[0]!);
    }
    const seen = new Set<string>();
    for (const raw of named) {
      const name = expand(raw, vars);
      if (seen.has(name)) findings.push(`${rel}: file://${name} is in SRC_URI twice`);
      seen.add(name);
      if (name.includes('${')) {
        findings.push(`${rel}: cannot resolve file://${raw}`);
        continue;
      }
      const dir = dirname(recipe);
      const candidates = name.startsWith('/') ? [name] : [join(dir, 'files', name), join(dir, vars.BPN!, name)];
      if (!candidates.some((c) => existsSync(c))) findings.push(`${rel}: file://${name} not found (files/ or ${vars.BPN}/)`);
    }
    if (/\$\{WORKDIR\}\/[\w.-]+/.test(text) && series.some((s) => UNPACKDIR_SERIES.has(s))) {
      findings.push(`${rel}: installs from \${WORKDIR}/<file>, which ${series.filter((s) => UNPACKDIR_SERIES.has(s)).join('/')} moved to \${UNPACKDIR}`);
    }
    const wks = valueOf(a, 'WKS_FILE');
    if (wks && !existsSync(join(layerDir, 'wic', wks))) findings.push(`${rel}: WKS_FILE ${wks} not in wic/`);
  }
  return findings;
}

/** md5 as OE's licence QA computes it: whole file, or the bytes of lines beginline..endline (newlines included). */
export function licenseMd5(file: string, beginline?: number, endline?: number): string {
  const bytes = readFileSync(file);
  if (!beginline && !endline) return createHash('md5').update(bytes).digest('hex');
  const lines = bytes.toString('latin1').split(/(?<=\n)/);
  const picked = lines.slice((beginline ?? 1) - 1, endline ?? lines.length).join('');
  return createHash('md5').update(Buffer.from(picked, 'latin1')).digest('hex');
}

/** Checks `file://path;md5=…[;beginline=;endline=]` entries against files under the first root holding them (${S}). */
export function checkLicenseEntries(entries: string, root: string | string[], where: string): string[] {
  const roots = [root].flat();
  const findings: string[] = [];
  for (const uri of entries.split(/\s+/).filter((u) => u.startsWith('file://'))) {
    const [path, ...params] = uri.slice(7).split(';');
    const p = Object.fromEntries(params.map((kv) => kv.split('=') as [string, string]));
    if (path!.includes('${')) continue; // ${COREBASE}/… belongs to another layer
    const file = roots.map((r) => join(r, path!)).find((f) => existsSync(f));
    if (!file) {
      findings.push(`${where}: LIC_FILES_CHKSUM names ${path}, which does not exist`);
      continue;
    }
    if (!/^[0-9a-f]{32}$/.test(p.md5 ?? '')) {
      findings.push(`${where}: LIC_FILES_CHKSUM ${path} has no real md5 (${p.md5 ?? 'none'})`);
      continue;
    }
    const actual = licenseMd5(file, p.beginline ? Number(p.beginline) : undefined, p.endline ? Number(p.endline) : undefined);
    if (actual !== p.md5) findings.push(`${where}: LIC_FILES_CHKSUM ${path} md5 ${p.md5} but the file has ${actual}`);
  }
  return findings;
}

/**
 * Every recipe declares LICENSE; every LIC_FILES_CHKSUM matches its file: the evcc recipe's in the source tree (its
 * ${S} is the git checkout), a recipe of local files' in its files/ or <BPN>/ (its ${S} is then ${WORKDIR}).
 */
export function checkLicenses(layerDir: string, sourceDir: string): string[] {
  const findings: string[] = [];
  for (const recipe of walk(layerDir).filter((f) => f.endsWith('.bb'))) {
    const rel = relative(layerDir, recipe);
    const a = parseAssignments(readFileSync(recipe, 'utf8'));
    const license = valueOf(a, 'LICENSE');
    if (!license) findings.push(`${rel}: no LICENSE`);
    const chksum = valueOf(a, 'LIC_FILES_CHKSUM');
    if (chksum === undefined) continue;
    const dir = dirname(recipe);
    const roots = recipeName(recipe) === 'evcc' ? [sourceDir] : [join(dir, 'files'), join(dir, recipeName(recipe)), sourceDir];
    findings.push(...checkLicenseEntries(chksum, roots, rel));
  }
  return findings;
}

/** What the evcc recipe takes from the source tree exists, is shipped by the package, and covers every unit. */
export function checkEvccRecipeSources(layerDir: string, sourceDir: string): string[] {
  const findings: string[] = [];
  const recipe = walk(layerDir).find((f) => recipeName(f) === 'evcc' && f.endsWith('.bb'));
  if (!recipe) return ['no evcc recipe in the layer'];
  const rel = relative(layerDir, recipe);
  const text = readFileSync(recipe, 'utf8');
  const pkg = JSON.parse(readFileSync(join(sourceDir, 'package.json'), 'utf8')) as { files?: string[] };
  const shipped = (path: string) => (pkg.files ?? []).some((f) => path === f || path.startsWith(`${f}/`));
  const installBody = /do_install:append\(\)\s*\{([\s\S]*?)\n\}/.exec(text)?.[1] ?? '';
  for (const m of installBody.matchAll(/\$\{S\}\/([\w./-]+)/g)) {
    const path = m[1]!.replace(/\/\$.*$/, '').replace(/\/$/, '');
    if (!existsSync(join(sourceDir, path))) findings.push(`${rel}: do_install reads \${S}/${path}, not in the source tree`);
    else if (!shipped(path)) findings.push(`${rel}: do_install reads \${S}/${path}, which package.json "files" does not ship (pruned before)`);
  }
  const units = (valueOf(parseAssignments(text), 'EVCC_UNITS') ?? '').split(/\s+/).filter(Boolean).sort();
  const present = readdirSync(join(sourceDir, 'deploy/systemd')).filter((f) => /\.(service|timer|socket|path)$/.test(f)).sort();
  for (const u of units) if (!present.includes(u)) findings.push(`${rel}: EVCC_UNITS names ${u}, not in deploy/systemd`);
  for (const u of present) if (!units.includes(u)) findings.push(`${rel}: deploy/systemd/${u} is not installed (EVCC_UNITS)`);
  if (/AUTOREV/.test(text.replace(/^\s*#.*$/gm, ''))) findings.push(`${rel}: AUTOREV needs network at parse time`);
  return findings;
}

interface LockEntry {
  version?: string;
  integrity?: string;
  resolved?: string;
  dev?: boolean;
  inBundle?: boolean;
  link?: boolean;
}
interface Lock {
  packages: Record<string, LockEntry>;
}

/** The shrinkwrap holds exactly the production packages of the lock, same version and integrity, each resolved. */
export function shrinkwrapCoverage(shrinkwrap: Lock, lock: Lock): string[] {
  const findings: string[] = [];
  const prod = Object.entries(lock.packages).filter(([p, e]) => p !== '' && !e.dev && !e.inBundle && !e.link);
  for (const [path, entry] of prod) {
    const s = shrinkwrap.packages[path];
    if (!s) findings.push(`${path}@${entry.version}: production dependency missing from the shrinkwrap`);
    else if (s.version !== entry.version || s.integrity !== entry.integrity) {
      findings.push(`${path}: shrinkwrap has ${s.version} (${s.integrity}), the lock ${entry.version} (${entry.integrity})`);
    } else if (!s.resolved || !/^https?:\/\//.test(s.resolved)) {
      findings.push(`${path}: no resolved URL (the npmsw fetcher would skip it)`);
    }
  }
  const prodPaths = new Set(prod.map(([p]) => p));
  for (const [path, e] of Object.entries(shrinkwrap.packages)) {
    if (path === '') continue;
    if (e.dev) findings.push(`${path}: marked dev in the shrinkwrap`);
    if (!prodPaths.has(path)) findings.push(`${path}: in the shrinkwrap but not a production dependency of the lock`);
  }
  return findings;
}

/**
 * Production packages bound to an OS or CPU (optional platform binaries such as @esbuild/*): the npmsw fetcher
 * fetches and the npm class installs every one of them whatever the target, and the foreign binaries fail QA.
 */
export function platformBoundPackages(lock: { packages: Record<string, LockEntry & { os?: string[]; cpu?: string[] }> }): string[] {
  return Object.entries(lock.packages)
    .filter(([p, e]) => p !== '' && !e.dev && (e.os !== undefined || e.cpu !== undefined))
    .map(([p, e]) => `${p}: production package bound to os=${e.os ?? '*'} cpu=${e.cpu ?? '*'} (would be installed on every target)`);
}

/** The kas file, structurally: repos pinned, layers present, the layer's distro, machine include and target exist. */
export function checkKasFile(kas: KasConfig, repoDir: string, layerDir: string, branchPinned: string[]): string[] {
  const findings: string[] = [];
  const layerPaths = new Set<string>();
  for (const [name, repo] of Object.entries(kas.repos ?? {})) {
    const layers = Object.keys(repo?.layers ?? {});
    if (!repo?.url) {
      for (const l of layers) if (!existsSync(join(repoDir, l, 'conf/layer.conf'))) findings.push(`kas: ${name}/${l} has no conf/layer.conf`);
      continue;
    }
    if (!repo.refspec) findings.push(`kas: ${name} names no revision`);
    else if (!/^[0-9a-f]{40}$/.test(repo.refspec) && !branchPinned.includes(name)) {
      findings.push(`kas: ${name} refspec ${repo.refspec} is not a commit`);
    }
    if (layers.length === 0) layerPaths.add(name);
    for (const l of layers) layerPaths.add(`${name}/${l}`);
  }
  const a = parseAssignments(readFileSync(join(layerDir, 'conf/layer.conf'), 'utf8'));
  const collection = a.find((x) => x.name === 'BBFILE_COLLECTIONS')?.value.trim() ?? '';
  for (const dep of (valueOf(a, `LAYERDEPENDS_${collection}`) ?? '').split(/\s+/).filter(Boolean)) {
    const where = COLLECTION_IN_KAS[dep];
    if (!where) findings.push(`kas: no known repository provides layer collection ${dep}`);
    else if (!layerPaths.has(where)) findings.push(`kas: LAYERDEPENDS ${dep} needs ${where}, which the kas file does not add`);
  }
  if (kas.distro && !existsSync(join(layerDir, 'conf/distro', `${kas.distro}.conf`)) && kas.distro !== 'poky') {
    findings.push(`kas: distro ${kas.distro} has no conf/distro/${kas.distro}.conf in the layer`);
  }
  for (const header of Object.values(kas.local_conf_header ?? {})) {
    for (const m of header.matchAll(/^\s*(?:require|include)\s+(\S+)/gm)) {
      if (!existsSync(join(layerDir, m[1]!))) findings.push(`kas: local.conf requires ${m[1]}, not in the layer`);
    }
  }
  for (const target of [kas.target ?? []].flat()) {
    if (!walk(layerDir).some((f) => f.endsWith('.bb') && basename(f).replace(/\.bb$/, '') === target)) {
      findings.push(`kas: target ${target} is not a recipe of the layer`);
    }
  }
  return findings;
}

export interface KasConfig {
  header?: { version?: number | string };
  machine?: string;
  distro?: string;
  target?: string | string[];
  repos?: Record<string, { url?: string; refspec?: string; layers?: Record<string, unknown> } | null>;
  local_conf_header?: Record<string, string>;
}

/** An image's INITRAMFS_IMAGE must be a recipe of the layer (recipes-evcc-boot). */
export function checkImages(layerDir: string): string[] {
  const findings: string[] = [];
  const recipes = walk(layerDir).filter((f) => f.endsWith('.bb'));
  for (const image of recipes) {
    const a = parseAssignments(readFileSync(image, 'utf8'));
    const initramfs = valueOf(a, 'INITRAMFS_IMAGE');
    if (initramfs && !recipes.some((f) => basename(f) === `${initramfs}.bb`)) {
      findings.push(`${relative(layerDir, image)}: INITRAMFS_IMAGE ${initramfs} is not a recipe of the layer`);
    }
  }
  return findings;
}

/** All checks of the layer against the source tree it builds. */
export function checkLayer(layerDir: string, sourceDir: string): string[] {
  if (!existsSync(layerDir) || !statSync(layerDir).isDirectory()) return [`${layerDir}: not a directory`];
  return [
    ...checkLayerConf(layerDir),
    ...checkOverrideSyntax(layerDir),
    ...checkRecipeFiles(layerDir, sourceDir),
    ...checkLicenses(layerDir, sourceDir),
    ...checkEvccRecipeSources(layerDir, sourceDir),
    ...checkImages(layerDir),
  ];
}
