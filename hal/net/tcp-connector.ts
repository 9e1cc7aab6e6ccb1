import { connect as netConnect, type Socket } from 'node:net';
import { EvccError } from '../../core/errors.ts';
import { byteStreamOf } from './byte-stream.ts';
import { scoped } from './scope.ts';
import type { AddressResolver } from './tls-connector.ts';
import type { ByteStream, TcpConnectOptions, TcpConnector, TcpConnectorErrorCode } from './types.ts';

/**
 * Plain TCP to the SECC over node:net, for the sessions SDP offered without TLS (DIN SPEC 70121, ISO 15118-2 EIM).
 * A link-local SECC address is scoped to the PLC interface (`fe80::…%eth1`), as for TLS. The stream is handed out
 * once the connection is up; incoming bytes are buffered until the session registers its receiver.
 */
export class NodeTcpConnector implements TcpConnector {
  /** `resolve`: the sim network's mapping of simulated endpoints to loopback listeners (SimIpv6Link.resolver()). */
  constructor(private readonly resolve?: AddressResolver) {}

  connect(o: TcpConnectOptions): Promise<ByteStream> {
    const target = this.resolve ? this.resolve(o.host, o.port, o.iface) : { host: scoped(o.host, o.iface), port: o.port };
    const where = { host: o.host, port: o.port, ...(o.iface ? { iface: o.iface } : {}) };
    const endpoint = `[${o.host}]:${o.port}`;
    if (o.signal?.aborted) return Promise.reject(new EvccError<TcpConnectorErrorCode>('ABORTED', 'TCP connect aborted', where, { cause: o.signal.reason }));
    return new Promise<ByteStream>((resolve, reject) => {
      let settled = false;
      const sock: Socket = netConnect({ host: target.host, port: target.port });
      const finish = (err: EvccError | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        sock.off('error', onError);
        sock.off('close', onClose);
        if (err) {
          sock.destroy();
          reject(err);
        } else {
          resolve(byteStreamOf(sock));
        }
      };
      const onAbort = (): void => finish(new EvccError<TcpConnectorErrorCode>('ABORTED', 'TCP connect aborted', where, { cause: o.signal?.reason }));
      const onError = (err: NodeJS.ErrnoException): void => finish(new EvccError<TcpConnectorErrorCode>('TCP_CONNECT_FAILED', `TCP connect to ${endpoint} failed: ${err.message}`, {
        ...where, reason: err.code ?? err.message,
      }, { cause: err }));
      const onClose = (): void => finish(new EvccError<TcpConnectorErrorCode>('TCP_CONNECT_FAILED', `TCP connection to ${endpoint} closed before it was up`, where));
      const timer = setTimeout(() => finish(new EvccError<TcpConnectorErrorCode>('TCP_TIMEOUT', `TCP connect to ${endpoint} took longer than ${o.timeoutMs} ms`, where)), o.timeoutMs);
      o.signal?.addEventListener('abort', onAbort, { once: true });
      sock.once('error', onError);
      sock.once('close', onClose);
      sock.once('connect', () => {
        // V2GTP messages are small request/response pairs: no Nagle delay.
        sock.setNoDelay(true);
        finish(undefined);
      });
    });
  }
}
