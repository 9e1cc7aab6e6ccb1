import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { derToPem } from '../../firmware/pki/cert.ts';
import { ownerGone } from '../../hal/store/session-dirs.ts';
import { issue } from '../../firmware/pki/generate.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * Issue #13 item 8, killed each way with the real processes:
 *  - the README's main job `scripts/bench-session.sh` (its PID is the session) killed by SIGTERM, SIGINT and SIGKILL
 *    while its swtpm runs: no swtpm outlives it, SIGTERM/SIGINT remove the session dir (bench key material) at once,
 *    after SIGKILL the next start removes it;
 *  - `evcc pki roots install` on a TPM vehicle SIGKILLed at random points, repeatedly: the next start leaves no
 *    `work-*` dir, no `.tmp` file and no TPM session of the killed processes, and installs (no TPM_SESSION_MEMORY).
 * Every child runs with its own TMPDIR, so the test sees (and sweeps) only its own dirs.
 */
const REPO = join(import.meta.dirname, '..', '..');
const TIMEOUT = 240_000;

function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '');
  } catch {
    return true;
  }
}

/** Live swtpm processes whose command line names a path under `root`. */
function swtpmsUnder(root: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (cmd[0]?.endsWith('swtpm') && cmd.some((a) => a.includes(root)) && !gone(Number(e))) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const benchDirs = (root: string): string[] => readdirSync(root).filter((n) => n.startsWith('evcc-bench-')).map((n) => join(root, n));

function exited(p: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode });
  return new Promise((resolve) => p.once('exit', (code, signal) => resolve({ code, signal })));
}

describeWith([tool('swtpm'), tool('setpriv'), tool('tpm2_startup'), tool('rauc'), tool('openssl')])('killed bench session (scripts/bench-session.sh)', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'hardening-kill-'));
  });
  afterAll(async () => {
    for (const pid of swtpmsUnder(root)) process.kill(pid, 'SIGKILL');
    await rm(root, { recursive: true, force: true });
  });

  /** Starts the wrapper and resolves once the session's swtpm runs in its dir. */
  async function startSession(): Promise<{ proc: ChildProcess; dir: string; swtpm: number; log: () => string }> {
    const before = new Set(benchDirs(root));
    let log = '';
    const proc = spawn('bash', [join(REPO, 'scripts', 'bench-session.sh'), '--no-capture'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: root, NODE_OPTIONS: '' } });
    proc.stdout!.on('data', (b: Buffer) => (log += b.toString()));
    proc.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    let dir: string | undefined;
    let swtpm: number | undefined;
    await until(() => {
      if (proc.exitCode !== null) throw new Error(`bench session ended before its swtpm ran:\n${log}`);
      dir ??= benchDirs(root).find((d) => !before.has(d));
      swtpm = dir ? swtpmsUnder(dir)[0] : undefined;
      return swtpm !== undefined;
    }, 60_000, 'the bench session\'s swtpm', 50);
    return { proc, dir: dir!, swtpm: swtpm!, log: () => log };
  }

  it('SIGKILL, SIGTERM, SIGINT (twice each): no orphan swtpm, no session dir after the next start', async () => {
    const ways: NodeJS.Signals[] = ['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGKILL', 'SIGINT', 'SIGTERM'];
    let pendingKilledDir: string | undefined;
    for (const [i, signal] of ways.entries()) {
      const s = await startSession();
      // The next start removed what the SIGKILLed predecessor left (its dir, with the bench key material).
      if (pendingKilledDir) expect(existsSync(pendingKilledDir), `${pendingKilledDir} after the next start`).toBe(false);
      pendingKilledDir = undefined;
      // Some kills right at swtpm start, some a little later (factory stage, provisioning, boot).
      await new Promise((r) => setTimeout(r, (i % 3) * 700));
      expect(s.proc.kill(signal)).toBe(true);
      const end = await exited(s.proc);
      await until(() => gone(s.swtpm), 10_000, `swtpm ${s.swtpm} to die with the session (${signal})`);
      expect(swtpmsUnder(root), `swtpm left after ${signal}`).toEqual([]);
      if (signal === 'SIGKILL') {
        expect(end.signal).toBe('SIGKILL');
        pendingKilledDir = s.dir; // no clean-up ran: the next start must remove it
      } else {
        // The session's own clean-up ran, then the signal ended the process as a caller expects.
        expect(end.signal, s.log()).toBe(signal);
        expect(existsSync(s.dir), `${s.dir} after ${signal}`).toBe(false);
        expect(s.log()).toContain(`${signal}: stopping the bench session`);
      }
    }
    expect(benchDirs(root)).toEqual([]);
  }, TIMEOUT);
});

describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl')])('killed root install (evcc pki roots install on swtpm)', () => {
  let lab: TpmLab;
  const KILLS = 8;
  beforeAll(async () => {
    lab = await TpmLab.create();
    await lab.bootedVehicle();
  }, TIMEOUT);
  afterAll(async () => {
    await lab?.close();
  });

  const install = (pem: string): ChildProcess => spawn(process.execPath, ['--import', 'tsx', join(REPO, 'bin', 'evcc.ts'), '--log-level', 'warn', 'pki', 'roots', 'install', pem, '--unapproved',
    '--tcti', lab.tcti, '--data-dir', lab.dataDir, '--run-dir', lab.runDir], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });

  async function filesUnder(dir: string, keep: (name: string) => boolean): Promise<string[]> {
    const out: string[] = [];
    for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (keep(e.name)) out.push(join(e.parentPath, e.name));
    return out;
  }

  it(`SIGKILL at random points (${KILLS}×): the next start leaves no work-* dir, .tmp file or stale TPM session, and installs`, async () => {
    let killedMidway = 0;
    for (let i = 0; i < KILLS; i++) {
      const root = await issue({ name: `kill-root-${i}`, role: 'v2g-root', subject: `CN=Kill Root ${i}` });
      const pem = join(lab.oemDir, `kill-root-${i}.pem`);
      await writeFile(pem, derToPem(root.der));
      const p = install(pem);
      await new Promise((r) => setTimeout(r, 300 + ((i * 397) % 1500))); // spread over start-up, unseal, write, counter
      if (p.exitCode === null) {
        p.kill('SIGKILL');
        killedMidway++;
      }
      await exited(p);
    }
    expect(killedMidway).toBeGreaterThan(KILLS / 2);

    // The next start: one complete install, as the operator would run it.
    const last = await issue({ name: 'kill-root-last', role: 'v2g-root', subject: 'CN=Kill Root Last' });
    const pem = join(lab.oemDir, 'kill-root-last.pem');
    await writeFile(pem, derToPem(last.der));
    const r = await lab.cli(['pki', 'roots', 'install', pem, '--unapproved'], { tpm: true });
    expect(r.stderr).not.toContain('TPM_SESSION_MEMORY');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.stringify(JSON.parse(r.stdout))).toContain('CN=Kill Root Last');

    // Work dirs left: only those of live drivers (this test process's own lab drivers), none of a killed process.
    const workDirs = await filesUnder(lab.runDir, (n) => n.startsWith('work-'));
    const stale: string[] = [];
    for (const d of workDirs) if ((await ownerGone(d)) !== false) stale.push(d);
    expect(stale).toEqual([]);
    expect(await filesUnder(lab.dataDir, (n) => n.endsWith('.tmp'))).toEqual([]);
    const tpm = await lab.driver(); // a start of its own: it reclaims nothing more, and nothing is left
    expect([...(await tpm.handles('loaded-session')), ...(await tpm.handles('saved-session'))]).toEqual([]);
    // The store opens (old or new state, never torn, never rolled back) with the last root in it.
    const list = await lab.cli(['pki', 'roots', 'list'], { tpm: true });
    expect(list.exitCode, list.stderr).toBe(0);
    expect(list.stdout).toContain('CN=Kill Root Last');
  }, TIMEOUT);
});
