/**
 * The capture port: whole Ethernet frames as they cross the PLC interface, with their direction. Implementations
 * feed it from a real AF_PACKET ETH_P_ALL tap (`af-packet-tap.ts`) or, on the bench, from the simulated PLC station
 * and the IPv6 traffic reconstructed from the simulated link and the loopback sockets (`sim-taps.ts`). Firmware never
 * sees it: the composition root wraps the HAL parts it hands to the stage binding.
 */
export type { PacketDirection } from './pcapng.ts';
import type { PacketDirection } from './pcapng.ts';

export interface FrameSink {
  /** One Ethernet frame (destination MAC first); `atMs`: epoch ms, default now. */
  frame(frame: Uint8Array, o: { direction: PacketDirection; atMs?: number }): void;
}

/** The frame sinks of one session capture, by interface (one pcapng IDB each). */
export interface CaptureInterfaces {
  /** Declares an interface of the capture (its IDB) and returns its sink. */
  openInterface(name: string, description: string): FrameSink;
}
