import type { Duplex } from 'node:stream';
import type { ByteStream } from './types.ts';

/**
 * ByteStream over a Node socket (net.Socket or tls.TLSSocket). Incoming bytes are buffered until a listener
 * registers (so nothing is lost between handshake and the first `onData`), and the close listener fires once.
 */
export function byteStreamOf(sock: Duplex): ByteStream {
  const pending: Uint8Array[] = [];
  let dataListener: ((chunk: Uint8Array) => void) | undefined;
  let closeListener: ((err?: Error) => void) | undefined;
  let closed: { err?: Error } | undefined;
  let lastError: Error | undefined;
  sock.on('data', (chunk: Buffer) => {
    const c = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (dataListener) dataListener(c);
    else pending.push(Uint8Array.from(c));
  });
  sock.on('error', (err: Error) => {
    lastError = err;
  });
  sock.once('close', () => {
    closed = lastError ? { err: lastError } : {};
    closeListener?.(closed.err);
  });
  return {
    write(data) {
      return new Promise((resolve, reject) => {
        if (sock.destroyed || !sock.writable) return reject(new Error('stream is closed'));
        sock.write(data, (err) => (err ? reject(err) : resolve()));
      });
    },
    onData(listener) {
      dataListener = listener;
      for (const c of pending.splice(0)) listener(c);
    },
    onClose(listener) {
      closeListener = listener;
      if (closed) listener(closed.err);
    },
    close() {
      return new Promise((resolve) => {
        if (sock.destroyed) return resolve();
        sock.once('close', () => resolve());
        sock.end();
        // A peer that never answers our FIN must not keep us waiting.
        setTimeout(() => sock.destroy(), 1000).unref();
      });
    },
    destroy() {
      sock.destroy();
    },
  };
}
