import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWith, tool } from '../support/prereq.ts';

const run = promisify(execFile);
const repo = process.cwd();

/**
 * Issue 12 "Supervision": `systemd-analyze verify` passes on every unit of deploy/systemd (any warning counts), and
 * `systemd-analyze security --offline=true` (no running manager needed) scores each unit at most what
 * deploy/systemd/README.md reports. The units are checked in a scratch root that holds what they name: /usr/bin/evcc,
 * /usr/bin/rauc and the tools evcc-reboot names, and Debian's own unit set for the targets they order against.
 */
let root: string;
let units: string[];

async function analyze(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // Without a terminal systemd's tools log to the kernel log: the console target puts the findings on stderr.
  return run('systemd-analyze', args, { cwd: '/', env: { ...process.env, SYSTEMD_LOG_TARGET: 'console' } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

async function install(name: string, text: string): Promise<void> {
  await writeFile(join(root, 'etc/systemd/system', name), text);
}

describeWith([tool('systemd-analyze')])('deploy/systemd: systemd-analyze verify and security', () => {
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'evcc-sdverify-'));
    await mkdir(join(root, 'usr/bin'), { recursive: true });
    await mkdir(join(root, 'etc/systemd/system'), { recursive: true });
    await mkdir(join(root, 'usr/lib/systemd'), { recursive: true });
    await cp('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    for (const b of ['evcc', 'rauc', 'cat', 'rm', 'systemctl']) {
      await writeFile(join(root, 'usr/bin', b), '#!/bin/sh\n');
      await chmod(join(root, 'usr/bin', b), 0o755);
    }
    units = (await readdir(join(repo, 'deploy/systemd'))).filter((f) => /\.(service|path)$/.test(f)).sort();
    for (const u of units) await install(u, await readFile(join(repo, 'deploy/systemd', u), 'utf8'));
  }, 60_000);

  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('every unit verifies without a warning', async () => {
    expect(units).toEqual(['evcc-boot.service', 'evcc-commit.service', 'evcc-reboot.path', 'evcc-reboot.service', 'evcc.service']);
    for (const u of units) {
      const r = await analyze(['verify', `--root=${root}`, u]);
      expect({ unit: u, code: r.code, stderr: r.stderr.trim() }).toEqual({ unit: u, code: 0, stderr: '' });
    }
  }, 60_000);

  it('the check can fail: a misspelt setting and a missing command are reported', async () => {
    const text = await readFile(join(repo, 'deploy/systemd/evcc.service'), 'utf8');
    await install('evcc-typo.service', text.replace('ProtectHome=yes', 'ProtectHomes=yes'));
    const typo = await analyze(['verify', `--root=${root}`, 'evcc-typo.service']);
    expect(typo.stderr).toMatch(/Unknown key.*ProtectHomes/);
    await install('evcc-nobin.service', text.replace(/ExecStart=\/usr\/bin\/evcc/, 'ExecStart=/usr/bin/evcc-missing'));
    const nobin = await analyze(['verify', `--root=${root}`, 'evcc-nobin.service']);
    expect(nobin.code).not.toBe(0);
    expect(nobin.stderr).toMatch(/evcc-missing.*No such file/);
  }, 60_000);

  it('exposure scores stay at or below those deploy/systemd/README.md reports', async () => {
    const readme = await readFile(join(repo, 'deploy/systemd/README.md'), 'utf8');
    for (const u of units.filter((x) => x.endsWith('.service'))) {
      const r = await analyze(['security', '--offline=true', `--root=${root}`, '--no-pager', u]);
      const m = /Overall exposure level for \S+: (\d+\.\d)/.exec(r.stdout + r.stderr);
      expect(m, `${u}: ${r.stdout.slice(-500)}${r.stderr}`).not.toBeNull();
      const reported = new RegExp(`^\\| \`${u.replace('.', '\\.')}\` \\| (\\d+\\.\\d) `, 'm').exec(readme);
      expect(reported, `${u} has no score row in deploy/systemd/README.md`).not.toBeNull();
      expect(Number(m![1]), u).toBeLessThanOrEqual(Number(reported![1]));
    }
  }, 60_000);
});
