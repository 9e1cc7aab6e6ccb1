import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { dynamicSecurityConfig, vehicleAcls } from './broker-dynsec.ts';

const run = promisify(execFile);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('mosquitto dynamic-security config of the OEM link', () => {
  it('backend role: every vehicle\'s topics and its own $share group; each vehicle only its own prefix; default deny', () => {
    const c = dynamicSecurityConfig({ backendUser: 'oem-backend', vehicles: ['veh-1', 'veh-2'] });
    expect(c.defaultACLAccess).toEqual({ publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: true });
    expect(c.clients.map((x) => [x.username, x.roles[0]!.rolename])).toEqual([['oem-backend', 'oem-backend'], ['veh-1', 'vehicle-veh-1'], ['veh-2', 'vehicle-veh-2']]);
    expect(c.clients.some((x) => 'password' in x)).toBe(false);
    const backend = c.roles.find((r) => r.rolename === 'oem-backend')!;
    expect(backend.acls.filter((a) => a.acltype === 'subscribePattern').map((a) => a.topic)).toEqual(['evcc/v1/#', '$share/evcc-oem-backend/evcc/v1/#']);
    expect(c.roles.find((r) => r.rolename === 'vehicle-veh-2')!.acls.map((a) => a.topic)).toEqual(Array(3).fill('evcc/v1/veh-2/#'));
  });

  it('refuses what would widen a role: a vehicle id with topic characters, a share group with levels, the backend as a vehicle, duplicates', () => {
    expect(() => vehicleAcls('veh/+')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => dynamicSecurityConfig({ backendUser: 'oem-backend', vehicles: ['#'] })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => dynamicSecurityConfig({ backendUser: 'oem-backend', vehicles: [], shareGroup: 'a/b' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => dynamicSecurityConfig({ backendUser: 'oem-backend', vehicles: ['oem-backend'] })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => dynamicSecurityConfig({ backendUser: 'oem-backend', vehicles: ['v', 'v'] })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('evcc oem-backend broker-dynsec writes the file 0600 from a fleet list, refuses to overwrite and bad ids (exit 1, one line)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'evcc-dynsec-'));
    dirs.push(dir);
    await writeFile(join(dir, 'fleet'), '# fleet\nveh-1\n\nveh-2 # second\n');
    await writeFile(join(dir, 'bad'), 'veh-1\nveh/+\n');
    const evcc = (args: string[]) => run(process.execPath, ['--import', 'tsx', join(process.cwd(), 'bin/evcc.ts'), 'oem-backend', 'broker-dynsec', ...args], { env: { ...process.env, EVCC_DEBUG: '' } })
      .then(({ stdout }) => ({ code: 0, stdout, stderr: '' }), (e: { code: number; stdout: string; stderr: string }) => e);
    const out = join(dir, 'dynamic-security.json');
    const ok = await evcc(['--fleet', join(dir, 'fleet'), '--out', out]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(await readFile(out, 'utf8'))).toEqual(dynamicSecurityConfig({ backendUser: 'oem-backend', vehicles: ['veh-1', 'veh-2'] }));
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    for (const args of [['--fleet', join(dir, 'fleet'), '--out', out], ['--fleet', join(dir, 'bad'), '--out', join(dir, 'x.json')]]) {
      const r = await evcc(args);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/CONFIG_INVALID/);
    }
  }, 60_000);
});
