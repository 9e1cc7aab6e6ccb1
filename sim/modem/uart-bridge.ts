import { encodeQcaFrame, QcaFrameDecoder } from '../../hal/plc/qca-framing.ts';
import type { SimSegment, SimStation } from '../../hal/plc/sim.ts';

/**
 * The serial side of a simulated QCA7000 wired by UART: bytes from the host are de-framed and put on a SimSegment as
 * the host's station; segment frames for the host (its MAC, broadcast) are framed and written back. With a pty as
 * the serial line, the host's real QcaUartLink (serialport) runs unchanged against simulated chargers.
 */
export interface ByteDuplex {
  write(bytes: Uint8Array): void;
  onData(cb: (chunk: Uint8Array) => void): () => void;
}

export class QcaUartBridge {
  private readonly decoder = new QcaFrameDecoder();
  private readonly station: SimStation;
  private readonly offData: () => void;
  private readonly offFrame: () => void;

  constructor(segment: SimSegment, hostMac: string, private readonly line: ByteDuplex) {
    this.station = segment.attach(hostMac, `uart host ${hostMac}`);
    this.offData = line.onData((chunk) => {
      for (const frame of this.decoder.push(chunk)) void this.station.send(frame).catch(() => undefined);
    });
    this.offFrame = this.station.onFrame((frame) => this.line.write(encodeQcaFrame(frame)));
  }

  get framingErrors(): number {
    return this.decoder.stats.errors;
  }

  async close(): Promise<void> {
    this.offData();
    this.offFrame();
    await this.station.close();
  }
}
