import { describe, expect, it } from 'vitest';
import { commandNameOf } from './index.ts';

describe('lazy command loading', () => {
  it('finds the command name behind global options and their values', () => {
    expect(commandNameOf(['-c', 'bench.json', '--log-level', 'debug', 'slac', '--iface', 'eth1'])).toBe('slac');
    expect(commandNameOf(['--no-log-fields', 'tpm', 'sign'])).toBe('tpm');
    expect(commandNameOf(['--help'])).toBeUndefined();
  });
});
