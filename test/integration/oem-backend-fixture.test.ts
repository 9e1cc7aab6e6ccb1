import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { expect, it } from 'vitest';
import { startOemBackendFixture } from '../support/oem-backend-fixture.ts';
import { describeWith, tool } from '../support/prereq.ts';

/** The shared OEM-side fixture leaves nothing behind: a leaked broker or temp dir would only show up much later. */
const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const c = connect({ host: '127.0.0.1', port }, () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });

describeWith([tool('mosquitto')])('OEM backend fixture (mosquitto + in-process backend)', () => {
  it('restartBackend replaces the backend; close() stops every part and removes every dir, and may be called again', async () => {
    const f = await startOemBackendFixture({ jobs: true, securityLogs: true, clientId: 'oem-backend-fixture' });
    const first = f.backend;
    const dirs = [f.broker.dir, f.jobsDir!, f.securityLogs!.dir, f.fx.poolDir];
    expect(dirs.every((d) => existsSync(d))).toBe(true);
    expect(await portOpen(f.broker.port)).toBe(true);
    expect(f.backendOptions({ clientId: 'other' })).toMatchObject({ clientId: 'other', url: f.broker.url, jobs: f.jobService, signer: f.fx.signer });

    expect(await f.restartBackend()).not.toBe(first);
    expect(f.backend).not.toBe(first);
    expect(f.backend.clientId).toBe('oem-backend-fixture');

    await f.close();
    expect(dirs.filter((d) => existsSync(d))).toEqual([]);
    expect(await portOpen(f.broker.port)).toBe(false);
    await expect(f.close()).resolves.toBeUndefined();
  });
});
