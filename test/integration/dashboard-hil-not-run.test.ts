import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import config from '../../vitest.config.ts';
import { HIL_DEVICE_VARIABLES } from '../hil/hardware.ts';

const repo = join(import.meta.dirname, '..', '..');

describe('npm run test:hil without hardware', () => {
  it('reports NOT RUN and exits non-zero: a HIL run that touched nothing never passes', () => {
    const env = { ...process.env };
    for (const v of HIL_DEVICE_VARIABLES) delete env[v];
    const r = spawnSync(process.execPath, [join(repo, 'node_modules/vitest/vitest.mjs'), 'run', '-c', 'vitest.hil.config.ts'], { cwd: repo, env, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('HIL: NOT RUN — no hardware named in the environment');
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/\d+ passed/);
  });

  it('the HIL suite is not part of npm test', () => {
    expect(config.test?.exclude).toContain('test/hil/**');
    expect(config.test?.include?.some((p) => p.includes('hil'))).toBe(false);
  });
});
