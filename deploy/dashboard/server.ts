/**
 * The live dashboard's server: the static bench screen (deploy/dashboard/static, no build step; uPlot served from
 * node_modules), a read-only snapshot, a WebSocket feed of updates (ws), and Start/Stop behind a token.
 *
 * Why ws on node:http rather than a framework: the surface is six fixed routes, and ws is the most used and most
 * tested WebSocket implementation for Node with no dependencies of its own — the vehicle controller runs nothing
 * more than this needs. Static files come from a closed list read at start (no path from a request ever reaches
 * the file system).
 *
 * Safe defaults (issue #11): bound to 127.0.0.1 unless configured otherwise; requests whose Host is not this
 * server's (DNS rebinding) and WebSocket upgrades from a foreign Origin are refused; Start/Stop need the per-start
 * random token as `Authorization: Bearer …` (compared in constant time). The API has no key, root or policy
 * operation at all: nothing on the dashboard can change security state.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { SessionControl } from './control.ts';
import type { DashboardHub } from './hub.ts';

export interface DashboardServerOptions {
  host: string;
  /** 0: a free port. */
  port: number;
  token: string;
  hub: DashboardHub;
  control: SessionControl;
  log: Logger;
}

export interface DashboardServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** The routes there are; anything else is 404 (and no route changes security state). */
export const DASHBOARD_ROUTES = [
  'GET /', 'GET /assets/app.js', 'GET /assets/app.css', 'GET /vendor/uPlot.iife.min.js', 'GET /vendor/uPlot.min.css',
  'GET /api/snapshot', 'GET /api/live (WebSocket)', 'POST /api/session/start', 'POST /api/session/stop',
] as const;

interface Asset { body: Buffer; type: string }

const HERE = dirname(fileURLToPath(import.meta.url));

async function loadAssets(): Promise<Map<string, Asset>> {
  const uplotDir = dirname(createRequire(import.meta.url).resolve('uplot'));
  const files: [string, string, string][] = [
    ['/', join(HERE, 'static', 'index.html'), 'text/html; charset=utf-8'],
    ['/assets/app.js', join(HERE, 'static', 'app.js'), 'text/javascript; charset=utf-8'],
    ['/assets/app.css', join(HERE, 'static', 'app.css'), 'text/css; charset=utf-8'],
    ['/vendor/uPlot.iife.min.js', join(uplotDir, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['/vendor/uPlot.min.css', join(uplotDir, 'uPlot.min.css'), 'text/css; charset=utf-8'],
  ];
  const out = new Map<string, Asset>();
  for (const [route, path, type] of files) {
    try {
      out.set(route, { body: await readFile(path), type });
    } catch (err) {
      throw new EvccError('PREREQUISITE_MISSING', `dashboard asset ${path} is missing`, { path }, { cause: err });
    }
  }
  return out;
}

const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

function send(res: ServerResponse, status: number, body: string | Buffer, type = 'application/json; charset=utf-8'): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const json = (res: ServerResponse, status: number, v: unknown) => send(res, status, JSON.stringify(v));

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer ([0-9a-f]{16,128})$/.exec(header ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]!, 'utf8');
  const want = Buffer.from(token, 'utf8');
  return given.length === want.length && timingSafeEqual(given, want);
}

export async function startDashboardServer(o: DashboardServerOptions): Promise<DashboardServer> {
  if (!/^[0-9a-f]{32,128}$/.test(o.token)) throw new EvccError('CONFIG_INVALID', 'dashboard token must be 32–128 hex digits');
  const assets = await loadAssets();
  let port = o.port;
  /** Host headers this server answers to: its own address, and the loopback names when bound to loopback. */
  const allowedHosts = (): Set<string> => {
    const hosts = new Set([`${o.host}:${port}`, `[${o.host}]:${port}`]);
    if (o.host === '127.0.0.1' || o.host === '::1' || o.host === 'localhost') for (const h of ['127.0.0.1', 'localhost', '[::1]']) hosts.add(`${h}:${port}`);
    return hosts;
  };
  const hostOk = (req: IncomingMessage) => allowedHosts().has(String(req.headers.host ?? '').toLowerCase());
  const originOk = (req: IncomingMessage) => {
    const origin = req.headers.origin;
    return origin === undefined || allowedHosts().has(origin.replace(/^http:\/\//, '').toLowerCase());
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (!hostOk(req)) return send(res, 421, 'wrong host\n', 'text/plain; charset=utf-8');
    if (req.method === 'GET') {
      const asset = assets.get(path);
      if (asset) return send(res, 200, asset.body, asset.type);
      if (path === '/api/snapshot') return json(res, 200, o.hub.snapshot());
      return send(res, 404, 'not found\n', 'text/plain; charset=utf-8');
    }
    if (req.method === 'POST' && (path === '/api/session/start' || path === '/api/session/stop')) {
      // A body is not expected; anything sizeable is refused before it is read.
      if (Number(req.headers['content-length'] ?? 0) > 1024) return json(res, 413, { ok: false, reason: 'body too large' });
      if (!originOk(req)) return json(res, 403, { ok: false, reason: 'foreign origin' });
      if (!tokenMatches(req.headers.authorization, o.token)) {
        o.log.warn({ path }, `dashboard: ${path} refused: no valid token`);
        return json(res, 401, { ok: false, reason: 'token required (printed in the log at start, and in the token file)' });
      }
      const answer = path.endsWith('/start') ? o.control.start() : o.control.stop();
      o.log.info({ path, ok: answer.ok, ...(answer.ok ? {} : { reason: answer.reason }) }, `dashboard: ${path.endsWith('/start') ? 'Start' : 'Stop'} ${answer.ok ? 'accepted' : `refused: ${answer.reason}`}`);
      req.resume();
      return json(res, answer.ok ? 202 : 409, answer);
    }
    return send(res, path.startsWith('/api/session/') ? 405 : 404, 'not found\n', 'text/plain; charset=utf-8');
  };

  const server: Server = createServer(handle);
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 });
  server.on('upgrade', (req, socket, head) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/api/live' || !hostOk(req) || !originOk(req)) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => live(ws));
  });

  const live = (ws: WebSocket) => {
    ws.send(JSON.stringify({ type: 'snapshot', snapshot: o.hub.snapshot() }));
    const off = o.hub.subscribe((updates) => {
      // A screen that cannot keep up (1 MiB queued) is dropped rather than buffered without bound.
      if (ws.bufferedAmount > 1 << 20) {
        ws.terminate();
        return;
      }
      ws.send(JSON.stringify({ type: 'updates', updates }));
    });
    ws.on('close', off);
    ws.on('error', off);
    ws.on('message', () => undefined); // the feed is one-way; the screen sends nothing that is acted on
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new EvccError('DASHBOARD_LISTEN_FAILED', `dashboard cannot listen on ${o.host}:${o.port}: ${err.code ?? err.message}`, { host: o.host, port: o.port }, { cause: err })));
    server.listen(o.port, o.host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const hostPart = o.host.includes(':') ? `[${o.host}]` : o.host;
  const url = `http://${hostPart}:${port}/`;
  return {
    url, port,
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
