import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeWith, tool } from '../support/prereq.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * Bad input on the command line (issue #13): each case runs `evcc` as its own process and expects exit 1 with one
 * line `evcc: CODE: message` — no stack trace, no hang — where it used to exit 70 with a raw stack.
 */
const REPO = join(import.meta.dirname, '..', '..');
const EVCC = join(REPO, 'bin', 'evcc.ts');

interface Run {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; a process still alive after `killAfterMs` is killed (the result then shows the signal). */
function evcc(args: string[], o: { killAfterMs?: number; env?: Record<string, string>; onStderr?: (text: string, proc: ReturnType<typeof spawn>) => void } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', EVCC, '--no-log-fields', ...args], {
      cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '', EVCC_DEBUG: '', ...o.env },
    });
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    proc.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString();
      o.onStderr?.(stderr, proc);
    });
    const timer = setTimeout(() => proc.kill('SIGKILL'), o.killAfterMs ?? 30_000);
    proc.once('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stdout, stderr });
    });
  });
}

/** Exit 1, one typed line, no stack frames. */
function expectTyped(r: Run, code: string, message?: RegExp): void {
  expect(r.signal, r.stderr).toBeNull();
  expect(r.exitCode, r.stderr).toBe(1);
  const last = r.stderr.trimEnd().split('\n').pop() ?? '';
  expect(last).toMatch(new RegExp(`^evcc: ${code}: `));
  if (message) expect(last).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr).not.toMatch(/internal error|INTERNAL/);
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'evcc-hard-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('evcc refuses bad input with a typed error', () => {
  it('tpm sign --in <missing>', async () => {
    expectTyped(await evcc(['tpm', 'sign', '--in', join(dir, 'missing.bin')]), 'CONFIG_INVALID', /cannot read input file .*missing\.bin \(ENOENT\)/);
  });

  it('tpm import-contract-key --blob <missing>', async () => {
    expectTyped(await evcc(['tpm', 'import-contract-key', '--blob', join(dir, 'missing.json')]), 'CONFIG_INVALID', /import blob .*missing\.json/);
  });

  it('pki validate --chain <missing> / --root <missing>', async () => {
    const pem = join(dir, 'empty.pem');
    await writeFile(pem, '');
    expectTyped(await evcc(['pki', 'validate', '--chain', join(dir, 'missing.pem'), '--root', pem]), 'CONFIG_INVALID', /cannot read --chain .*missing\.pem \(ENOENT\)/);
    expectTyped(await evcc(['pki', 'validate', '--chain', pem, '--root', join(dir, 'gone.pem')]), 'CONFIG_INVALID', /cannot read --root .*gone\.pem \(ENOENT\)/);
  });

  it('tpm sim --port abc', async () => {
    expectTyped(await evcc(['tpm', 'sim', '--state-dir', join(dir, 'sim'), '--port', 'abc']), 'CONFIG_INVALID', /--port/);
  });

  it('oem-backend --broker notaurl', async () => {
    expectTyped(await evcc(['oem-backend', '--pool', dir, '--broker', 'notaurl', '--signing-key', join(dir, 'k.pem')]), 'CONFIG_INVALID', /broker URL "notaurl"/);
  });

  it('oem-backend broker --port 99999', async () => {
    expectTyped(await evcc(['oem-backend', 'broker', '--port', '99999']), 'CONFIG_INVALID', /--port/);
  });

  it('oem-backend broker on a port in use: typed, and the process ends by itself', async () => {
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    try {
      const port = (holder.address() as { port: number }).port;
      const r = await evcc(['oem-backend', 'broker', '--port', String(port)], { killAfterMs: 20_000 });
      expectTyped(r, 'OEM_BROKER_LISTEN_FAILED', /EADDRINUSE/);
    } finally {
      holder.close();
    }
  });

  it('a config file with an unknown top-level key', async () => {
    const cfg = join(dir, 'typo.json');
    await writeFile(cfg, JSON.stringify({ vehicleId: 'ev-1', plcInterfce: 'eth1' }));
    expectTyped(await evcc(['--config', cfg, 'oem-backend', 'broker', '--port', '0']), 'CONFIG_INVALID', /plcInterfce/);
  });

  it('exi encode with a message that is not JSON', async () => {
    expectTyped(await evcc(['exi', 'encode', '--schema', 'iso2', '{bad']), 'CONFIG_INVALID', /not JSON/);
  });

  it('--debug (or EVCC_DEBUG=1) adds the stack and the cause, and only then', async () => {
    const plain = await evcc(['tpm', 'sign', '--in', join(dir, 'missing.bin')]);
    const debug = await evcc(['--debug', 'tpm', 'sign', '--in', join(dir, 'missing.bin')]);
    const env = await evcc(['tpm', 'sign', '--in', join(dir, 'missing.bin')], { env: { EVCC_DEBUG: '1' } });
    expect(plain.stderr).not.toMatch(/\n\s+at /);
    for (const r of [debug, env]) {
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/^evcc: CONFIG_INVALID: /);
      expect(r.stderr).toMatch(/caused by: Error: ENOENT/);
      expect(r.stderr).toMatch(/\n\s+at /);
    }
  });
});

describe('logging never takes the runtime down', () => {
  it('--log-json /dev/full: one clear warning, the command runs on and exits 0', async () => {
    let stopped = false;
    const r = await evcc(['--log-json', '/dev/full', 'oem-backend', 'broker', '--port', '0'], {
      onStderr: (text, proc) => {
        if (!stopped && /embedded broker listening/.test(text)) {
          stopped = true;
          proc.kill('SIGTERM');
        }
      },
    });
    expect(stopped, r.stderr).toBe(true);
    expect(r.signal).toBeNull();
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr.match(/JSON log \/dev\/full disabled: ENOSPC/g)).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describeWith([tool('swtpm'), tool('tpm2_getcap'), tool('openssl')])('tpm status and the store on a provisioned vehicle', () => {
  let lab: TpmLab;
  beforeAll(async () => {
    lab = await TpmLab.create();
    await lab.cliOk(['tpm', 'provision', '--oem-policy-key', lab.oemPolicyPub], { tpm: true });
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('exits 0 with the TPM there, and 1 with TPM_UNREACHABLE when it is not', async () => {
    expect((await evcc(['tpm', 'status', '--tcti', lab.tcti, '--data-dir', lab.dataDir, '--run-dir', lab.runDir])).exitCode).toBe(0);
    const closed: Server = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    const r = await evcc(['tpm', 'status', '--tcti', `swtpm:host=127.0.0.1,port=${port}`, '--data-dir', lab.dataDir, '--run-dir', join(dir, 'run-unreachable')]);
    expectTyped(r, 'TPM_UNREACHABLE');
    expect(r.stdout).toBe('');
  });

  it('a store entry that is a FIFO is refused at once (STORE_NOT_A_FILE), the command does not hang', async () => {
    const data = join(dir, 'fifo-data');
    await mkdir(join(data, 'tpm'), { recursive: true, mode: 0o700 });
    execFileSync('mkfifo', [join(data, 'tpm', 'provisioned.json')]);
    const r = await evcc(['tpm', 'status', '--tcti', lab.tcti, '--data-dir', data, '--run-dir', join(dir, 'run-fifo')], { killAfterMs: 20_000 });
    expectTyped(r, 'STORE_NOT_A_FILE', /FIFO/);
  });
});
