/**
 * The service's dashboard (`evcc run --trigger now` with config `dashboard.enabled`) on real links (charge-rig.ts:
 * veth, SLAC peer, SECC simulator on PKI-B, mosquitto + OEM backend): the first session runs at once and appears on
 * the dashboard with its timeline (Solution C root fetch included) and chart samples from the decoded messages;
 * Start needs the token from the 0600 token file in the run dir; a second Start runs a second session; SIGTERM
 * stops the service and removes the token file.
 */
import { spawn } from 'node:child_process';
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWith, root, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';
import { ChargeRig, lines, storeKeyEnv } from './charge-rig.ts';

let cr: ChargeRig;

/** An HTTP request from inside a namespace (the dashboard listens on that namespace's loopback). */
function httpIn(ns: string, method: string, url: string, token?: string): Promise<{ status: number; body: unknown }> {
  const script = `const r = await fetch(${JSON.stringify(url)}, { method: ${JSON.stringify(method)}, headers: ${JSON.stringify(token ? { Authorization: `Bearer ${token}` } : {})} });
process.stdout.write(JSON.stringify({ status: r.status, body: await r.json() }));`;
  return new Promise((resolve, reject) => {
    const c = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as { status: number; body: unknown }) : reject(new Error(`fetch in ${ns} failed: ${err}`))));
  });
}

interface Snapshot {
  session: { state: string };
  timeline: { name: string; status: string }[];
  samples: unknown[];
  system?: { mode: string; security: { mode: string; degraded: boolean } };
  certificates?: { rows: { subject: string; origin?: string }[] };
}

describeWith([root, tool('ip'), tool('mosquitto'), tool('socat')])('evcc run with the dashboard on real links', () => {
  beforeAll(async () => {
    cr = await ChargeRig.start();
  }, 90_000);
  afterAll(async () => {
    await cr?.destroy();
  });

  it('shows the service sessions; Start needs the token file; SIGTERM ends the service and removes the token', async () => {
    const { config } = await cr.vehicle('dash', { dashboard: { enabled: true, port: 0 } });
    const runDir = join(cr.dir, 'dash-run');
    const ns = cr.rig.pair.ev;
    const svc = cr.spawnIn(ns, ['--config', config, '--no-log-fields', 'run', '--trigger', 'now', '--store-key-env', 'EVCC_STORE_KEY'], storeKeyEnv());
    const io = lines(svc);
    const exited = new Promise<number | null>((r) => svc.once('exit', (c) => r(c)));
    const show = () => io.err.join('\n');
    const count = (re: RegExp) => io.err.filter((l) => re.test(l)).length;
    try {
      await until(() => io.err.some((l) => /dashboard at http:\/\/127\.0\.0\.1:\d+\//.test(l)), 30_000, `dashboard up\n${show()}`);
      const url = /dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(io.err.find((l) => l.includes('dashboard at'))!)![1]!;
      // The token is not in the service log; it is in the run dir, readable by the service's user only.
      const tokenFile = join(runDir, 'dashboard.token');
      expect(((await stat(tokenFile)).mode & 0o777).toString(8)).toBe('600');
      const token = (await readFile(tokenFile, 'utf8')).trim();
      expect(show()).not.toContain(token);

      await until(() => count(/EVCC: session complete: ISO 15118-2/) === 1, 45_000, `first session\n${show()}`);
      const first = (await httpIn(ns, 'GET', `${url}api/snapshot`)).body as Snapshot;
      expect(first.session.state).toBe('ended');
      const names = first.timeline.map((p) => p.name);
      // Root B comes either by the service's proactive root sync (before the charger asks) or by Solution C in the
      // session, whichever is first; the timeline and the certificate view must tell the same story.
      const fetched = names.includes('Root fetch (Solution C)');
      expect(names.slice(0, 4)).toEqual(['Plug-in', 'SLAC', 'SDP', 'TLS']);
      expect(names.slice(4, 7)).toEqual(fetched ? ['Root fetch (Solution C)', 'TLS (attempt 2)', 'SupportedAppProtocol'] : ['SupportedAppProtocol', 'SessionSetup', 'ServiceDiscovery']);
      expect(names).toContain('SessionStop');
      expect(first.samples.length).toBeGreaterThan(5);
      expect(first.system).toMatchObject({ mode: 'service', security: { mode: 'eim-only', degraded: true } });
      const rootB = first.certificates?.rows.find((r) => /V2G Root CA B/.test(r.subject));
      expect(rootB?.origin).toMatch(fetched ? /^Solution C fetch/ : /^proactive sync/);

      expect((await httpIn(ns, 'POST', `${url}api/session/start`)).status).toBe(401);
      const started = await httpIn(ns, 'POST', `${url}api/session/start`, token);
      expect(started).toEqual({ status: 202, body: { ok: true, state: 'started' } });
      await until(() => count(/EVCC: session complete: ISO 15118-2/) === 2, 45_000, `second session\n${show()}`);
      const second = (await httpIn(ns, 'GET', `${url}api/snapshot`)).body as Snapshot;
      // Root B is installed now: no fetch in the second session.
      expect(second.timeline.map((p) => p.name)).not.toContain('Root fetch (Solution C)');
      expect(second.session.state).toBe('ended');
    } finally {
      svc.kill('SIGTERM');
    }
    expect(await exited, show()).toBe(0);
    await expect(stat(join(runDir, 'dashboard.token'))).rejects.toMatchObject({ code: 'ENOENT' });
  }, 150_000);
});
