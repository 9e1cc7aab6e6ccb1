import { execFile } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);

/** Issue #11, Must show 2: a production config refuses a TLS key log unless explicitly enabled — typed, exit 1. */
async function charge(config: object, args: string[]): Promise<{ code: number; stderr: string }> {
  return evcc(config, ['charge', '--iface', 'evcc-no-such0', '--no-keys', '--no-ota', ...args]);
}

async function evcc(config: object, args: string[]): Promise<{ code: number; stderr: string }> {
  const file = join(dir, `config-${Math.random().toString(16).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ dataDir: join(dir, 'data'), runDir: join(dir, 'run'), ...config }));
  try {
    const { stderr } = await run('npx', ['tsx', 'bin/evcc.ts', '--config', file, ...args], { timeout: 60_000 });
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: e.stderr ?? '' };
  }
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'evcc-keylog-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const exists = (p: string) => access(p).then(() => true, () => false);

describe('TLS key log policy (evcc charge)', () => {
  const refusals: { what: string; config: object; args: (keyFile: string) => string[] }[] = [
    { what: '--keylog', config: {}, args: (k) => ['--keylog', k] },
    { what: 'tls.keyLogFile', config: { tls: { keyLogFile: join(tmpdir(), 'evcc-never-written.keys') } }, args: () => [] },
    { what: 'capture.tlsKeyLog', config: { capture: { enabled: true, tlsKeyLog: true, dir: join(tmpdir(), 'evcc-never-sessions') } }, args: () => [] },
  ];
  for (const r of refusals) {
    it(`a production config (the default) refuses a key log asked by ${r.what}: CAPTURE_KEYLOG_REFUSED, exit 1, no stack, no key file`, async () => {
      const keyFile = join(dir, 'keys.log');
      const out = await charge(r.config, r.args(keyFile));
      expect(out.code).toBe(1);
      expect(out.stderr).toMatch(new RegExp(`^evcc: CAPTURE_KEYLOG_REFUSED: TLS key log refused \\(asked by ${r.what.replace(/\./g, '\\.')}\\)`, 'm'));
      expect(out.stderr).not.toMatch(/^\s+at /m);
      expect(await exists(keyFile)).toBe(false);
    }, 60_000);
  }

  it('evcc tls-probe --keylog is held to the same policy: refused by a production config before any connection', async () => {
    const keyFile = join(dir, 'probe-keys.log');
    const out = await evcc({}, ['tls-probe', '--iface', 'evcc-no-such0', '--address', 'fe80::1', '--port', '15118', '--root', '/nonexistent.pem', '--keylog', keyFile]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^evcc: CAPTURE_KEYLOG_REFUSED: TLS key log refused \(asked by tls-probe --keylog\)/m);
    expect(out.stderr).not.toMatch(/^\s+at /m);
    expect(await exists(keyFile)).toBe(false);
  }, 60_000);

  it('a production config with allowKeyLogInProduction goes on, with a loud WARN line', async () => {
    const out = await charge({ capture: { allowKeyLogInProduction: true } }, ['--keylog', join(dir, 'keys.log')]);
    expect(out.stderr).toMatch(/\[WARN\] TLS: TLS KEY LOG ENABLED \(PRODUCTION config with allowKeyLogInProduction; asked by --keylog\)/);
    expect(out.stderr).not.toMatch(/CAPTURE_KEYLOG_REFUSED/);
    // It then fails for the reason of this test rig (no such interface), typed.
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^evcc: NET_NO_INTERFACE: /m);
  }, 60_000);

  it('a bench config (capture.profile bench) writes a key log by asking, with the WARN line', async () => {
    const out = await charge({ capture: { profile: 'bench' } }, ['--keylog', join(dir, 'keys.log')]);
    expect(out.stderr).toMatch(/\[WARN\] TLS: TLS KEY LOG ENABLED \(bench config; asked by --keylog\)/);
    expect(out.stderr).not.toMatch(/CAPTURE_KEYLOG_REFUSED/);
  }, 60_000);
});
