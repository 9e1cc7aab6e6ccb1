import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FsStore } from '../store/fs-store.ts';
import { CommandReboot, REBOOT_REQUEST_FILE, RequestFileReboot } from './reboot.ts';

describe('reboot hooks', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('RequestFileReboot leaves the request with its reason for evcc-reboot.path', async () => {
    dir = await mkdtemp(join(tmpdir(), 'evcc-reboot-'));
    await new RequestFileReboot(await FsStore.open(dir)).reboot('update v2 (job j-1) installed into slot B');
    const req = JSON.parse(await readFile(join(dir, REBOOT_REQUEST_FILE), 'utf8')) as { reason: string; requestedAt: string };
    expect(req.reason).toBe('update v2 (job j-1) installed into slot B');
    expect(Number.isNaN(Date.parse(req.requestedAt))).toBe(false);
  });

  it('a request that cannot be written is SYSTEM_REBOOT_FAILED (the agent asks again at its next pass)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'evcc-reboot-'));
    const store = await FsStore.open(join(dir, 'run'));
    // The run dir gone and a file in its place (ENOTDIR, also for root).
    await rm(join(dir, 'run'), { recursive: true, force: true });
    await writeFile(join(dir, 'run'), 'not a directory');
    await expect(new RequestFileReboot(store).reboot('x')).rejects.toMatchObject({ code: 'SYSTEM_REBOOT_FAILED' });
  });

  it('CommandReboot: exit 0 resolves; a failing or missing command is SYSTEM_REBOOT_FAILED', async () => {
    await expect(new CommandReboot(['true']).reboot('ok')).resolves.toBeUndefined();
    await expect(new CommandReboot(['false']).reboot('no')).rejects.toMatchObject({ code: 'SYSTEM_REBOOT_FAILED', details: { exitCode: 1 } });
    await expect(new CommandReboot(['/nonexistent/reboot']).reboot('no')).rejects.toMatchObject({ code: 'SYSTEM_REBOOT_FAILED' });
    expect(() => new CommandReboot([])).toThrow(/empty/);
  });
});
