import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';

/**
 * The OEM backend's bundle server: release bundles over HTTPS (node:https with the backend's TLS identity, TLS ≥ 1.2)
 * with single-range requests (RFC 9110 §14: `bytes=a-`, `bytes=a-b`, `bytes=-n` → 206 with Content-Range; a start at
 * or past the end → 416 with `bytes *\/size`), so a vehicle resumes a broken download where it stopped. Only file
 * names under the bundle dir are served (`/bundles/<name>.raucb`), nothing else; one log line per transfer.
 * The bundle's integrity does not rest on this server: the job names its SHA-256 and RAUC checks its signature.
 */
export interface BundleServerOptions {
  /** Directory whose `*.raucb` files are served under /bundles/. */
  dir: string;
  /** The backend's TLS identity (PEM). */
  cert: string | Uint8Array;
  key: string | Uint8Array;
  passphrase?: string;
  /** When set, clients must present a certificate from this CA (the link CA: vehicles' link identity). */
  clientCa?: string | Uint8Array;
  host?: string;
  port?: number;
  log: Logger;
}

export const BUNDLE_PATH = /^\/bundles\/([A-Za-z0-9][A-Za-z0-9._-]{0,127}\.raucb)$/;

/** Parses one `Range` header against a resource of `size` bytes: undefined = serve all, 'unsatisfiable' = 416. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  // Multiple ranges or another unit: RFC 9110 lets a server ignore the header and send the whole resource.
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size) return 'unsatisfiable';
  if (end < start) return undefined;
  return { start, end };
}

export class BundleServer {
  private server: Server | undefined;
  readonly stats = { requests: 0, full: 0, partial: 0, unsatisfiable: 0, notFound: 0, bytes: 0 };

  constructor(private readonly o: BundleServerOptions) {}

  /** Listens; resolves with the bound port. */
  async start(): Promise<number> {
    const o = this.o;
    const server = createServer({
      cert: Buffer.from(o.cert), key: Buffer.from(o.key), ...(o.passphrase ? { passphrase: o.passphrase } : {}),
      minVersion: 'TLSv1.2',
      ...(o.clientCa ? { ca: Buffer.from(o.clientCa), requestCert: true, rejectUnauthorized: true } : {}),
    }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        o.log.error({ url: req.url, error: (err as Error).message }, 'bundle server: request failed');
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    });
    server.on('tlsClientError', (err) => o.log.warn({ error: err.message }, 'bundle server: TLS handshake refused'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new EvccError('CONFIG_INVALID', `bundle server cannot listen on ${o.host ?? '127.0.0.1'}:${o.port ?? 0}: ${err.message}`, { port: o.port }, { cause: err })));
      server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
    });
    this.server = server;
    const port = (server.address() as AddressInfo).port;
    o.log.info({ port, dir: o.dir, mutualTls: o.clientCa !== undefined }, 'bundle server listening');
    return port;
  }

  get port(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    const path = (req.url ?? '').split('?')[0]!;
    const m = BUNDLE_PATH.exec(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const file = m ? join(this.o.dir, m[1]!) : undefined;
    const st = file ? await stat(file).catch(() => undefined) : undefined;
    if (!file || !st?.isFile()) {
      this.stats.notFound++;
      res.writeHead(404).end();
      return;
    }
    const size = st.size;
    const range = parseRange(req.headers.range, size);
    const common = { 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', etag: `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"` };
    if (range === 'unsatisfiable') {
      this.stats.unsatisfiable++;
      res.writeHead(416, { ...common, 'content-range': `bytes */${size}` }).end();
      this.o.log.info({ file: m![1], range: req.headers.range, size }, 'bundle server: range not satisfiable');
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const length = size === 0 ? 0 : end - start + 1;
    if (range) {
      this.stats.partial++;
      res.writeHead(206, { ...common, 'content-length': length, 'content-range': `bytes ${start}-${end}/${size}` });
    } else {
      this.stats.full++;
      res.writeHead(200, { ...common, 'content-length': size });
    }
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    const stream = createReadStream(file, { start, end, highWaterMark: 64 * 1024 });
    let sent = 0;
    stream.on('data', (c) => (sent += c.length));
    await new Promise<void>((resolve) => {
      const done = () => {
        this.stats.bytes += sent;
        this.o.log.info({ file: m![1], status: range ? 206 : 200, start, sent, of: length, complete: sent === length && res.writableFinished }, 'bundle server: transfer');
        resolve();
      };
      res.once('close', done);
      stream.once('error', () => res.destroy());
      stream.pipe(res);
    });
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
