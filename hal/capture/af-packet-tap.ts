/**
 * The capture tap on a real interface: one AF_PACKET socket bound to ETH_P_ALL on the modem's netdev, outgoing frames
 * included (PACKET_OUTGOING flags our own transmissions), through the project's AF_PACKET addon (hal/plc/native) —
 * the same binding SLAC uses, so the capture adds no dependency and no tcpdump. It sees every frame of the
 * interface: SLAC MMEs, and SDP and TCP/TLS as the kernel sent and received them. Needs CAP_NET_RAW (evcc has it
 * for SLAC already).
 */
import { readFile } from 'node:fs/promises';
import { EvccError } from '../../core/errors.ts';
import { loadNative } from '../plc/af-packet.ts';
import type { FrameSink } from './types.ts';

const ETH_P_ALL = 0x0003;

export class AfPacketTap {
  private handle: object | undefined;

  private constructor(readonly iface: string) {}

  static async open(iface: string, sink: FrameSink): Promise<AfPacketTap> {
    let index: number;
    try {
      index = Number((await readFile(`/sys/class/net/${iface}/ifindex`, 'utf8')).trim());
    } catch (err) {
      throw new EvccError('NET_NO_INTERFACE', `interface ${iface} not found`, { iface }, { cause: err });
    }
    const addon = loadNative();
    const tap = new AfPacketTap(iface);
    try {
      tap.handle = addon.open(index, ETH_P_ALL, true, (buf, outgoing) => {
        sink.frame(new Uint8Array(buf.buffer, buf.byteOffset, buf.length), { direction: outgoing ? 'out' : 'in' });
      });
    } catch (err) {
      const errno = (err as { errno?: number }).errno;
      const hint = errno === 1 ? ' (needs CAP_NET_RAW)' : '';
      throw new EvccError('CAPTURE_FAILED', `cannot open the capture tap on ${iface}${hint}: ${(err as Error).message}`, { iface, errno }, { cause: err });
    }
    return tap;
  }

  close(): void {
    if (!this.handle) return;
    const h = this.handle;
    this.handle = undefined;
    loadNative().close(h);
  }
}
