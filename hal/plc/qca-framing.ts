/**
 * QCA7000 serial framing (UART and SPI "Atheros framing"): every ethernet frame travels as
 *   SOF 0xAA 0xAA 0xAA 0xAA | FL u16 little-endian | RSVD 0x00 0x00 | ethernet frame (60..1518) | EOF 0x55 0x55
 * The decoder is a byte-stream state machine: it resynchronises on the next start-of-frame after any error and
 * never holds more than one maximum frame.
 */
export const QCA_SOF = 0xaa;
export const QCA_EOF = 0x55;
export const QCA_HEADER_LEN = 8;
export const QCA_FOOTER_LEN = 2;
/** 46-byte minimum payload + 14-byte header; 1500 MTU + VLAN header (18). */
export const QCA_MIN_FRAME = 60;
export const QCA_MAX_FRAME = 1518;

export function encodeQcaFrame(ethernet: Uint8Array): Uint8Array {
  let frame = ethernet;
  if (frame.length < QCA_MIN_FRAME) {
    frame = new Uint8Array(QCA_MIN_FRAME);
    frame.set(ethernet);
  }
  if (frame.length > QCA_MAX_FRAME) throw new RangeError(`ethernet frame of ${frame.length} bytes exceeds ${QCA_MAX_FRAME}`);
  const out = new Uint8Array(QCA_HEADER_LEN + frame.length + QCA_FOOTER_LEN);
  out.fill(QCA_SOF, 0, 4);
  out[4] = frame.length & 0xff;
  out[5] = frame.length >> 8;
  out.set(frame, QCA_HEADER_LEN);
  out[out.length - 2] = QCA_EOF;
  out[out.length - 1] = QCA_EOF;
  return out;
}

type Phase = 'sof' | 'length' | 'reserved' | 'payload' | 'eof';

export interface QcaDecoderStats {
  frames: number;
  /** Frames dropped for a bad length or a missing end-of-frame. */
  errors: number;
}

export class QcaFrameDecoder {
  private phase: Phase = 'sof';
  private count = 0;
  private length = 0;
  private payload = new Uint8Array(QCA_MAX_FRAME);
  readonly stats: QcaDecoderStats = { frames: 0, errors: 0 };

  /** Feeds received bytes; returns the complete ethernet frames they finished. */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const b of chunk) {
      switch (this.phase) {
        case 'sof':
          this.count = b === QCA_SOF ? this.count + 1 : 0;
          if (this.count === 4) this.next('length');
          break;
        case 'length':
          this.length |= b << (8 * this.count);
          if (++this.count === 2) {
            if (this.length < QCA_MIN_FRAME || this.length > QCA_MAX_FRAME) this.error();
            else this.next('reserved');
          }
          break;
        case 'reserved':
          if (++this.count === 2) this.next('payload');
          break;
        case 'payload':
          this.payload[this.count++] = b;
          if (this.count === this.length) this.next('eof');
          break;
        case 'eof':
          if (b !== QCA_EOF) {
            this.error();
            if (b === QCA_SOF) this.count = 1;
            break;
          }
          if (++this.count === 2) {
            out.push(this.payload.slice(0, this.length));
            this.stats.frames++;
            this.next('sof');
          }
          break;
      }
    }
    return out;
  }

  private next(phase: Phase): void {
    this.phase = phase;
    this.count = 0;
    if (phase === 'length' || phase === 'sof') this.length = 0;
  }

  private error(): void {
    this.stats.errors++;
    this.next('sof');
  }
}
