import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registerExi } from './exi.ts';

async function run(...args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  registerExi(program, () => ({}));
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'evcc', 'exi', ...args]);
  } finally {
    spy.mockRestore();
  }
  return out;
}

describe('evcc exi', () => {
  afterEach(() => vi.restoreAllMocks());

  it('decodes hex (schema picked from the content, or a whole V2GTP message) and encodes JSON back', async () => {
    const picked = JSON.parse(await run('decode', '80400080')) as { schema: string; message: unknown };
    expect(picked).toEqual({ schema: 'appHandshake', message: { supportedAppProtocolRes: { ResponseCode: 'OK_SuccessfulNegotiation', SchemaID: 2 } } });
    expect(JSON.parse(await run('decode', '01fe80010000000480400080')).schema).toBe('appHandshake');
    const din = JSON.parse(await run('decode', '-s', 'din', '809a02202c9fff3e37b3d3d0b800')) as unknown;
    expect(din).toEqual({ V2G_Message: { Header: { SessionID: '80b27ffcf8decf4f' }, Body: { ContractAuthenticationReq: {} } } });
    expect((await run('encode', '-s', 'din', JSON.stringify(din))).trim()).toBe('809a02202c9fff3e37b3d3d0b8');
  });

  it('refuses non-hex input with a typed error', async () => {
    await expect(run('decode', '-s', 'iso2', 'xyz')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(run('decode', '-s', 'iso2', '8098')).rejects.toMatchObject({ code: 'EXI_TRUNCATED' });
  });
});
