import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { silentLogger } from '../../core/logger.ts';
import { startDashboard, type RunningDashboard } from './start.ts';

const open: RunningDashboard[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const d of open.splice(0)) await d.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function up(o: { startable?: boolean } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'evcc-dash-'));
  dirs.push(dir);
  const runs: AbortSignal[] = [];
  let orderly = 0;
  let finish: () => void = () => undefined;
  const d = await startDashboard({
    settings: { host: '127.0.0.1', port: 0 }, tokenFile: join(dir, 'run', 'dashboard.token'), printToken: false, log: silentLogger(),
    startable: o.startable ?? true, whyNotStartable: 'sessions start on plug-in (pilot board)',
    runner: {
      run: (signal) => new Promise<void>((resolve) => {
        runs.push(signal);
        finish = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      }),
      requestOrderlyStop: () => {
        orderly++;
        finish();
        return true;
      },
    },
  });
  open.push(d);
  return { d, dir, runs, orderly: () => orderly };
}

/** A raw request (fetch cannot set Host). */
function raw(port: number, o: { method?: string; path: string; headers?: Record<string, string> }): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path, headers: o.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('dashboard server', () => {
  it('serves the screen and the snapshot; the token file is 0600 and removed at close', async () => {
    const { d, dir } = await up();
    expect(d.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(d.url);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await page.text()).toContain('EVCC Configuration &amp; Status Information');
    expect((await fetch(`${d.url}vendor/uPlot.iife.min.js`)).status).toBe(200);
    const snap = await (await fetch(`${d.url}api/snapshot`)).json() as { session: { state: string } };
    expect(snap.session.state).toBe('idle');
    const file = join(dir, 'run', 'dashboard.token');
    expect(((await stat(file)).mode & 0o777).toString(8)).toBe('600');
    expect((await readFile(file, 'utf8')).trim()).toBe(d.token);
    expect(JSON.stringify(snap)).not.toContain(d.token);
    await d.close();
    open.splice(0);
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('Start and Stop need the token; Stop asks for an orderly end first', async () => {
    const { d, runs, orderly } = await up();
    const post = (path: string, token?: string) => fetch(`${d.url}api/session/${path}`, { method: 'POST', ...(token ? { headers: { Authorization: `Bearer ${token}` } } : {}) });
    expect((await post('start')).status).toBe(401);
    expect((await post('start', 'ab'.repeat(16))).status).toBe(401);
    expect(runs).toHaveLength(0);
    const ok = await post('start', d.token);
    expect(ok.status).toBe(202);
    expect(runs).toHaveLength(1);
    expect((await post('start', d.token)).status).toBe(409); // one session at a time
    expect((await post('stop')).status).toBe(401);
    expect(orderly()).toBe(0);
    expect((await post('stop', d.token)).status).toBe(202);
    expect(orderly()).toBe(1);
    await new Promise((r) => setTimeout(r, 20));
    expect((await post('stop', d.token)).status).toBe(409); // nothing running any more
  });

  it('has no route that changes security state; foreign Host and Origin are refused', async () => {
    const { d } = await up();
    for (const path of ['/api/roots', '/api/keys', '/api/policy', '/api/pki/install', '/api/config']) {
      expect((await fetch(`${d.url}${path.slice(1)}`, { method: 'POST', headers: { Authorization: `Bearer ${d.token}` } })).status).toBe(404);
    }
    expect((await fetch(`${d.url}../../etc/passwd`)).status).toBe(404);
    expect((await raw(d.port, { path: '/api/snapshot', headers: { Host: `evil.example:${d.port}` } })).status).toBe(421);
    expect((await raw(d.port, { method: 'POST', path: '/api/session/start', headers: { Authorization: `Bearer ${d.token}`, Origin: 'http://evil.example' } })).status).toBe(403);
    const foreign = new WebSocket(`ws://127.0.0.1:${d.port}/api/live`, { origin: 'http://evil.example' });
    await expect(new Promise((resolve, reject) => { foreign.on('open', resolve); foreign.on('error', reject); })).rejects.toThrow(/403/);
  });

  it('the live feed sends the snapshot, then updates', async () => {
    const { d } = await up();
    const ws = new WebSocket(`ws://127.0.0.1:${d.port}/api/live`, { origin: `http://127.0.0.1:${d.port}` });
    const got: { type: string; snapshot?: unknown; updates?: { type: string }[] }[] = [];
    ws.on('message', (m) => got.push(JSON.parse(String(m))));
    await new Promise((r) => ws.on('open', r));
    await new Promise((r) => setTimeout(r, 50));
    d.hub.sessionStarted('bench');
    d.hub.logLine(JSON.stringify({ level: 'info', time: Date.now(), sub: 'SLAC', msg: 'matching process successful' }));
    d.hub.logLine('not json');
    await new Promise((r) => setTimeout(r, 50));
    ws.close();
    expect(got[0]?.type).toBe('snapshot');
    expect(got.slice(1).flatMap((m) => m.updates!.map((u) => u.type))).toEqual(['session', 'failure', 'timeline', 'limits', 'log']);
  });

  it('Start is refused where sessions start on plug-in', async () => {
    const { d } = await up({ startable: false });
    const r = await fetch(`${d.url}api/session/start`, { method: 'POST', headers: { Authorization: `Bearer ${d.token}` } });
    expect(r.status).toBe(409);
    expect(await r.json()).toEqual({ ok: false, reason: 'sessions start on plug-in (pilot board)' });
  });
});
