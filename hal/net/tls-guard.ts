import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import {
  HANDSHAKE_CERTIFICATE, HANDSHAKE_CLIENT_HELLO, RECORD_ALERT, RECORD_CHANGE_CIPHER_SPEC, RecordSplitter, firstHandshakeType,
  type TlsRecord,
} from './tls-records.ts';

/** After a refusal, how long the TCP socket may stay to deliver the alert before it is destroyed. */
const REFUSED_LINGER_MS = 1000;

/** What the guard saw when OpenSSL produced the client's second flight. */
export interface SecondFlight {
  /**
   * The flight opens with a Certificate message in clear: only a TLS 1.2 client does that, and only when the
   * server sent a CertificateRequest (TLS 1.3 flights are encrypted: always false there).
   */
  certificateMessageInClear: boolean;
}

/**
 * Handshake guard: the byte pipe between node:tls (OpenSSL) and the TCP socket, so that our own certificate-path
 * validation can decide BEFORE our Finished leaves, and refuse with a TLS alert instead of a bare FIN.
 *
 * Why: Node's client accepts every certificate inside OpenSSL (its verify callback always returns 1) and judges
 * only after the handshake, so neither `rejectUnauthorized` nor our `verifyPeer` can abort mid-handshake; a refused
 * SECC saw a completed handshake and a silent close.
 *
 * How: outgoing records pass while they are ClientHello (also the second one after a HelloRetryRequest) or
 * ChangeCipherSpec (TLS 1.3 middlebox compatibility). The first other record — TLS 1.2 ClientKeyExchange (or
 * Certificate), TLS 1.3 the encrypted Certificate/CertificateVerify/Finished flight — and everything after it is
 * HELD: OpenSSL believes it sent them, the server never receives them. At that point OpenSSL has processed the
 * server's whole flight, so the server's chain, version and suite are known. The owner then calls `release()`
 * (the held records go out in order and the guard becomes a plain pipe) or `refuse(alertBytes)` (the held records
 * are dropped, the alert goes out, then FIN; nothing OpenSSL writes afterwards leaves).
 * The server cannot finish its side without our Finished, so a held flight never races a server verdict.
 */
export class TlsHandshakeGuard extends Duplex {
  private mode: 'inspect' | 'holding' | 'open' | 'refused' = 'inspect';
  private readonly splitter = new RecordSplitter();
  private held: Uint8Array[] = [];
  private flightListener: ((flight: SecondFlight) => void) | undefined;

  constructor(private readonly tcp: Socket) {
    super({ allowHalfOpen: true });
    tcp.on('data', (chunk: Buffer) => {
      if (this.destroyed || this.mode === 'refused') return;
      if (!this.push(chunk)) tcp.pause();
    });
    tcp.on('end', () => this.push(null));
    tcp.on('error', (err) => this.destroy(err));
    tcp.on('close', () => {
      if (!this.destroyed) this.destroy();
    });
  }

  /** Called once (deferred out of OpenSSL's write path) when the second client flight is held. */
  onSecondFlight(listener: (flight: SecondFlight) => void): void {
    this.flightListener = listener;
  }

  /** Sends the held flight and stops inspecting. */
  release(): void {
    if (this.mode !== 'holding') return;
    this.mode = 'open';
    for (const r of this.held.splice(0)) this.tcp.write(r);
    const rest = this.splitter.remainder();
    if (rest.length > 0) this.tcp.write(rest);
  }

  /** Drops the held flight, sends `alertRecords` and FIN. */
  refuse(alertRecords: Uint8Array): void {
    if (this.mode === 'refused') return;
    this.mode = 'refused';
    this.held = [];
    if (!this.tcp.destroyed && this.tcp.writable) this.tcp.end(alertRecords);
  }

  override _read(): void {
    this.tcp.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.mode === 'open') {
      this.tcp.write(chunk, done);
      return;
    }
    if (this.mode === 'refused') return done();
    let records: TlsRecord[];
    try {
      records = this.splitter.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch (err) {
      // Not TLS from our own OpenSSL: nothing sensible to hold; fail the connection.
      return done(err as Error);
    }
    for (const r of records) this.route(r);
    done();
  }

  private route(r: TlsRecord): void {
    if (this.mode === 'inspect') {
      const passes = firstHandshakeType(r) === HANDSHAKE_CLIENT_HELLO || r.type === RECORD_CHANGE_CIPHER_SPEC;
      if (passes) {
        this.tcp.write(r.bytes);
        return;
      }
      if (r.type === RECORD_ALERT) {
        // OpenSSL refuses the server by itself (version, suite, signature): its alert goes out as is.
        this.tcp.write(r.bytes);
        return;
      }
      this.mode = 'holding';
      this.held.push(r.bytes);
      const flight: SecondFlight = { certificateMessageInClear: firstHandshakeType(r) === HANDSHAKE_CERTIFICATE };
      // Out of OpenSSL's write path before anyone queries the TLS socket.
      setImmediate(() => this.flightListener?.(flight));
      return;
    }
    // holding
    this.held.push(r.bytes);
  }

  override _final(done: (err?: Error | null) => void): void {
    if (this.mode === 'refused' || this.tcp.destroyed) return done();
    this.tcp.end(() => done());
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (this.mode === 'refused' && !this.tcp.destroyed) {
      // Let the alert and our FIN drain; the server closes on the alert. A silent server must not keep the socket.
      this.tcp.resume();
      setTimeout(() => this.tcp.destroy(), REFUSED_LINGER_MS).unref();
    } else {
      this.tcp.destroy();
    }
    done(err);
  }
}
