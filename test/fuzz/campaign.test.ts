/**
 * The short fuzz campaign of `npm test` (issue #13 item 9: "CI runs a short campaign"): every family for a few
 * thousand inputs, in process, zero crashes and zero slow inputs. The full campaign is `npm run fuzz`.
 * FUZZ_CI_INPUTS / FUZZ_CI_SEED override the size and the seed (default: a fixed seed, so CI is reproducible).
 */
import { execa } from 'execa';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCampaign } from './campaign.ts';
import { chunksOf, inputRng, mutateBytes, type CaseFile } from './core.ts';
import { FAMILY_NAMES, target } from './targets/index.ts';

const SEED = Number(process.env.FUZZ_CI_SEED ?? 13_009);
/** Per family; the session engine and the X.509/OTA checks cost ~1 ms an input, the byte decoders microseconds. */
const INPUTS: Record<string, number> = { session: 1_500, x509: 2_000, ota: 2_000 };
const DEFAULT_INPUTS = 4_000;
const inputsOf = (family: string) => Number(process.env.FUZZ_CI_INPUTS ?? INPUTS[family] ?? DEFAULT_INPUTS);

describe('short fuzz campaign', () => {
  for (const family of FAMILY_NAMES) {
    it(`${family}: ${inputsOf(family)} inputs, no crash, no slow input`, async () => {
      const t = await target(family);
      const r = await runCampaign(t, { seed: SEED, inputs: inputsOf(family) });
      const failures = r.failures.map((f) => `${f.kind} at input ${f.index}: ${f.message.split('\n').slice(0, 3).join(' | ')}`);
      expect(failures).toEqual([]);
      expect(r.crashes + r.slow).toBe(0);
      expect(r.inputs).toBe(inputsOf(family));
      // Both outcomes occur: the mutations reach past the first check, and the decoders do refuse.
      expect(r.ok).toBeGreaterThan(0);
      expect(r.rejected).toBeGreaterThan(0);
      // Saved cases replay: what the campaign would write reads back as the same input.
      const sample = t.toFile(t.generate(inputRng(family, SEED, 1_000_000), t.seeds()));
      const back = t.toFile(t.fromFile(JSON.parse(JSON.stringify(sample, binReplacer), binReviver) as CaseFile));
      expect(JSON.stringify(back, binReplacer)).toBe(JSON.stringify(sample, binReplacer));
    }, 120_000);
  }
});

describe('fuzz machinery', () => {
  it('inputs are a pure function of family, seed and index', () => {
    const a = mutateBytes(inputRng('exi', 1, 42), Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    const b = mutateBytes(inputRng('exi', 1, 42), Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(a).toEqual(b);
    expect(inputRng('exi', 1, 42)()).not.toBe(inputRng('exi', 1, 43)());
  });

  it('stream chunking keeps every byte after the cut byte, in order', () => {
    const input = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    for (const cut of [0, 1, 7, 70, 200]) {
      input[0] = cut;
      const chunks = chunksOf(input);
      expect(Buffer.concat(chunks)).toEqual(Buffer.from(input.subarray(1)));
      if (cut === 1) expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(4);
    }
  });

  it('an untyped throw is a crash, a typed one a rejection', async () => {
    const { EvccError } = await import('../../core/errors.ts');
    const fake = (thrown: unknown) => ({
      name: 'fake', what: 'fake', seeds: () => [new Uint8Array(1)], generate: () => new Uint8Array(1),
      run: () => {
        throw thrown;
      },
      toFile: (b: Uint8Array): CaseFile => ({ ext: 'bin', data: b }), fromFile: (f: CaseFile) => f.data as Uint8Array,
    });
    const typed = await runCampaign(fake(new EvccError('CONFIG_INVALID', 'x')), { seed: 1, inputs: 10 });
    expect([typed.crashes, typed.rejected]).toEqual([0, 10]);
    const crash = await runCampaign(fake(new TypeError('boom')), { seed: 1, inputs: 10 });
    expect(crash.crashes).toBe(10);
    expect(crash.failures).toHaveLength(1); // one saved case per distinct failure
    expect(crash.failures[0]!.message).toContain('TypeError: boom');
  });
});

describe('npm run fuzz (run.ts) on a target that misbehaves on purpose', () => {
  it('a hang is cut off and saved, a slow input re-measured and saved, a crash saved, and the campaign goes on', async () => {
    const out = await mkdtemp(join(tmpdir(), 'evcc-fuzz-'));
    try {
      const r = await execa('npx', ['tsx', 'test/fuzz/run.ts', '--family', 'selftest', '--inputs', '8', '--seed', '1', '--hang-ms', '1500', '--out', out], {
        cwd: fileURLToPath(new URL('../..', import.meta.url)), env: { EVCC_FUZZ_SELFTEST: '1' }, reject: false, timeout: 60_000,
      });
      expect(r.exitCode, r.stdout + r.stderr).toBe(1);
      expect(r.stdout).toMatch(/selftest: input 1 hangs; going on after it/);
      expect(r.stdout).toMatch(/selftest: slow at input 2: \d+ ms/);
      expect(r.stdout).toMatch(/selftest: crash at input 3: TypeError: selftest crash/);
      // All 8 inputs accounted for (the hung one included), one of each failure.
      expect(r.stdout).toMatch(/\| selftest \|\s+8 \|.*\|\s+1 \|\s+1 \|\s+1 \|/);
      const saved = (await readdir(join(out, 'selftest'))).sort();
      expect(saved).toHaveLength(3);
      const contents = await Promise.all(saved.map((f) => readFile(join(out, 'selftest', f))));
      expect(contents.map((c) => c[0]!).sort((a, b) => a - b)).toEqual([0x55, 0x66, 0xee]);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 90_000);
});

const binReplacer = (_k: string, v: unknown) => (v instanceof Uint8Array ? { $bin: Buffer.from(v).toString('hex') } : v);
const binReviver = (_k: string, v: unknown) => (v && typeof v === 'object' && '$bin' in v ? new Uint8Array(Buffer.from(String((v as { $bin: string }).$bin), 'hex')) : v);
