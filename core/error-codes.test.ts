import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isRegisteredCode } from './error-codes.ts';
import { describeCode } from './errors.ts';

/**
 * The closure of the code registry (ARCHITECTURE.md: "declared once in the code registry in core/"): every code
 * literal the product raises is in ERROR_CODES, and ERROR_CODES holds no code that nothing raises.
 * The scan is textual, like the import scanner of test/architecture.test.ts; it knows the ways codes are raised here.
 */
const LAYERS = ['core', 'hal', 'firmware', 'boot', 'sim', 'deploy', 'bin'];
/** A stable code: upper-case words joined by `_` (`ABORTED`, `SLAC_TIMEOUT_MATCH`). */
const CODE = String.raw`[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*`;

/** Callees whose first argument is an error code: EvccError, its subclasses, the `xxxError` / `fail` / `xxxStop` helpers. */
const RAISING_CALLEE = /^(?:[A-Za-z]\w*Error|fail|fault|refuse|failOrEnd|[a-z]\w*Stop)$/;
/** Callees that match RAISING_CALLEE by name but take no code of ours: the bench vehicle's EVErrorCode (an EXI enum). */
const NOT_RAISING = new Set(['injectError']);
/** Unions named like code unions that hold protocol values: the vehicle's EVErrorCode of ISO 15118-2 / DIN (EXI enum). */
const NOT_CODE_UNIONS = new Set(['EvErrorCode']);
/** Where `code: '…'` in an object literal is a StopReason, a readiness refusal or a repeat-until-timeout code. */
const STOP_REASON_AREAS = [/^firmware\/session\//, /^firmware\/vehicle\//];

/**
 * Codes built at run time, which no literal names. The session engine prefixes its per-exchange codes with the protocol
 * module's `codePrefix` (`this.code('TIMEOUT')` → ISO2_TIMEOUT, DIN_TIMEOUT, or SESSION_TIMEOUT with no module yet):
 * the scan finds the suffixes and the prefixes and lists every combination, so nothing needs to be listed by hand here.
 */
const ENGINE_DEFAULT_PREFIX = 'SESSION';
const DYNAMIC_ALLOWED: readonly string[] = [];

export interface Found { code: string; where: string }

export function codesIn(rel: string, source: string): Found[] {
  const out: Found[] = [];
  const add = (code: string, index: number): void => {
    out.push({ code, where: `${rel}:${source.slice(0, index).split('\n').length}` });
  };
  for (const m of source.matchAll(new RegExp(String.raw`(?:new\s+)?([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\(\s*'(${CODE})'`, 'g'))) {
    const callee = m[1]!.split('.').pop()!;
    if (RAISING_CALLEE.test(callee) && !NOT_RAISING.has(callee)) add(m[2]!, m.index);
  }
  if (STOP_REASON_AREAS.some((re) => re.test(rel))) {
    for (const m of source.matchAll(new RegExp(String.raw`\bcode:\s*'(${CODE})'`, 'g'))) add(m[1]!, m.index);
  }
  // The session engine's `this.failOrEnd(now, 'SESSION_EFFECT_TIMEOUT', …)`: the code is the second argument.
  for (const m of source.matchAll(new RegExp(String.raw`\bfailOrEnd\(\s*\w+\s*,\s*'(${CODE})'`, 'g'))) add(m[1]!, m.index);
  // Declared code unions: `type SlacErrorCode = | 'A' | 'B';`, `type DinStopCode = …`.
  for (const m of source.matchAll(/\btype\s+(\w*(?:Error|Stop)Code)\s*=([^;]*);/g)) {
    if (NOT_CODE_UNIONS.has(m[1]!)) continue;
    const body = m[2]!.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    for (const lit of body.matchAll(new RegExp(String.raw`'(${CODE})'`, 'g'))) add(lit[1]!, m.index);
  }
  // Code tables: `export const DIN_ERRORS = { DIN_SESSION_ID_INVALID: { failure: true }, … }`.
  for (const m of source.matchAll(/\bconst\s+[A-Z0-9_]+_ERRORS\s*=\s*\{([\s\S]*?)\n\}/g)) {
    const body = m[1]!.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    for (const key of body.matchAll(new RegExp(String.raw`^\s*(${CODE})\s*:`, 'gm'))) add(key[1]!, m.index);
  }
  // Fallbacks that stand for a failure without a code of ours: `isEvccError(err) ? err.code : 'INTERNAL'`, `e.code ?? 'X'`.
  for (const m of source.matchAll(new RegExp(String.raw`\.code\s*(?:\?\?|:)\s*'(${CODE})'`, 'g'))) add(m[1]!, m.index);
  // Node-style codes on errors that are not EvccErrors (they reach logs as transport errors): `readonly code = '…'`.
  for (const m of source.matchAll(new RegExp(String.raw`\breadonly\s+code\s*=\s*'(${CODE})'`, 'g'))) add(m[1]!, m.index);
  // Engine codes built from the module prefix: `this.code('TIMEOUT')`.
  for (const m of source.matchAll(/\bthis\.code\(\s*'([A-Z0-9_]+)'\s*\)/g)) add(`${ENGINE_DEFAULT_PREFIX}_${m[1]!}`, m.index);
  return out;
}

/** Module prefixes (`codePrefix: 'ISO2'`) combined with the engine's suffixes. */
export function prefixedCodes(files: ReadonlyArray<{ rel: string; source: string }>): Found[] {
  const prefixes = new Set<string>();
  const suffixes: Array<{ suffix: string; where: string }> = [];
  for (const { rel, source } of files) {
    for (const m of source.matchAll(/\bcodePrefix:\s*'([A-Z0-9]+)'/g)) prefixes.add(m[1]!);
    for (const m of source.matchAll(/\bthis\.code\(\s*'([A-Z0-9_]+)'\s*\)/g)) {
      suffixes.push({ suffix: m[1]!, where: `${rel}:${source.slice(0, m.index).split('\n').length}` });
    }
  }
  return [...prefixes].flatMap((p) => suffixes.map((s) => ({ code: `${p}_${s.suffix}`, where: s.where })));
}

/** Unit tests and test harnesses (scripted / hostile chargers) fake errors of others (a socket's ECONNRESET). */
const TEST_ONLY = /(?:\.test|-support|^test-[\w-]+)\.ts$/;

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules') continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.name.endsWith('.ts') && !TEST_ONLY.test(e.name)) out.push(p);
  }
  return out;
}

async function scanTree(): Promise<Found[]> {
  const root = process.cwd();
  const files: Array<{ rel: string; source: string }> = [];
  for (const layer of LAYERS) {
    for (const file of await walk(join(root, layer))) {
      const rel = relative(root, file).split('\\').join('/');
      if (rel === 'core/error-codes.ts') continue; // the registry itself is not a use
      files.push({ rel, source: await readFile(file, 'utf8') });
    }
  }
  return [...files.flatMap((f) => codesIn(f.rel, f.source)), ...prefixedCodes(files)];
}

describe('error code registry (core/error-codes.ts)', () => {
  it('the scanner finds codes in constructors, helpers, stop reasons, unions and tables — and flags an unregistered one', () => {
    const src = [
      "throw new EvccError('SLAC_TIMEOUT_MATCH', 'no match');",
      "throw new SlacError(\n  'SLAC_MADE_UP_CODE', 'x');",
      "return fail('APPHAND_TIMEOUT', 'late');",
      "bench.injectError('NO_ERROR');",
      "log.info({ cp: 'SESSION_SETUP_OK' });",
      "if (s === 'EVSE_EmergencyShutdown') return dinStop('DIN_EV_ERROR', 'x');",
      "export type FooErrorCode = 'FOO_ONE' // one\n  | 'FOO_TWO';",
      "export const FOO_ERRORS = {\n  /** a */\n  FOO_THREE: { failure: true },\n} as const;",
      "const r = { code: 'SESSION_COMPLETED', message: 'done' };",
      "const c = isEvccError(err) ? err.code : 'INTERNAL';",
    ].join('\n');
    const found = codesIn('firmware/session/x.ts', src).map((f) => f.code).sort();
    expect(found).toEqual(['APPHAND_TIMEOUT', 'DIN_EV_ERROR', 'FOO_ONE', 'FOO_THREE', 'FOO_TWO', 'INTERNAL', 'SESSION_COMPLETED', 'SLAC_MADE_UP_CODE', 'SLAC_TIMEOUT_MATCH']);
    expect(found.filter((c) => !isRegisteredCode(c))).toEqual(['FOO_ONE', 'FOO_THREE', 'FOO_TWO', 'SLAC_MADE_UP_CODE']);
    // `code:` outside the session / vehicle areas is not a stop reason.
    expect(codesIn('hal/x.ts', "const r = { code: 'SESSION_COMPLETED' };")).toEqual([]);
  });

  it('engine codes are listed for every module prefix and the default one', () => {
    const files = [
      { rel: 'firmware/session/engine.ts', source: "return this.failOrEnd(now, this.code('TIMEOUT'), 'late');" },
      { rel: 'firmware/session/iso2/module.ts', source: "codePrefix: 'ISO2'," },
      { rel: 'firmware/session/din/module.ts', source: "codePrefix: 'DIN'," },
    ];
    const all = [...files.flatMap((f) => codesIn(f.rel, f.source)), ...prefixedCodes(files)].map((f) => f.code).sort();
    expect(all).toEqual(['DIN_TIMEOUT', 'ISO2_TIMEOUT', 'SESSION_TIMEOUT']);
  });

  it('every code the product raises is registered', async () => {
    const unregistered = (await scanTree()).filter((f) => !isRegisteredCode(f.code)).map((f) => `${f.code} (${f.where})`);
    expect(unregistered).toEqual([]);
  });

  it('the registry holds no dead code', async () => {
    const used = new Set([...(await scanTree()).map((f) => f.code), ...DYNAMIC_ALLOWED]);
    expect(Object.keys(ERROR_CODES).filter((c) => !used.has(c))).toEqual([]);
  });

  it('every entry has one line of meaning, and describeCode reads it', () => {
    for (const [code, meaning] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(new RegExp(`^${CODE}$`));
      expect(meaning.length, code).toBeGreaterThan(8);
      expect(meaning, code).not.toContain('\n');
    }
    expect(describeCode('SLAC_TIMEOUT_MATCH')).toBe(ERROR_CODES.SLAC_TIMEOUT_MATCH);
    expect(describeCode('NOT_A_CODE')).toBeUndefined();
    expect(isRegisteredCode('NOT_A_CODE')).toBe(false);
  });
});
