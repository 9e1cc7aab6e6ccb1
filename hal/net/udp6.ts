import { createSocket, type Socket } from 'node:dgram';
import { EvccError } from '../../core/errors.ts';
import { scoped, unscope } from './scope.ts';
import type { Udp6OpenOptions, Udp6Socket, Udp6Transport, UdpPeer } from './types.ts';

/**
 * Real UDP over IPv6 (node:dgram). Every socket is tied to one interface: multicast leaves through it
 * (`setMulticastInterface('::%IF')`, PLATFORM.md) and link-local destinations are scoped to it.
 */
export class NodeUdp6 implements Udp6Transport {
  async open(o: Udp6OpenOptions): Promise<Udp6Socket> {
    const sock = createSocket({ type: 'udp6', reuseAddr: false });
    const bindAddress = o.address ? scoped(o.address, o.iface) : '::';
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new EvccError('NET_SOCKET_FAILED', `cannot bind UDP [${bindAddress}]:${o.port ?? 0}`, { iface: o.iface }, { cause: err }));
      sock.once('error', onError);
      sock.bind({ address: bindAddress, port: o.port ?? 0, exclusive: true }, () => {
        sock.off('error', onError);
        resolve();
      });
    });
    try {
      sock.setMulticastInterface(`::%${o.iface}`);
      if (o.multicastHops !== undefined) sock.setMulticastTTL(o.multicastHops);
    } catch (err) {
      sock.close();
      throw new EvccError('NET_SOCKET_FAILED', `cannot use interface ${o.iface} for multicast`, { iface: o.iface }, { cause: err });
    }
    return new NodeUdp6Socket(sock, o.iface);
  }
}

class NodeUdp6Socket implements Udp6Socket {
  readonly local: { address: string; port: number };
  private listener: ((data: Uint8Array, from: UdpPeer) => void) | undefined;

  constructor(private readonly sock: Socket, private readonly iface: string) {
    const a = sock.address();
    this.local = { address: unscope(a.address).address, port: a.port };
    sock.on('message', (msg, rinfo) => {
      const { address, iface } = unscope(rinfo.address);
      this.listener?.(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), { address, port: rinfo.port, ...(iface ? { iface } : {}) });
    });
    // A send error (e.g. interface gone) surfaces from send(); an async socket error must not crash the process.
    sock.on('error', () => undefined);
  }

  send(data: Uint8Array, to: UdpPeer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.sock.send(data, to.port, scoped(to.address, to.iface ?? this.iface), (err) =>
        err ? reject(new EvccError('NET_SEND_FAILED', `UDP send to [${to.address}]:${to.port} failed`, { iface: this.iface }, { cause: err })) : resolve());
    });
  }

  onMessage(listener: (data: Uint8Array, from: UdpPeer) => void): void {
    this.listener = listener;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      try {
        this.sock.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}
