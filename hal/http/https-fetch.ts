import { request, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { EvccError } from '../../core/errors.ts';
import type { BundleFetchPort, HttpErrorCode, RangeResponse } from './types.ts';

/**
 * The real bundle transport: node:https with the OEM backend's CA as the only trust anchor (never the system
 * store), TLS ≥ 1.2, hostname checked, no redirects followed and no plain HTTP, ever (a downgrade would hand the
 * download to whoever sits on the path; the SHA-256 would still catch a swap, but not a stall or a size attack).
 * Optional mutual TLS with the vehicle's link identity. The body streams in the socket's chunks; nothing is
 * buffered beyond one chunk, so the caller's size cap applies before buffering.
 */
export interface HttpsFetchOptions {
  /** PEM of the CA(s) that sign the bundle server's certificate. */
  ca: string | Uint8Array;
  /** Client certificate and key (mutual TLS), when the server asks for one. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  passphrase?: string;
  /** A connection idle this long (no byte) is dropped: OTA_DOWNLOAD_NETWORK (default 30 s). */
  idleTimeoutMs?: number;
}

function httpError(code: HttpErrorCode, message: string, details: Record<string, unknown>, cause?: unknown): EvccError {
  return new EvccError(code, message, details, cause === undefined ? undefined : { cause });
}

/** Node's certificate-verification error codes (tls.TLSSocket#authorizationError, ERR_TLS_CERT_ALTNAME_INVALID …). */
const TLS_ERROR = /^(ERR_TLS_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|CERT_|ERR_SSL_)|HOSTNAME_MISMATCH/;

function classify(err: unknown, url: string): EvccError {
  if (err instanceof EvccError) return err;
  const code = String((err as NodeJS.ErrnoException).code ?? '');
  if (TLS_ERROR.test(code)) return httpError('OTA_DOWNLOAD_TLS', `bundle server ${url}: TLS refused (${code})`, { url, reason: code }, err);
  return httpError('OTA_DOWNLOAD_NETWORK', `bundle server ${url}: ${(err as Error).message}`, { url, reason: code || (err as Error).message }, err);
}

/** `bytes a-b/total` → numbers; undefined when malformed. */
export function parseContentRange(v: string | undefined): { first: number; last: number; total?: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v ?? '');
  if (!m) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (last < first) return undefined;
  return { first, last, ...(m[3] !== '*' ? { total: Number(m[3]) } : {}) };
}

export class HttpsBundleFetch implements BundleFetchPort {
  constructor(private readonly o: HttpsFetchOptions) {}

  get(url: string, options: { start: number; signal?: AbortSignal }): Promise<RangeResponse> {
    let u: URL;
    try {
      u = new URL(url);
    } catch (err) {
      return Promise.reject(httpError('OTA_DOWNLOAD_URL_REFUSED', `bundle URL ${JSON.stringify(url)} is not a URL`, { url }, err));
    }
    if (u.protocol !== 'https:' || !u.hostname) {
      return Promise.reject(httpError('OTA_DOWNLOAD_URL_REFUSED', `bundle URL ${url} is not https:// (plain HTTP is never used)`, { url }));
    }
    const start = options.start;
    const req: RequestOptions = {
      method: 'GET',
      host: u.hostname.replace(/^\[|\]$/g, ''),
      servername: /^[\d.]+$|:/.test(u.hostname) ? undefined : u.hostname,
      port: u.port || 443,
      path: `${u.pathname}${u.search}`,
      headers: { accept: 'application/octet-stream', ...(start > 0 ? { range: `bytes=${start}-` } : {}) },
      ca: typeof this.o.ca === 'string' ? this.o.ca : Buffer.from(this.o.ca),
      ...(this.o.cert ? { cert: Buffer.from(this.o.cert) } : {}),
      ...(this.o.key ? { key: Buffer.from(this.o.key) } : {}),
      ...(this.o.passphrase ? { passphrase: this.o.passphrase } : {}),
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      agent: false,
      ...(options.signal ? { signal: options.signal } : {}),
    };
    const idleMs = this.o.idleTimeoutMs ?? 30_000;
    return new Promise<RangeResponse>((resolve, reject) => {
      const r = request(req, (res) => {
        try {
          resolve(this.response(res, url, start, () => r.destroy()));
        } catch (err) {
          res.destroy();
          reject(err);
        }
      });
      r.setTimeout(idleMs, () => r.destroy(httpError('OTA_DOWNLOAD_NETWORK', `bundle server ${url}: idle for ${idleMs} ms`, { url, idleMs })));
      r.on('error', (err) => reject(classify(err, url)));
      r.end();
    });
  }

  private response(res: IncomingMessage, url: string, start: number, abort: () => void): RangeResponse {
    const status = res.statusCode ?? 0;
    const length = res.headers['content-length'] !== undefined ? Number(res.headers['content-length']) : undefined;
    if (length !== undefined && !Number.isSafeInteger(length)) throw httpError('OTA_DOWNLOAD_HTTP', `bundle server ${url}: bad Content-Length`, { url });
    if (status === 416) {
      const total = /^bytes \*\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''))?.[1];
      throw httpError('OTA_DOWNLOAD_RANGE_UNSATISFIABLE', `bundle server ${url}: range from ${start} not satisfiable`, { url, start, ...(total ? { total: Number(total) } : {}) });
    }
    let total: number | undefined;
    if (status === 206) {
      const cr = parseContentRange(res.headers['content-range']);
      if (!cr || cr.first !== start || (length !== undefined && length !== cr.last - cr.first + 1)) {
        throw httpError('OTA_DOWNLOAD_HTTP', `bundle server ${url}: Content-Range ${res.headers['content-range'] ?? '(none)'} does not fit the request from ${start}`, { url, start, contentRange: res.headers['content-range'] });
      }
      total = cr.total;
    } else if (status === 200) {
      total = length;
    } else {
      throw httpError('OTA_DOWNLOAD_HTTP', `bundle server ${url}: HTTP ${status}`, { url, status });
    }
    const body = (async function* () {
      try {
        for await (const chunk of res) yield new Uint8Array(chunk as Buffer);
      } catch (err) {
        throw classify(err, url);
      }
      if (!res.complete) throw httpError('OTA_DOWNLOAD_NETWORK', `bundle server ${url}: connection closed mid-body`, { url });
    })();
    return {
      status, start: status === 206 ? start : 0, ...(length !== undefined ? { length } : {}), ...(total !== undefined ? { total } : {}), body,
      abort: () => {
        res.destroy();
        abort();
      },
    };
  }
}
