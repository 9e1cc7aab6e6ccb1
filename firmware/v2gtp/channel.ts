/**
 * V2GTP messages over a ByteStream (the TLS or TCP connection to the SECC): frames outgoing payloads and
 * reassembles incoming ones (size-capped). A framing error closes the stream: V2GTP has no resynchronisation.
 */
import type { ByteStream } from '../../hal/net/types.ts';
import { EvccError } from '../../core/errors.ts';
import { encodeV2gtp, V2gtpReassembler, type HeaderCheckOptions, type V2gtpMessage } from './codec.ts';

export class V2gtpChannel {
  private readonly reasm: V2gtpReassembler;
  private messageListener: ((m: V2gtpMessage) => void) | undefined;
  private closeListener: ((err?: Error) => void) | undefined;
  private closed: { err?: Error } | undefined;

  constructor(private readonly stream: ByteStream, options: HeaderCheckOptions = {}) {
    this.reasm = new V2gtpReassembler(options);
    stream.onData((chunk) => {
      if (this.closed) return;
      let msgs: V2gtpMessage[];
      try {
        msgs = this.reasm.push(chunk);
      } catch (err) {
        this.finish(err as EvccError);
        stream.destroy();
        return;
      }
      for (const m of msgs) this.messageListener?.(m);
    });
    stream.onClose((err) => this.finish(err));
  }

  send(payloadType: number, payload: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new EvccError('V2GTP_CLOSED', 'V2GTP channel is closed', {}, { cause: this.closed.err }));
    return this.stream.write(encodeV2gtp(payloadType, payload));
  }

  onMessage(listener: (m: V2gtpMessage) => void): void {
    this.messageListener = listener;
  }

  /** Once: the stream ended (no error), failed, or carried a framing error (a V2GTP_* EvccError). */
  onClose(listener: (err?: Error) => void): void {
    this.closeListener = listener;
    if (this.closed) listener(this.closed.err);
  }

  close(): Promise<void> {
    return this.stream.close();
  }

  private finish(err?: Error): void {
    if (this.closed) return;
    this.closed = err ? { err } : {};
    this.closeListener?.(err);
  }
}
