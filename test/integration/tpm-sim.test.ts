import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { transportPrereqs } from './tpm-lab.ts';

/** `evcc tpm sim`: a bench without a TPM HAT runs swtpm through the product and gets its TCTI; stops cleanly. */
describeWith([tool('swtpm'), tool('tpm2_startup')])('evcc tpm sim', () => {
  it('prints a working TCTI, keeps NV state in its state dir, and stops swtpm on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'evcc-tpm-sim-'));
    const repo = join(import.meta.dirname, '..', '..');
    const start = () => execa(process.execPath, ['--import', 'tsx', join(repo, 'bin', 'evcc.ts'), 'tpm', 'sim', '--state-dir', join(dir, 'state')],
      { cwd: repo, reject: false, stdin: 'ignore', buffer: false });
    const tctiOf = (child: ReturnType<typeof start>) => new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const line = out.split('\n').find((l) => l.startsWith('swtpm:'));
        if (line) resolve(line.trim());
      });
      void child.then(() => reject(new Error(`evcc tpm sim exited: ${out}`)));
    });
    try {
      let child = start();
      let tpm = await Tpm2Tools.open({ tcti: await tctiOf(child), runDir: join(dir, 'run') });
      await tpm.nvDefineCounter(0x01800101);
      await tpm.nvIncrement(0x01800101);
      await tpm.close();
      child.kill('SIGTERM');
      expect((await child).exitCode).toBe(0);
      child = start(); // NV survives like the chip's
      tpm = await Tpm2Tools.open({ tcti: await tctiOf(child), runDir: join(dir, 'run') });
      expect(await tpm.nvReadCounter(0x01800101)).toBeGreaterThanOrEqual(1n);
      await tpm.close();
      child.kill('SIGTERM');
      await child;
      const left = await execa('pgrep', ['-f', `swtpm socket.*${join(dir, 'state')}`], { reject: false });
      expect(left.stdout.trim()).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

/** `evcc tpm sim --abrmd`: the same swtpm behind tpm2-abrmd (a resource manager, as /dev/tpmrm0), both stopped cleanly. */
describeWith([tool('swtpm'), tool('tpm2_startup'), ...transportPrereqs('abrmd')])('evcc tpm sim --abrmd', () => {
  it('prints the tabrmd TCTI and its bus; the driver sees a resource manager; SIGTERM stops both daemons', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'evcc-tpm-sim-'));
    const repo = join(import.meta.dirname, '..', '..');
    const child = execa(process.execPath, ['--import', 'tsx', join(repo, 'bin', 'evcc.ts'), 'tpm', 'sim', '--abrmd', '--state-dir', join(dir, 'state')],
      { cwd: repo, reject: false, stdin: 'ignore', buffer: false });
    try {
      const [tcti, bus] = await new Promise<[string, string]>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (b: Buffer) => {
          out += b.toString();
          const lines = out.split('\n');
          const t = lines.find((l) => l.startsWith('tabrmd:'));
          const d = lines.find((l) => l.startsWith('DBUS_SESSION_BUS_ADDRESS='));
          if (t && d) resolve([t.trim(), d.slice('DBUS_SESSION_BUS_ADDRESS='.length).trim()]);
        });
        void child.then(() => reject(new Error(`evcc tpm sim --abrmd exited: ${out}`)));
      });
      const tpm = await Tpm2Tools.open({ tcti, env: { DBUS_SESSION_BUS_ADDRESS: bus }, runDir: join(dir, 'run') });
      expect(tpm.resourceManager).toBe(true);
      await tpm.nvDefineCounter(0x01800101);
      await tpm.nvIncrement(0x01800101);
      expect(await tpm.nvReadCounter(0x01800101)).toBeGreaterThanOrEqual(1n);
      await tpm.close();
      child.kill('SIGTERM');
      expect((await child).exitCode).toBe(0);
      const busName = /bus_name=([^,]+)/.exec(tcti)![1]!;
      // each daemon by what its command line names: abrmd its bus name, dbus-daemon its config, swtpm its state dir
      for (const [daemon, mark] of [['tpm2-abrmd', busName], ['dbus-daemon', dir], ['swtpm', dir]] as const) {
        const left = await execa('pgrep', ['-f', `${daemon}.*${mark}`], { reject: false });
        expect(left.stdout.trim(), daemon).toBe('');
      }
    } finally {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
