import { describe, expect, it } from 'vitest';
import { parseRuntimeSettings, parseSettings, RuntimeSettings } from './settings.ts';

describe('RuntimeSettings', () => {
  it('refuses a top-level key that is neither the runtime\'s nor a named section', () => {
    expect(() => parseRuntimeSettings({ plcInterfce: 'eth1' }, ['slac'])).toThrowError(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining('plcInterfce') }),
    );
    expect(parseRuntimeSettings({ plcInterface: 'eth2', slac: { anything: 1 } }, ['slac'])).toMatchObject({ plcInterface: 'eth2' });
  });

  it('never passes a section (or any unknown key) on in its result', () => {
    const s = parseRuntimeSettings({ slac: { x: 1 } }, ['slac']) as Record<string, unknown>;
    expect(s.slac).toBeUndefined();
    expect((parseSettings(RuntimeSettings, { typo: 1 }, 'config') as Record<string, unknown>).typo).toBeUndefined();
  });

  it('log settings: defaults, and typos inside the section are refused', () => {
    expect(parseRuntimeSettings({}, []).log).toEqual({ jsonMaxBytes: 10 * 1024 * 1024, jsonKeepFiles: 5, repeatWindowMs: 10_000, repeatBurst: 5 });
    expect(parseRuntimeSettings({ log: { jsonKeepFiles: 2 } }, []).log.jsonKeepFiles).toBe(2);
    expect(() => parseRuntimeSettings({ log: { jsonKeep: 2 } }, [])).toThrow(/jsonKeep/);
    expect(() => parseRuntimeSettings({ log: { jsonMaxBytes: 10 } }, [])).toThrow(/log\.jsonMaxBytes/);
  });
});
