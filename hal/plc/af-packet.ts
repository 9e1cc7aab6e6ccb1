import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { EvccError } from '../../core/errors.ts';
import { macFromString } from './sim.ts';
import { ETHERTYPE_HOMEPLUG, type PlcLink } from './types.ts';

/**
 * The real PLC link: an AF_PACKET raw socket on the modem's netdev, bound to ethertype 0x88E1 (needs CAP_NET_RAW).
 * The native part (`native/src/afpacket.c`) is built by `npm install`; it is loaded lazily so a machine without it
 * still runs every simulated path.
 */
interface Native {
  open(ifindex: number, ethertype: number, seeOutgoing: boolean, onFrame: (buf: Buffer, outgoing: boolean) => void): object;
  send(handle: object, frame: Uint8Array): number;
  close(handle: object): void;
}

const ETH_P_ALL = 0x0003;
let native: Native | undefined;

export function loadNative(): Native {
  if (native) return native;
  const require = createRequire(import.meta.url);
  // Next to this module (the source tree, or dist/ when the build copied it), else the package's own build of it
  // (an installed package compiles the addon at install time in hal/plc/native, beside dist/).
  let firstError: unknown;
  for (const path of ['./native/build/Release/afpacket.node', '../../../hal/plc/native/build/Release/afpacket.node']) {
    try {
      native = require(path) as Native;
      return native;
    } catch (err) {
      firstError ??= err;
    }
  }
  throw new EvccError('PREREQUISITE_MISSING', 'AF_PACKET addon not built (run npm install; needs a C compiler and Node headers)', {}, { cause: firstError });
}

/** True when the native addon can be loaded on this machine. */
export function afPacketAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}

export interface AfPacketOptions {
  /**
   * Also see frames that other sockets of this host transmit on the interface (ETH_P_ALL, outgoing included),
   * flagged `outgoing`. Only simulators need it: a modem simulator sharing a host's netdev must see that host's sounds.
   */
  seeOutgoing?: boolean;
}

/** Extra per-frame facts a real link knows; listeners that don't care ignore the second argument. */
export interface FrameMeta {
  /** Sent by a socket on this host (only reported with `seeOutgoing`). */
  outgoing: boolean;
}

export class AfPacketLink implements PlcLink {
  private listeners = new Set<(frame: Uint8Array, meta: FrameMeta) => void>();
  private handle: object | undefined;

  private constructor(readonly name: string, readonly mac: Uint8Array, readonly index: number) {}

  static async open(iface: string, options: AfPacketOptions = {}): Promise<AfPacketLink> {
    let index: number;
    let mac: Uint8Array;
    try {
      index = Number((await readFile(`/sys/class/net/${iface}/ifindex`, 'utf8')).trim());
      mac = macFromString((await readFile(`/sys/class/net/${iface}/address`, 'utf8')).trim());
    } catch (err) {
      throw new EvccError('NET_NO_INTERFACE', `interface ${iface} not found`, { iface }, { cause: err });
    }
    const addon = loadNative();
    const link = new AfPacketLink(iface, mac, index);
    const seeOutgoing = options.seeOutgoing ?? false;
    try {
      link.handle = addon.open(index, seeOutgoing ? ETH_P_ALL : ETHERTYPE_HOMEPLUG, seeOutgoing, (buf, outgoing) => {
        // ETH_P_ALL delivers every protocol: keep HomePlug management frames only.
        if (seeOutgoing && (buf.length < 14 || buf.readUInt16BE(12) !== ETHERTYPE_HOMEPLUG)) return;
        const frame = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
        for (const l of link.listeners) l(frame, { outgoing });
      });
    } catch (err) {
      const errno = (err as { errno?: number }).errno;
      const hint = errno === 1 ? ' (needs CAP_NET_RAW: run as root or with AmbientCapabilities=CAP_NET_RAW)' : '';
      throw new EvccError('IO_FAILED', `cannot open raw socket on ${iface}${hint}: ${(err as Error).message}`, { iface, errno }, { cause: err });
    }
    return link;
  }

  async send(frame: Uint8Array): Promise<void> {
    if (!this.handle) throw new EvccError('IO_FAILED', `${this.name}: link closed`, { iface: this.name });
    let out = frame;
    if (frame.length < 60) {
      out = new Uint8Array(60);
      out.set(frame);
    }
    try {
      loadNative().send(this.handle, out);
    } catch (err) {
      throw new EvccError('IO_FAILED', `${this.name}: send failed: ${(err as Error).message}`, { iface: this.name }, { cause: err });
    }
  }

  /** Listeners get the frame and, as a second argument PlcLink users may ignore, its direction. */
  onFrame(listener: (frame: Uint8Array, meta: FrameMeta) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get closed(): boolean {
    return this.handle === undefined;
  }

  async close(): Promise<void> {
    if (!this.handle) return;
    const h = this.handle;
    this.handle = undefined;
    this.listeners.clear();
    loadNative().close(h);
  }
}
