import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TpmSettings } from '../../firmware/keys/settings.ts';
import { parseConfig as parseVehicleConfig } from './charge.ts';

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..', '..');

describe('deploy/config/evcc.bench.json and the systemd units match the real program', () => {
  it('every key of the bench config is read by a real settings schema', async () => {
    const raw = JSON.parse(await readFile(join(repo, 'deploy/config/evcc.bench.json'), 'utf8')) as Record<string, unknown>;
    const c = parseVehicleConfig(raw);
    expect(c.unknownKeys).toEqual([]);
    expect(c.runtime.dataDir).toBe('/var/lib/evcc');
    expect(c.pilot.trigger).toBe('pilot');
    expect(c.sdp.security).toBe('tls-required');
    expect(c.ev.port).toBe('sim');
    expect(c.ota.brokerUrl).toMatch(/^mqtts:\/\//);
    expect(TpmSettings.parse(raw.tpm).tcti).toBe('device:/dev/tpmrm0');
    // A typo is named, not ignored.
    expect(parseVehicleConfig({ ...raw, plcInterfce: 'eth1' }).unknownKeys).toEqual(['plcInterfce']);
    expect(() => parseVehicleConfig({ ...raw, ota: { ...(raw.ota as object), brokerURL: 'x' } })).toThrow(/ota/);
  });

  it('the units run existing commands with existing options, and paths agree with the bench config', async () => {
    const units = ['evcc.service', 'evcc-boot.service', 'evcc-commit.service'];
    const raw = JSON.parse(await readFile(join(repo, 'deploy/config/evcc.bench.json'), 'utf8')) as { dataDir: string; runDir: string };
    for (const unit of units) {
      const text = await readFile(join(repo, 'deploy/systemd', unit), 'utf8');
      const exec = /^ExecStart=\/usr\/bin\/evcc (.+)$/m.exec(text);
      expect(exec, unit).not.toBeNull();
      const args = exec![1]!.split(/\s+/);
      expect(args.slice(0, 2)).toEqual(['--config', '/etc/evcc/evcc.json']);
      // `--help` after the command: commander validates the global options and the command path, loads no config.
      const { stdout } = await run(process.execPath, ['--import', 'tsx', join(repo, 'bin/evcc.ts'), ...args, '--help'], { cwd: repo });
      const command = args.slice(2).filter((a, i, all) => !a.startsWith('-') && !all[i - 1]?.startsWith('--log-json')).join(' ');
      expect(stdout.split('\n')[0], unit).toMatch(new RegExp(`^Usage: evcc ${command} \\[options\\]( \\[command\\])?$`));
      expect(text).toMatch(new RegExp(`RuntimeDirectory=${raw.runDir.replace('/run/', '')}|Requisite=evcc-boot.service`));
      if (unit !== 'evcc-commit.service') expect(text).toContain(`StateDirectory=${raw.dataDir.replace('/var/lib/', '')}`);
    }
    // Every directory the bench config points into under the data dir is created by tmpfiles for the evcc user.
    const tmpfiles = await readFile(join(repo, 'deploy/systemd/evcc.tmpfiles.conf'), 'utf8');
    const cfg = JSON.parse(await readFile(join(repo, 'deploy/config/evcc.bench.json'), 'utf8')) as { ota: { keyFile: string } };
    const keyDir = cfg.ota.keyFile.slice(0, cfg.ota.keyFile.lastIndexOf('/'));
    expect(tmpfiles).toMatch(new RegExp(`^d ${keyDir} 0700 evcc evcc`, 'm'));
    const runUnit = await readFile(join(repo, 'deploy/systemd/evcc.service'), 'utf8');
    expect(runUnit).toMatch(/ExecStart=.* run$/m);
    expect(runUnit).toContain('AmbientCapabilities=CAP_NET_RAW');
    // A failed measured boot must not keep the runtime from starting degraded.
    expect(await readFile(join(repo, 'deploy/systemd/evcc-boot.service'), 'utf8')).not.toMatch(/^RequiredBy=evcc.service/m);
  }, 60_000);
});
