import type { X509Certificate } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { EvccError } from '../../core/errors.ts';
import { byteStreamOf } from './byte-stream.ts';
import { scoped } from './scope.ts';
import { TlsHandshakeGuard, type SecondFlight } from './tls-guard.ts';
import { TLS_ALERTS, alertName, isTls13Suite, plaintextAlert, tls13Alerts } from './tls-records.ts';
import type { TlsAlertName, TlsConnectOptions, TlsConnector, TlsConnectorErrorCode, TlsPeerInfo, TlsSession } from './types.ts';

/** Maps a (simulated) destination to a real one; the sim network uses it to reach loopback listeners. */
export type AddressResolver = (host: string, port: number, iface: string | undefined) => { host: string; port: number };

/**
 * TLS client over node:tls, with the trust decision taken by our own `verifyPeer` gate in the middle of the
 * handshake.
 *
 * OpenSSL's verification is off (`rejectUnauthorized: false`, no CA list, no hostname check): Node's client
 * verify callback accepts every chain inside OpenSSL and judges only after the handshake (checked on Node 20 /
 * OpenSSL 3.0: with `ca` + `rejectUnauthorized: true` a TLS 1.2 server still completes its handshake and then
 * sees a bare close), so it cannot produce an alert before our Finished. Instead a `TlsHandshakeGuard` sits
 * between node:tls and the TCP socket and holds our second flight back until `verifyPeer` has judged the chain:
 *  - accepted: the flight goes out; TLS 1.2 completes; TLS 1.3 waits (bounded by `clientAuthVerdictMs`) for the
 *    server's verdict on our certificate, which only comes after our Finished;
 *  - refused: the held flight is dropped (TLS 1.3: the vehicle certificate never reaches that SECC), the alert of
 *    `alertFor(err)` goes out — in clear for TLS 1.2 (no cipher active before our ChangeCipherSpec), encrypted under
 *    the client handshake traffic secret for TLS 1.3 — then FIN.
 * No caller can write an application byte before the gate resolved: the socket is handed out only afterwards.
 * An orderly `stream.close()` sends close_notify (node:tls `end()`), then FIN.
 */
export class NodeTlsConnector implements TlsConnector {
  constructor(private readonly resolve?: AddressResolver) {}

  connect(o: TlsConnectOptions): Promise<TlsSession> {
    if (typeof o.verifyPeer !== 'function') {
      return Promise.reject(new EvccError<TlsConnectorErrorCode>('CONFIG_INVALID', 'TLS connect without a verifyPeer gate is not allowed'));
    }
    const target = this.resolve ? this.resolve(o.host, o.port, o.iface) : { host: scoped(o.host, o.iface), port: o.port };
    const where = { host: o.host, port: o.port };
    const endpoint = `[${o.host}]:${o.port}`;
    return new Promise<TlsSession>((resolve, reject) => {
      let settled = false;
      let phase: 'tcp' | 'handshake' | 'gate' | 'finishing' | 'verdict' = 'tcp';
      let flight: SecondFlight | undefined;
      let peer: TlsPeerInfo | undefined;
      let secured = false;
      let released = false;
      let clientHandshakeSecret: Uint8Array | undefined;
      let verdictTimer: NodeJS.Timeout | undefined;
      const presentsCertificate = Boolean(o.clientCertChainPem && o.clientKeyPem);

      const finish = (err: Error | undefined, session?: TlsSession): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(verdictTimer);
        o.signal?.removeEventListener('abort', onAbort);
        if (err) {
          sock.destroy();
          reject(err);
        } else {
          resolve(session!);
        }
      };
      const onAbort = (): void => finish(new EvccError<TlsConnectorErrorCode>('ABORTED', 'TLS connect aborted', {}, { cause: o.signal?.reason }));
      const timer = setTimeout(() => finish(new EvccError<TlsConnectorErrorCode>('TLS_TIMEOUT', `TLS handshake with ${endpoint} took longer than ${o.timeoutMs} ms`, where)), o.timeoutMs);
      if (o.signal?.aborted) {
        clearTimeout(timer);
        return reject(new EvccError<TlsConnectorErrorCode>('ABORTED', 'TLS connect aborted'));
      }
      o.signal?.addEventListener('abort', onAbort, { once: true });

      const tcp = netConnect({ host: target.host, port: target.port });
      tcp.setNoDelay(true);
      tcp.once('connect', () => {
        phase = 'handshake';
      });
      const guard = new TlsHandshakeGuard(tcp);
      const sock: TLSSocket = tlsConnect({
        socket: guard,
        minVersion: o.minVersion,
        maxVersion: o.maxVersion,
        ciphers: o.ciphers,
        ecdhCurve: o.ecdhCurve,
        sigalgs: o.sigalgs,
        ...(presentsCertificate ? { cert: o.clientCertChainPem, key: o.clientKeyPem } : {}),
        // See the class comment: our verifyPeer gate is the trust decision.
        rejectUnauthorized: false,
        ca: [],
        checkServerIdentity: () => undefined,
      });
      // The client handshake traffic secret encrypts a TLS 1.3 refusal alert; it stays in this closure.
      sock.on('keylog', (line: Buffer) => {
        const text = line.toString('utf8');
        if (text.startsWith('CLIENT_HANDSHAKE_TRAFFIC_SECRET ')) {
          clientHandshakeSecret = new Uint8Array(Buffer.from(text.trim().split(' ')[2] ?? '', 'hex'));
        }
        o.onKeyLog?.(text);
      });

      const serverFailure = (err: (Error & { code?: string }) | undefined): EvccError => {
        const alert = err ? /alert number (\d+)/.exec(err.message)?.[1] : undefined;
        const alertInfo = alert !== undefined ? { alert: Number(alert), alertName: alertName(Number(alert)) } : {};
        const said = alert !== undefined ? `alert ${alertName(Number(alert))} (${alert})` : err ? err.message : 'a close without alert';
        const details = { ...where, ...alertInfo, ...(err ? { reason: err.code ?? err.message } : {}) };
        const cause = err ? { cause: err } : undefined;
        if (phase === 'tcp') {
          return new EvccError<TlsConnectorErrorCode>('TLS_CONNECT_FAILED', `TCP connect with ${endpoint} failed: ${err?.message ?? 'closed'}`, details, cause);
        }
        if (phase === 'verdict' && presentsCertificate) {
          return new EvccError<TlsConnectorErrorCode>('TLS_CLIENT_CERT_REJECTED', `vehicle certificate rejected by SECC ${endpoint}: ${said} after our Finished`, details, cause);
        }
        if (phase === 'verdict') {
          return new EvccError<TlsConnectorErrorCode>('TLS_HANDSHAKE_FAILED', `SECC ${endpoint} ended the connection right after our Finished: ${said}`, details, cause);
        }
        if (phase === 'finishing' && flight?.certificateMessageInClear) {
          return new EvccError<TlsConnectorErrorCode>('TLS_CLIENT_CERT_REQUESTED', `SECC ${endpoint} requested a client certificate (ISO 15118-2 TLS authenticates the server only) and refused the handshake without one: ${said}`, details, cause);
        }
        return new EvccError<TlsConnectorErrorCode>('TLS_HANDSHAKE_FAILED', `TLS handshake with ${endpoint} failed: ${said}`, details, cause);
      };
      sock.once('error', (err: NodeJS.ErrnoException) => finish(serverFailure(err)));
      sock.once('close', () => finish(serverFailure(undefined)));

      const refuse = (err: unknown): void => {
        const name: TlsAlertName = o.alertFor?.(err) ?? 'bad_certificate';
        // user_canceled is a warning followed by close_notify (RFC 8446 §6.1); everything else is fatal.
        const alerts = name === 'user_canceled'
          ? [{ level: 1 as const, description: TLS_ALERTS.user_canceled }, { level: 1 as const, description: TLS_ALERTS.close_notify }]
          : [{ level: 2 as const, description: TLS_ALERTS[name] }];
        const suite = peer?.cipher ?? '';
        const bytes = peer?.protocol === 'TLSv1.3' && clientHandshakeSecret && isTls13Suite(suite)
          ? tls13Alerts(suite, clientHandshakeSecret, alerts)
          : new Uint8Array(Buffer.concat(alerts.map((a) => plaintextAlert(a.description, a.level))));
        guard.refuse(bytes);
      };

      const proceed = (): void => {
        if (settled || !released || !secured) return;
        const stream = byteStreamOf(sock);
        const session = { peer: peer!, stream };
        const verdictMs = o.clientAuthVerdictMs ?? 0;
        if (peer!.protocol !== 'TLSv1.3' || verdictMs <= 0) return finish(undefined, session);
        // TLS 1.3: the server judges our certificate after our Finished. A NewSessionTicket or any data means its
        // TLS stack completed the handshake (RFC 8446 §4.6.1: tickets only after the client Finished); an alert or a
        // close means refused (the error/close handlers above). A server without tickets stays silent until we
        // speak: after verdictMs we declare the channel up.
        phase = 'verdict';
        const accept = (): void => {
          sock.off('session', accept);
          sock.off('data', accept);
          finish(undefined, session);
        };
        verdictTimer = setTimeout(accept, verdictMs);
        sock.on('session', accept);
        sock.on('data', accept);
      };
      sock.once('secureConnect', () => {
        secured = true;
        proceed();
      });

      guard.onSecondFlight((f) => {
        if (settled) return;
        flight = f;
        phase = 'gate';
        const cipher = sock.getCipher();
        peer = {
          chainDer: peerChain(sock),
          protocol: sock.getProtocol() ?? 'unknown',
          cipher: cipher?.name ?? 'unknown',
          remoteAddress: o.host,
          remotePort: o.port,
          ...(sock.getProtocol() === 'TLSv1.2' ? { clientCertificateRequested: f.certificateMessageInClear } : {}),
        };
        const judged = peer;
        // The gate. Our flight is held until it resolves; nothing else has access to `sock`.
        Promise.resolve()
          .then(() => o.verifyPeer(judged))
          .then(() => {
            if (settled) return; // timed out or aborted meanwhile
            phase = 'finishing';
            released = true;
            guard.release();
            proceed();
          })
          .catch((err: unknown) => {
            if (settled) return;
            refuse(err);
            finish(err instanceof Error ? err : new Error(String(err)));
          });
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
