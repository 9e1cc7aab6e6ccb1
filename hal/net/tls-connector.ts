import type { X509Certificate } from 'node:crypto';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { EvccError } from '../../core/errors.ts';
import { byteStreamOf } from './byte-stream.ts';
import { scoped } from './scope.ts';
import type { TlsConnectOptions, TlsConnector, TlsPeerInfo, TlsSession } from './types.ts';

/** Maps a (simulated) destination to a real one; the sim network uses it to reach loopback listeners. */
export type AddressResolver = (host: string, port: number, iface: string | undefined) => { host: string; port: number };

/**
 * TLS client over node:tls.
 *
 * Trust decision: OpenSSL's own verification is switched off (`rejectUnauthorized: false`, no CA list, no
 * hostname check) ONLY because the mandatory `verifyPeer` gate replaces it: it runs in the `secureConnect`
 * handler, before this connector hands out the socket, so no caller can write an application byte before our
 * path validation (firmware/pki) accepted the chain. A failing gate destroys the socket (no close_notify, no data).
 * The integration test `test/integration/tls-*.test.ts` checks on the server side that zero application bytes
 * arrive on a rejected connection.
 */
export class NodeTlsConnector implements TlsConnector {
  constructor(private readonly resolve?: AddressResolver) {}

  connect(o: TlsConnectOptions): Promise<TlsSession> {
    if (typeof o.verifyPeer !== 'function') {
      return Promise.reject(new EvccError('CONFIG_INVALID', 'TLS connect without a verifyPeer gate is not allowed'));
    }
    const target = this.resolve ? this.resolve(o.host, o.port, o.iface) : { host: scoped(o.host, o.iface), port: o.port };
    return new Promise<TlsSession>((resolve, reject) => {
      let settled = false;
      let sock: TLSSocket;
      const finish = (err: Error | undefined, session?: TlsSession): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        if (err) {
          sock.destroy();
          reject(err);
        } else {
          resolve(session!);
        }
      };
      const onAbort = (): void => finish(new EvccError('ABORTED', 'TLS connect aborted', {}, { cause: o.signal?.reason }));
      const timer = setTimeout(() => finish(new EvccError('TLS_TIMEOUT', `TLS handshake with [${o.host}]:${o.port} took longer than ${o.timeoutMs} ms`, { host: o.host, port: o.port })), o.timeoutMs);
      if (o.signal?.aborted) {
        clearTimeout(timer);
        return reject(new EvccError('ABORTED', 'TLS connect aborted'));
      }
      o.signal?.addEventListener('abort', onAbort, { once: true });

      let tcpUp = false;
      sock = tlsConnect({
        host: target.host,
        port: target.port,
        minVersion: o.minVersion,
        maxVersion: o.maxVersion,
        ciphers: o.ciphers,
        ecdhCurve: o.ecdhCurve,
        sigalgs: o.sigalgs,
        ...(o.clientCertChainPem && o.clientKeyPem ? { cert: o.clientCertChainPem, key: o.clientKeyPem } : {}),
        // See the class comment: our verifyPeer gate below is the trust decision.
        rejectUnauthorized: false,
        ca: [],
        checkServerIdentity: () => undefined,
      });
      sock.setNoDelay(true);
      sock.once('connect', () => {
        tcpUp = true;
      });
      if (o.onKeyLog) {
        const sink = o.onKeyLog;
        sock.on('keylog', (line: Buffer) => sink(line.toString('utf8')));
      }
      sock.once('error', (err: NodeJS.ErrnoException) => {
        const code = tcpUp ? 'TLS_HANDSHAKE_FAILED' : 'TLS_CONNECT_FAILED';
        finish(new EvccError(code, `${tcpUp ? 'TLS handshake' : 'TCP connect'} with [${o.host}]:${o.port} failed: ${err.message}`, {
          host: o.host, port: o.port, reason: err.code ?? err.message,
        }, { cause: err }));
      });
      sock.once('close', () => finish(new EvccError(tcpUp ? 'TLS_HANDSHAKE_FAILED' : 'TLS_CONNECT_FAILED', `connection to [${o.host}]:${o.port} closed during the handshake`, { host: o.host, port: o.port })));
      sock.once('secureConnect', () => {
        const cipher = sock.getCipher();
        const peer: TlsPeerInfo = {
          chainDer: peerChain(sock),
          protocol: sock.getProtocol() ?? 'unknown',
          cipher: cipher.name,
          remoteAddress: o.host,
          remotePort: o.port,
        };
        // The gate. Nothing else has access to `sock` until it resolves.
        Promise.resolve()
          .then(() => o.verifyPeer(peer))
          .then(() => {
            if (settled) return; // timed out or aborted meanwhile
            finish(undefined, { peer, stream: byteStreamOf(sock) });
          })
          .catch((err: unknown) => finish(err instanceof Error ? err : new Error(String(err))));
      });
    });
  }
}

/**
 * The certificates the server sent, DER, in the order it sent them (leaf first). `getPeerX509Certificate()`'s
 * `issuerCertificate` links follow the raw peer stack; `getPeerCertificate(true)` would not do: it keeps only
 * what OpenSSL's issuer check links and drops e.g. a certificate issued by a non-CA.
 */
function peerChain(sock: TLSSocket): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  let c: X509Certificate | undefined = sock.getPeerX509Certificate();
  while (c && !seen.has(c.fingerprint256) && out.length < 16) {
    seen.add(c.fingerprint256);
    out.push(new Uint8Array(c.raw));
    c = c.issuerCertificate;
  }
  return out;
}
