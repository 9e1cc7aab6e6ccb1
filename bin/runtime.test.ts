import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FIRMWARE_CONFIG_SECTIONS } from '../firmware/vehicle/config.ts';
import { HAL_CONFIG_SECTIONS } from './commands/charge.ts';
import { CONFIG_SECTION_NAMES, createRuntime } from './runtime.ts';

const dirs: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('createRuntime', () => {
  it('knows every config section by name (the schemas stay unloaded at start-up)', () => {
    expect([...CONFIG_SECTION_NAMES].sort()).toEqual([...Object.keys(FIRMWARE_CONFIG_SECTIONS), ...Object.keys(HAL_CONFIG_SECTIONS)].sort());
  });

  it('accepts the shipped bench config and refuses an unknown top-level key', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-rt-'));
    dirs.push(d);
    const bench = JSON.parse(await readFile(join(process.cwd(), 'deploy/config/evcc.bench.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(d, 'ok.json'), JSON.stringify(bench));
    const rt = await createRuntime({ config: join(d, 'ok.json') });
    expect(rt.settings.plcInterface).toBe('eth1');
    await rt.close();
    await writeFile(join(d, 'typo.json'), JSON.stringify({ ...bench, otaa: {} }));
    await expect(createRuntime({ config: join(d, 'typo.json') })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('otaa') });
  });

  it('--log-json on a full device: the runtime keeps logging, one warning on stderr', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const rt = await createRuntime({ logJson: '/dev/full' });
    for (let i = 0; i < 5; i++) rt.log('EVCC').info(`line ${i}`);
    await rt.close();
    const text = err.mock.calls.map((c) => String(c[0])).join('');
    expect(text.match(/JSON log \/dev\/full disabled/g)).toHaveLength(1);
    expect(text.match(/\[INFO\] EVCC: line \d/g)).toHaveLength(5);
  });

  it('20,000 identical warnings through the runtime logger: a bounded bench log and JSON log', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-rt-'));
    dirs.push(d);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const rt = await createRuntime({ logJson: join(d, 'evcc.jsonl') });
    const log = rt.log('OEM');
    for (let i = 0; i < 20_000; i++) log.warn({ vehicleId: `ev-${i % 7}`, code: 'OTA_ANSWER_MALFORMED' }, 'root-CA request dropped: payload is not UTF-8 JSON');
    await rt.close();
    const lines = err.mock.calls.map((c) => String(c[0])).join('').split('\n').filter(Boolean);
    expect(lines).toHaveLength(5 + 1);
    expect(lines[5]).toMatch(/suppressed 19995 similar lines: root-CA request dropped/);
    expect((await stat(join(d, 'evcc.jsonl'))).size).toBeLessThan(4096);
  });

  it('the JSON log rotates with the config\'s log section', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-rt-'));
    dirs.push(d);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await writeFile(join(d, 'c.json'), JSON.stringify({ log: { jsonMaxBytes: 4096, jsonKeepFiles: 1 } }));
    const rt = await createRuntime({ config: join(d, 'c.json'), logJson: join(d, 'evcc.jsonl') });
    for (let i = 0; i < 400; i++) rt.log('EVCC').info({ i }, 'a bench log line of some length');
    await rt.close();
    expect((await readdir(d)).filter((n) => n.startsWith('evcc.jsonl')).sort()).toEqual(['evcc.jsonl', 'evcc.jsonl.1']);
    expect((await stat(join(d, 'evcc.jsonl.1'))).size).toBeLessThanOrEqual(4096);
  });
});
