import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../core/logger.ts';
import { BenchLogDestination, RotatingFile } from './log-sink.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'evcc-logsink-'));
  dirs.push(d);
  return d;
}

/** A destination whose bench lines are collected instead of written to stderr. */
function capture(o: Partial<ConstructorParameters<typeof BenchLogDestination>[0]> = {}) {
  const lines: string[] = [];
  let now = 1_000_000;
  const dest = new BenchLogDestination({
    fields: true,
    suppression: { windowMs: 10_000, burst: 5 },
    stderr: { write: (t: string) => lines.push(...t.split('\n').filter(Boolean)) },
    now: () => now,
    ...o,
  });
  return { dest, lines, advance: (ms: number) => (now += ms) };
}

describe('RotatingFile', () => {
  it('rotates by size and keeps N files: the cap on disk holds', async () => {
    const d = await tempDir();
    const path = join(d, 'evcc.jsonl');
    const f = RotatingFile.open(path, { maxBytes: 4096, keepFiles: 3 });
    const line = `${JSON.stringify({ msg: 'x'.repeat(90) })}\n`; // 101 bytes
    for (let i = 0; i < 2000; i++) f.write(line);
    f.close();
    const names = (await readdir(d)).sort();
    expect(names).toEqual(['evcc.jsonl', 'evcc.jsonl.1', 'evcc.jsonl.2', 'evcc.jsonl.3']);
    for (const n of names) expect((await stat(join(d, n))).size).toBeLessThanOrEqual(4096);
    // Whole lines only: every file parses line by line.
    for (const n of names) for (const l of (await readFile(join(d, n), 'utf8')).split('\n').filter(Boolean)) expect(JSON.parse(l)).toBeTruthy();
    expect((await stat(join(d, 'evcc.jsonl'))).mode & 0o777).toBe(0o600);
  });

  it('keepFiles 0 truncates instead of keeping rotated files', async () => {
    const d = await tempDir();
    const f = RotatingFile.open(join(d, 'log'), { maxBytes: 4096, keepFiles: 0 });
    for (let i = 0; i < 500; i++) f.write(`${'y'.repeat(99)}\n`);
    f.close();
    expect(await readdir(d)).toEqual(['log']);
    expect((await stat(join(d, 'log'))).size).toBeLessThanOrEqual(4096);
  });
});

describe('BenchLogDestination', () => {
  it('a JSON file that fails (/dev/full: ENOSPC) is dropped with one warning; the bench log goes on', () => {
    const { dest, lines } = capture({ jsonFile: { path: '/dev/full', rotation: { maxBytes: 1 << 20, keepFiles: 2 } } });
    const log = createLogger({ destination: dest });
    expect(dest.jsonActive).toBe(true);
    for (let i = 0; i < 3; i++) log.info({ sub: 'SLAC' }, `line ${i}`);
    expect(dest.jsonActive).toBe(false);
    const warnings = lines.filter((l) => l.includes('JSON log /dev/full disabled'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/\[WARN\] EVCC: JSON log \/dev\/full disabled: ENOSPC/);
    expect(lines.filter((l) => /\[INFO\] SLAC: line \d/.test(l))).toHaveLength(3);
    dest.close();
  });

  it('a JSON file that cannot be opened is a warning, not a failure', () => {
    const { dest, lines } = capture({ jsonFile: { path: '/nonexistent-dir/evcc.jsonl', rotation: { maxBytes: 1 << 20, keepFiles: 2 } } });
    expect(dest.jsonActive).toBe(false);
    expect(lines).toEqual([expect.stringMatching(/JSON log \/nonexistent-dir\/evcc.jsonl disabled: ENOENT/)]);
  });

  it('a flood of 20,000 identical warnings is bounded: burst lines, then one summary with the count', async () => {
    const d = await tempDir();
    const path = join(d, 'evcc.jsonl');
    const { dest, lines, advance } = capture({ jsonFile: { path, rotation: { maxBytes: 1 << 24, keepFiles: 1 } } });
    const log = createLogger({ destination: dest }).child({ sub: 'OEM' });
    for (let i = 0; i < 20_000; i++) log.warn({ vehicleId: 'ev-1', code: 'OTA_ANSWER_MALFORMED' }, `root-CA request dropped: payload of ${i} bytes is not UTF-8 JSON`);
    log.info('still logging at info');
    expect(lines).toHaveLength(5 + 1);
    advance(10_000);
    log.warn({ vehicleId: 'ev-1' }, 'root-CA request dropped: payload of 1 bytes is not UTF-8 JSON');
    const summary = lines.find((l) => l.includes('suppressed'));
    expect(summary).toMatch(/\[WARN\] OEM: suppressed 19995 similar lines: root-CA request dropped/);
    expect(lines).toHaveLength(5 + 1 + 1 + 1);
    dest.close();
    const json = (await readFile(path, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(json).toHaveLength(8);
    expect(json.find((r) => r.suppressed !== undefined)).toMatchObject({ sub: 'OEM', suppressed: 19_995 });
  });

  it('close() writes the summary of a window still open', () => {
    const { dest, lines } = capture({ suppression: { windowMs: 60_000, burst: 2 } });
    const log = createLogger({ destination: dest }).child({ sub: 'TLS' });
    for (let i = 0; i < 50; i++) log.error('handshake refused');
    dest.close();
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/\[ERROR\] TLS: suppressed 48 similar lines: handshake refused/);
  });

  it('info lines are never suppressed (session progress stays complete)', () => {
    const { dest, lines } = capture({ suppression: { windowMs: 60_000, burst: 1 } });
    const log = createLogger({ destination: dest }).child({ sub: 'ISO2' });
    for (let i = 0; i < 100; i++) log.info('CurrentDemandReq');
    expect(lines).toHaveLength(100);
    dest.close();
  });

  it('different subsystems and messages are counted apart', () => {
    const { dest, lines } = capture({ suppression: { windowMs: 60_000, burst: 1 } });
    const root = createLogger({ destination: dest });
    for (let i = 0; i < 10; i++) {
      root.child({ sub: 'OEM' }).warn('dropped');
      root.child({ sub: 'OTA' }).warn('dropped');
      root.child({ sub: 'OEM' }).warn('refused');
    }
    expect(lines).toHaveLength(3);
    dest.close();
    expect(lines.filter((l) => l.includes('suppressed 9 similar lines'))).toHaveLength(3);
  });
});
