import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

/** The README's main job, end to end as a user runs it: the CLI in its own process, no root, no hardware. */
async function benchSession(args: string[]): Promise<{ code: number; report: Record<string, any>; log: string[] }> {
  try {
    const { stdout, stderr } = await run('npx', ['tsx', 'bin/evcc.ts', 'bench-session', '--json', ...args], { timeout: 90_000 });
    return { code: 0, report: JSON.parse(stdout), log: stderr.split('\n') };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, report: e.stdout ? JSON.parse(e.stdout) : {}, log: (e.stderr ?? '').split('\n') };
  }
}

function indexOfLine(log: string[], re: RegExp): number {
  return log.findIndex((l) => re.test(l));
}

describe('evcc bench-session (main job)', () => {
  it('Scenario 2 / Solution C: unknown root fetched over MQTT, TLS retried, SupportedAppProtocol negotiated', async () => {
    const { code, report, log } = await benchSession([]);
    expect(code).toBe(0);
    expect(report.state).toBe('Established');
    expect(report.link.evseMac).toBe('02:5e:cc:00:00:01'); // the nearer of the two simulated chargers
    expect(report.link.evses).toHaveLength(2);
    expect(report.channel).toMatchObject({ protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-SHA256' });
    expect(report.channel.installedRoot.subject).toMatch(/V2G Root CA B/);
    expect(report.app).toEqual({ namespace: 'urn:iso:15118:2:2013:MsgDef', schemaId: 1, responseCode: 'OK_SuccessfulNegotiation' });
    expect(report.setupMs).toBeLessThan(20_000);
    // The bench log tells the story in order, one line per step, in the engineer's format.
    const steps = [
      /^\d\d:\d\d:\d\d\.\d{3} \[INFO\] SLAC: matching process successful/,
      /\[INFO\] SDP: SECC found at/,
      /\[ERROR\] TLS: connection failed: unknown root CA CN=V2G Root CA B/,
      /\[INFO\] OTA: V2G root installed/,
      /\[INFO\] TLS: connection established/,
      /\[INFO\] APPHAND: SupportedAppProtocolRes: OK_SuccessfulNegotiation/,
    ].map((re) => indexOfLine(log, re));
    expect(steps.every((i) => i >= 0)).toBe(true);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
  });

  it('without the OEM backend the unknown root is a typed failure, never a downgrade', async () => {
    const { code, report, log } = await benchSession(['--no-ota']);
    expect(code).toBe(1);
    expect(report.state).toBe('Failed');
    expect(report.error.code).toBe('TLS_UNKNOWN_ROOT');
    expect(log.some((l) => /APPHAND/.test(l))).toBe(false);
  });
});
