import { EvccError } from '../../core/errors.ts';
import type { AddressResolver } from './tls-connector.ts';
import type { Udp6OpenOptions, Udp6Socket, Udp6Transport, UdpPeer } from './types.ts';

/**
 * A simulated IPv6 link for the embedded bench (no root, no namespaces): UDP datagrams travel in memory between
 * the hosts attached to the link (multicast to ff02::1 reaches every other socket bound to the destination port,
 * unicast reaches the host with that address), and TCP endpoints published under a simulated link-local address
 * map to real loopback listeners, so TLS itself stays real (NodeTlsConnector with `link.resolver()`).
 */
export class SimIpv6Link {
  private sockets = new Set<SimUdpSocket>();
  private tcp = new Map<string, { host: string; port: number }>();
  private nextPort = 49152;
  /** Drop rate for fault injection (0..1), applied per datagram. */
  lossRate = 0;

  /** The UDP transport of one host on this link. */
  host(iface: string, linkLocal: string): Udp6Transport {
    return {
      open: async (o: Udp6OpenOptions): Promise<Udp6Socket> => {
        if (o.iface !== iface) throw new EvccError('NET_NO_INTERFACE', `sim host has interface ${iface}, not ${o.iface}`, { iface: o.iface });
        const port = o.port && o.port > 0 ? o.port : this.nextPort++;
        for (const s of this.sockets) {
          if (s.hostAddress === linkLocal && s.local.port === port) throw new EvccError('NET_SOCKET_FAILED', `port ${port} in use on ${linkLocal}`);
        }
        const sock = new SimUdpSocket(this, iface, linkLocal, port);
        this.sockets.add(sock);
        return sock;
      },
    };
  }

  /** Publishes a real TCP listener under a simulated address (what the SECC sim does for its TLS server). */
  publishTcp(address: string, port: number, real: { host: string; port: number }): void {
    this.tcp.set(`${address.toLowerCase()}|${port}`, real);
  }

  /** For NodeTlsConnector: simulated (address, port) → real loopback endpoint. */
  resolver(): AddressResolver {
    return (host, port) => {
      const real = this.tcp.get(`${host.toLowerCase()}|${port}`);
      // Unknown destinations go to a port nobody listens on: the connect fails like on a real link.
      return real ?? { host: '127.0.0.1', port: 9 };
    };
  }

  /** @internal */
  deliver(from: SimUdpSocket, data: Uint8Array, to: UdpPeer): void {
    const multicast = to.address.toLowerCase().startsWith('ff02::');
    for (const s of this.sockets) {
      if (s === from || s.local.port !== to.port) continue;
      if (!multicast && s.hostAddress.toLowerCase() !== to.address.toLowerCase()) continue;
      if (this.lossRate > 0 && Math.random() < this.lossRate) continue;
      const copy = Uint8Array.from(data);
      const src: UdpPeer = { address: from.hostAddress, port: from.local.port, iface: s.iface };
      queueMicrotask(() => s.receive(copy, src));
    }
  }

  /** @internal */
  detach(s: SimUdpSocket): void {
    this.sockets.delete(s);
  }
}

class SimUdpSocket implements Udp6Socket {
  readonly local: { address: string; port: number };
  private listener: ((data: Uint8Array, from: UdpPeer) => void) | undefined;
  private closed = false;

  constructor(private readonly link: SimIpv6Link, readonly iface: string, readonly hostAddress: string, port: number) {
    this.local = { address: hostAddress, port };
  }

  async send(data: Uint8Array, to: UdpPeer): Promise<void> {
    if (this.closed) throw new EvccError('NET_SEND_FAILED', 'socket closed');
    this.link.deliver(this, data, to);
  }

  onMessage(listener: (data: Uint8Array, from: UdpPeer) => void): void {
    this.listener = listener;
  }

  receive(data: Uint8Array, from: UdpPeer): void {
    if (!this.closed) this.listener?.(data, from);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.link.detach(this);
  }
}
