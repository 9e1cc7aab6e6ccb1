/**
 * Bench capture taps. The bench's PLC link is a simulated segment and its IPv6 traffic runs over a simulated link
 * (UDP in memory) and real loopback sockets (TCP/TLS), so no interface carries the IPv6 frames a real modem's netdev
 * would. What the capture writes:
 *  - the PLC frames exactly as the simulated segment carried them to and from the EV station (`tapPlcLink`);
 *  - SDP datagrams as the EV's UDP sockets sent and received them, framed as Ethernet/IPv6/UDP (`tapUdp6`);
 *  - TCP connections as byte streams through a loopback relay, re-segmented into Ethernet/IPv6/TCP with consistent
 *    sequence/acknowledgement numbers and checksums (`TcpCaptureRelay`): SYN/SYN-ACK/ACK at accept, one segment per
 *    ≤ 1440 bytes read, FIN/RST as the sides close. Segment boundaries and timing are those of the socket reads, not
 *    of a kernel's segments — the pcapng interface description says so.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import type { AddressResolver } from '../net/tls-connector.ts';
import type { Udp6OpenOptions, Udp6Socket, Udp6Transport, UdpPeer } from '../net/types.ts';
import type { FrameListener, PlcLink } from '../plc/types.ts';
import {
  ETHERTYPE_IPV6, ethernetFrame, IPPROTO_TCP, IPPROTO_UDP, ipv6Bytes, ipv6Packet, multicastMac, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN,
  tcpSegment, udpDatagram,
} from './packets.ts';
import type { FrameSink } from './types.ts';

export const RECONSTRUCTED_IPV6_DESCRIPTION =
  'bench: IPv6 (SDP, TCP/TLS) RECONSTRUCTED by evcc from the simulated IPv6 link and loopback socket byte streams; ' +
  'payload bytes exact, Ethernet/IPv6/TCP headers, segment boundaries and timing synthesized';
export const SIM_PLC_DESCRIPTION = 'bench: HomePlug AV / Green PHY frames as the simulated PLC segment carried them to and from the EV station';

/** The EV station's frames in both directions (what a tap on the modem's host interface sees of SLAC). */
export function tapPlcLink(link: PlcLink, sink: FrameSink): PlcLink {
  return {
    mac: link.mac,
    name: link.name,
    async send(frame) {
      await link.send(frame);
      let out = frame;
      if (frame.length < 60) {
        out = new Uint8Array(60);
        out.set(frame);
      }
      sink.frame(out, { direction: 'out' });
    },
    onFrame(listener: FrameListener) {
      return link.onFrame((frame) => {
        sink.frame(frame, { direction: 'in' });
        listener(frame);
      });
    },
    close: () => link.close(),
  };
}

export interface Ipv6Addressing {
  /** The EV's MAC on the PLC interface. */
  evMac: Uint8Array;
  /** The charger host's MAC (what the neighbour cache would hold for the SECC's link-local address). */
  peerMac: Uint8Array;
  /** The EV's link-local address, when a socket is bound to `::`. */
  evAddress: string;
}

function ipv6Frame(a: Ipv6Addressing, direction: 'in' | 'out', src: string, dst: string, nextHeader: number, upper: Uint8Array, hopLimit: number): Uint8Array {
  const d = ipv6Bytes(dst);
  const dstMac = d[0] === 0xff ? multicastMac(d) : direction === 'out' ? a.peerMac : a.evMac;
  const srcMac = direction === 'out' ? a.evMac : a.peerMac;
  return ethernetFrame(dstMac, srcMac, ETHERTYPE_IPV6, ipv6Packet(ipv6Bytes(src), d, nextHeader, upper, hopLimit));
}

/** The EV's UDP sockets (SDP), each datagram framed as Ethernet/IPv6/UDP. */
export function tapUdp6(transport: Udp6Transport, sink: FrameSink, a: Ipv6Addressing): Udp6Transport {
  return {
    async open(o: Udp6OpenOptions): Promise<Udp6Socket> {
      const sock = await transport.open(o);
      const local = (): { address: string; port: number } => ({ address: sock.local.address === '::' ? a.evAddress : sock.local.address, port: sock.local.port });
      const hop = o.multicastHops ?? 1;
      return {
        local: sock.local,
        async send(data: Uint8Array, to: UdpPeer) {
          await sock.send(data, to);
          const l = local();
          sink.frame(ipv6Frame(a, 'out', l.address, to.address, IPPROTO_UDP, udpDatagram(ipv6Bytes(l.address), ipv6Bytes(to.address), l.port, to.port, data), hop), { direction: 'out' });
        },
        onMessage(listener) {
          sock.onMessage((data, from) => {
            const l = local();
            sink.frame(ipv6Frame(a, 'in', from.address, l.address, IPPROTO_UDP, udpDatagram(ipv6Bytes(from.address), ipv6Bytes(l.address), from.port, l.port, data), 255), { direction: 'in' });
            listener(data, from);
          });
        },
        close: () => sock.close(),
      };
    },
  };
}

const MSS = 1440;

/** One TCP connection's packets, rebuilt from its two byte streams. */
export class TcpFlowWriter {
  private evNext: number;
  private peerNext: number;
  private evFin = false;
  private peerFin = false;
  private readonly evIp: Uint8Array;
  private readonly peerIp: Uint8Array;

  constructor(
    private readonly sink: FrameSink,
    private readonly a: Ipv6Addressing,
    private readonly ev: { address: string; port: number },
    private readonly peer: { address: string; port: number },
    isn: { ev: number; peer: number },
  ) {
    this.evIp = ipv6Bytes(ev.address);
    this.peerIp = ipv6Bytes(peer.address);
    this.evNext = isn.ev >>> 0;
    this.peerNext = isn.peer >>> 0;
  }

  private emit(direction: 'in' | 'out', flags: number, payload?: Uint8Array, mss?: number): void {
    const out = direction === 'out';
    const seq = out ? this.evNext : this.peerNext;
    const ack = flags & TCP_ACK ? (out ? this.peerNext : this.evNext) : 0;
    const seg = tcpSegment(out ? this.evIp : this.peerIp, out ? this.peerIp : this.evIp, {
      srcPort: out ? this.ev.port : this.peer.port, dstPort: out ? this.peer.port : this.ev.port, seq, ack, flags,
      ...(mss !== undefined ? { mss } : {}), ...(payload ? { payload } : {}),
    });
    const frame = ipv6Frame(this.a, direction, out ? this.ev.address : this.peer.address, out ? this.peer.address : this.ev.address, IPPROTO_TCP, seg, 64);
    this.sink.frame(frame, { direction });
    const advance = (payload?.length ?? 0) + (flags & (TCP_SYN | TCP_FIN) ? 1 : 0);
    if (out) this.evNext = (this.evNext + advance) >>> 0;
    else this.peerNext = (this.peerNext + advance) >>> 0;
  }

  /** SYN, SYN-ACK, ACK. */
  open(): void {
    this.emit('out', TCP_SYN, undefined, MSS);
    this.emit('in', TCP_SYN | TCP_ACK, undefined, MSS);
    this.emit('out', TCP_ACK);
  }

  data(direction: 'in' | 'out', bytes: Uint8Array): void {
    for (let o = 0; o < bytes.length; o += MSS) this.emit(direction, TCP_PSH | TCP_ACK, bytes.subarray(o, Math.min(bytes.length, o + MSS)));
  }

  /** FIN from one side; the last FIN is acknowledged by the other. */
  fin(direction: 'in' | 'out'): void {
    if (direction === 'out' ? this.evFin : this.peerFin) return;
    if (direction === 'out') this.evFin = true;
    else this.peerFin = true;
    this.emit(direction, TCP_FIN | TCP_ACK);
    if (this.evFin && this.peerFin) this.emit(direction === 'out' ? 'in' : 'out', TCP_ACK);
  }

  reset(direction: 'in' | 'out'): void {
    if (this.evFin && this.peerFin) return;
    this.evFin = this.peerFin = true;
    this.emit(direction, TCP_RST | TCP_ACK);
  }
}

/**
 * A loopback relay between the EV's TCP/TLS connector and the simulated charger's real listener: every connection
 * the wrapped resolver hands out goes through it, and its two byte streams become TCP packets of the capture
 * (addressed with the simulated IPv6 endpoints, not the loopback ones).
 */
export class TcpCaptureRelay {
  private readonly pending: { sim: { address: string; port: number }; real: { host: string; port: number } }[] = [];
  private readonly sockets = new Set<Socket>();
  private flows = 0;

  private constructor(private readonly server: Server, private readonly port: number, private readonly sink: FrameSink, private readonly a: Ipv6Addressing) {
    server.on('connection', (client) => this.accept(client));
  }

  static async start(sink: FrameSink, a: Ipv6Addressing): Promise<TcpCaptureRelay> {
    const server = createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    return new TcpCaptureRelay(server, typeof addr === 'object' && addr ? addr.port : 0, sink, a);
  }

  /**
   * Wraps a resolver (SimIpv6Link.resolver()): connections go to the relay, which forwards to where `inner` would
   * have sent them. Connects are matched to destinations in order (one accept queue, FIFO like the kernel's).
   */
  resolver(inner: AddressResolver): AddressResolver {
    return (host, port, iface) => {
      this.pending.push({ sim: { address: host, port }, real: inner(host, port, iface) });
      return { host: '127.0.0.1', port: this.port };
    };
  }

  private accept(client: Socket): void {
    const target = this.pending.shift();
    if (!target) {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    this.sockets.add(client);
    const n = this.flows++;
    const flow = new TcpFlowWriter(this.sink, this.a, { address: this.a.evAddress, port: client.remotePort ?? 49152 + n }, target.sim, {
      ev: 0x10000000 + n * 0x01000000, peer: 0x80000000 + n * 0x01000000,
    });
    const upstream = netConnect({ host: target.real.host, port: target.real.port });
    upstream.setNoDelay(true);
    this.sockets.add(upstream);
    let connected = false;
    client.pause();
    upstream.once('connect', () => {
      connected = true;
      flow.open();
      client.resume();
    });
    client.on('data', (d: Buffer) => {
      flow.data('out', new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      flow.data('in', new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      client.write(d);
    });
    client.on('end', () => {
      flow.fin('out');
      upstream.end();
    });
    upstream.on('end', () => {
      flow.fin('in');
      client.end();
    });
    client.on('error', () => {
      flow.reset('out');
      upstream.destroy();
    });
    upstream.on('error', () => {
      if (!connected) {
        // The charger's listener refused: the EV sees a reset right after its connect.
        flow.open();
      }
      flow.reset('in');
      client.destroy();
    });
    client.on('close', () => {
      this.sockets.delete(client);
      if (!upstream.destroyed && upstream.readyState !== 'closed') upstream.end();
    });
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      if (!client.destroyed) client.end();
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
