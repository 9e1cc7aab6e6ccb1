/**
 * The session suite on real hardware (test/hil/README.md: wiring and the expected outcome of each test). Each test
 * names the hardware it needs; a test whose hardware is not named is skipped with the variable it needs — and the
 * whole run fails as NOT RUN when no hardware is named at all (global-setup.ts).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { SerialPilotBoard } from '../../hal/pilot/serial-board.ts';
import { requestsHighLevelCommunication } from '../../hal/pilot/types.ts';
import { hilHardware, missing } from './hardware.ts';

const repo = join(import.meta.dirname, '..', '..');
const hw = hilHardware(process.env, repo);

interface Run { code: number | null; stdout: string; stderr: string }

/** `evcc …` as the bench runs it (node with tsx, no second node process in between). */
function evcc(args: string[], o: { timeoutMs: number; until?: RegExp } = { timeoutMs: 120_000 }): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'bin/evcc.ts'), ...args], { cwd: repo, env: process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      process.stderr.write(d);
      if (o.until?.test(stderr)) child.kill('SIGTERM');
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), o.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const hilIt = (name: string, needs: Parameters<typeof missing>[1], fn: () => Promise<void>, timeoutMs?: number) => {
  const why = missing(hw, needs);
  if (why) it.skip(`${name} — NOT RUN (${why})`, () => undefined);
  else it(name, fn, timeoutMs);
};

describe('HIL: vehicle TPM', () => {
  hilIt('tpm status on the named TCTI: provisioned, booted release, anti-rollback counter', ['tpm'], async () => {
    const r = await evcc(['tpm', 'status', '--tcti', hw.tpm!], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const status = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(typeof status).toBe('object');
    expect(r.stderr).not.toMatch(/\[ERROR\]/);
  });
});

describe('HIL: pilot board', () => {
  hilIt('the board answers with a CP state (evcc-pilot/1)', ['pilot'], async () => {
    const board = await SerialPilotBoard.open({ path: hw.pilot!, baudRate: hw.pilotBaud, log: silentLogger() });
    try {
      const r = board.read();
      expect(['A', 'B', 'C', 'D', 'E', 'F']).toContain(r.state);
      if (hw.plugged) expect(requestsHighLevelCommunication(r), `plugged into an HLC charger: expected B/C with 5 % duty, got ${r.state} ${r.dutyPercent} %`).toBe(true);
    } finally {
      await board.close();
    }
  });
});

describe('HIL: PLC link and charger', () => {
  hilIt('SLAC on the modem interface matches the charger', ['plcIface', 'plugged'], async () => {
    if (hw.linkUp) return; // the link is up by other means: nothing to match
    const r = await evcc(['slac', '--iface', hw.plcIface!, '--json'], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { evseMac: string; evses: unknown[] };
    expect(m.evseMac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(m.evses.length).toBeGreaterThan(0);
  });

  hilIt('SDP finds the SECC on the interface\'s link-local scope', ['plcIface', 'plugged'], async () => {
    const r = await evcc(['sdp', '--iface', hw.plcIface!, '--security', 'tls-preferred'], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { address: string; port: number; security: string };
    expect(s.address).toMatch(/^fe80:/);
    expect(s.port).toBeGreaterThan(0);
  });

  hilIt('TLS to the SECC validates its chain against the named roots', ['plcIface', 'plugged', 'roots'], async () => {
    const where = hw.charger ? ['--address', hw.charger.address, '--port', String(hw.charger.port)] : [];
    const r = await evcc(['tls-probe', '--iface', hw.plcIface!, '--root', ...hw.roots, ...where], { timeoutMs: 60_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ protocol: expect.stringMatching(/^TLSv1\.[23]$/) });
  });

  hilIt('a whole session with the vehicle config: SLAC, SDP, TLS, ISO 15118-2 or DIN to SessionStop', ['plcIface', 'plugged'], async () => {
    const r = await evcc(['--config', hw.config, 'charge', '--iface', hw.plcIface!, '--json', ...(hw.linkUp ? ['--link-up'] : []), ...(hw.tpm ? ['--tcti', hw.tpm] : ['--no-keys'])], { timeoutMs: 280_000 });
    const report = JSON.parse(r.stdout) as { ok: boolean; state: string; messages?: Record<string, number>; endReason: { code: string } };
    expect(report.endReason.code, r.stderr.split('\n').filter((l) => l.includes('[ERROR]')).join('\n')).toBe('SESSION_COMPLETED');
    expect(report).toMatchObject({ ok: true, state: 'Ended' });
    expect(report.messages?.SessionStopReq).toBe(1);
    expect(r.code).toBe(0);
  }, 300_000);
});

describe('HIL: the service', () => {
  hilIt('evcc run with the pilot board: a session on plug-in, ended by unplug (operator plugs in, then unplugs)', ['plcIface', 'pilot', 'operator'], async () => {
    process.stderr.write('\nHIL operator: plug the vehicle inlet into the charger now; unplug when the session has stopped.\n\n');
    const r = await evcc(['--config', hw.config, 'run', '--iface', hw.plcIface!, '--pilot', hw.pilot!, ...(hw.tpm ? ['--tcti', hw.tpm] : ['--no-keys'])], {
      timeoutMs: 280_000, until: /unplugged \(state A\): session 1 ended/,
    });
    expect(r.stderr).toMatch(/high-level communication requested \(session 1\)/);
    expect(r.stderr).toMatch(/session complete/);
    expect(r.stderr).toMatch(/unplugged \(state A\): session 1 ended/);
  }, 300_000);
});
