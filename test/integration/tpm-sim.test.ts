import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { describeWith, tool } from '../support/prereq.ts';

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
