import { SerialPort } from 'serialport';
import { EvccError } from '../../core/errors.ts';
import { encodeQcaFrame, QcaFrameDecoder } from './qca-framing.ts';
import { macFromString } from './sim.ts';
import { ETHERTYPE_HOMEPLUG, type FrameListener, type PlcLink } from './types.ts';

/**
 * The PLC link over a QCA7000 wired by UART (boards without SPI): ethernet frames wrapped in the QCA serial framing
 * (qca-framing.ts). The modem bridges to the powerline, so the host has no netdev: its MAC is configured. Only
 * HomePlug management frames (0x88E1) reach listeners; IPv6 traffic over UART would need a tap device (not here).
 */
export interface QcaUartOptions {
  path: string;
  /** QCA7000 UART firmware default: 115200 8N1. */
  baudRate?: number;
  /** The host's MAC on the PLC segment. */
  mac: string;
}

/** What the link needs of a serial port (SerialPort and SerialPortMock both fit). */
export interface SerialLike {
  write(data: Uint8Array, cb?: (err?: Error | null) => void): boolean;
  drain(cb: (err?: Error | null) => void): void;
  on(event: 'data', cb: (data: Buffer) => void): unknown;
  on(event: 'error', cb: (err: Error) => void): unknown;
  close(cb?: (err?: Error | null) => void): void;
  readonly isOpen: boolean;
}

export class QcaUartLink implements PlcLink {
  private listeners = new Set<FrameListener>();
  private readonly decoder = new QcaFrameDecoder();
  private closed = false;
  readonly mac: Uint8Array;

  constructor(private readonly port: SerialLike, mac: string, readonly name: string) {
    this.mac = macFromString(mac);
    port.on('data', (chunk) => {
      for (const frame of this.decoder.push(chunk)) {
        if (frame.length < 14 || ((frame[12]! << 8) | frame[13]!) !== ETHERTYPE_HOMEPLUG) continue;
        for (const l of this.listeners) l(frame);
      }
    });
    port.on('error', () => undefined); // surfaced by send(); a read error just ends the stream
  }

  static async open(options: QcaUartOptions): Promise<QcaUartLink> {
    const port = await new Promise<SerialPort>((resolve, reject) => {
      const p = new SerialPort({ path: options.path, baudRate: options.baudRate ?? 115200, autoOpen: false });
      p.open((err) => (err ? reject(err) : resolve(p)));
    }).catch((err: unknown) => {
      throw new EvccError('IO_FAILED', `cannot open QCA7000 UART ${options.path}: ${(err as Error).message}`, { path: options.path }, { cause: err });
    });
    return new QcaUartLink(port, options.mac, options.path);
  }

  /** Framing errors seen (bad length, missing end-of-frame), for bench diagnostics. */
  get stats() {
    return this.decoder.stats;
  }

  async send(frame: Uint8Array): Promise<void> {
    if (this.closed) throw new EvccError('IO_FAILED', `${this.name}: link closed`, { path: this.name });
    const bytes = encodeQcaFrame(frame);
    await new Promise<void>((resolve, reject) => {
      this.port.write(bytes, (err) => (err ? reject(err) : undefined));
      this.port.drain((err) => (err ? reject(err) : resolve()));
    }).catch((err: unknown) => {
      throw new EvccError('IO_FAILED', `${this.name}: write failed: ${(err as Error).message}`, { path: this.name }, { cause: err });
    });
  }

  onFrame(listener: FrameListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    if (this.port.isOpen) await new Promise<void>((r) => this.port.close(() => r()));
  }
}
