import type { FrameListener, PlcLink } from './types.ts';

const BROADCAST = 'ff:ff:ff:ff:ff:ff';

export function macToString(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

export function macFromString(text: string): Uint8Array {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`bad MAC ${text}`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/**
 * An in-memory ethernet segment (a hub): every attached station gets frames addressed to its MAC or to
 * broadcast, delivered asynchronously (setImmediate) as a real link would. Optional per-frame hook lets a test
 * drop, delay or inject frames. Used by the embedded bench session and by unit tests; never by `firmware/`.
 */
export class SimSegment {
  private stations = new Map<string, SimStation>();
  /** Return false to drop a frame. */
  filter: (frame: Uint8Array, from: SimStation) => boolean = () => true;
  /** Set when the segment is also a tap: every frame that crosses it. */
  tap?: (frame: Uint8Array, from: string) => void;

  attach(mac: Uint8Array | string, name?: string): SimStation {
    const m = typeof mac === 'string' ? macFromString(mac) : mac;
    const key = macToString(m);
    if (this.stations.has(key)) throw new Error(`MAC ${key} already on the segment`);
    const station = new SimStation(this, m, name ?? key);
    this.stations.set(key, station);
    return station;
  }

  /** @internal */
  detach(station: SimStation): void {
    this.stations.delete(macToString(station.mac));
  }

  /** @internal */
  deliver(frame: Uint8Array, from: SimStation): void {
    if (!this.filter(frame, from)) return;
    this.tap?.(frame, from.name);
    const dst = macToString(frame.subarray(0, 6));
    const copy = Uint8Array.from(frame);
    for (const [key, st] of this.stations) {
      if (st === from) continue;
      if (dst === BROADCAST || dst === key || st.promiscuous) setImmediate(() => st.receive(copy));
    }
  }
}

export class SimStation implements PlcLink {
  private listeners = new Set<FrameListener>();
  private closed = false;
  /** Receives every frame on the segment (a modem bridging to its host sees all of its host's traffic). */
  promiscuous = false;

  constructor(
    private readonly segment: SimSegment,
    readonly mac: Uint8Array,
    readonly name: string,
  ) {}

  async send(frame: Uint8Array): Promise<void> {
    if (this.closed) throw new Error(`${this.name}: link closed`);
    let out = frame;
    if (frame.length < 60) {
      out = new Uint8Array(60);
      out.set(frame);
    }
    this.segment.deliver(out, this);
  }

  onFrame(listener: FrameListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** @internal */
  receive(frame: Uint8Array): void {
    if (this.closed) return;
    for (const l of this.listeners) l(frame);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.segment.detach(this);
  }
}
