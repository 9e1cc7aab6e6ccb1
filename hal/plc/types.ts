/**
 * The PLC link as the EVCC sees it: whole ethernet frames (destination MAC first) on the modem's segment,
 * filtered to ethertype 0x88E1 (HomePlug AV / Green PHY management). Implementations: AF_PACKET on a netdev
 * (`af-packet.ts`), QCA7000 over UART (`qca-uart.ts`), and an in-memory segment (`sim.ts`).
 */
export const ETHERTYPE_HOMEPLUG = 0x88e1;

export type FrameListener = (frame: Uint8Array) => void;

export interface PlcLink {
  /** Our own MAC (6 bytes), as the modem's host interface. */
  readonly mac: Uint8Array;
  /** Human name for logs: interface name, serial path or sim station name. */
  readonly name: string;
  /** Sends one frame. Frames shorter than 60 bytes are padded by the implementation. */
  send(frame: Uint8Array): Promise<void>;
  /** Subscribes to received frames (never our own transmissions). Returns the unsubscribe function. */
  onFrame(listener: FrameListener): () => void;
  /** Releases the socket/port. Idempotent. */
  close(): Promise<void>;
}
