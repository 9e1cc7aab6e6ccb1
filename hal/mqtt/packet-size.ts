import { Duplex } from 'node:stream';

/**
 * A cap on incoming MQTT packets that acts on the fixed header, before a byte of the payload is buffered.
 *
 * Neither MQTT.js nor aedes offers that: both parse with mqtt-packet, which appends every chunk to a buffer list
 * until the whole packet (up to the protocol's 256 MiB) is there. MQTT.js checks MQTT 5's `maximumPacketSize`
 * only after that; aedes has no size option at all. So the socket is wrapped: the meter follows the packet
 * boundaries (1 byte type, 1–4 bytes remaining length, then skip) and the stream is destroyed as soon as a
 * header announces more than the cap. Memory per connection stays one socket read.
 */
export const MQTT_MAX_PACKET_BYTES_PROTOCOL = 1 + 4 + 268_435_455;

export class MqttPacketTooLarge extends Error {
  override readonly name = 'MqttPacketTooLarge';
  /** Node-style code so MQTT.js reports it as a transport error (it swallows errors without one). */
  readonly code = 'MQTT_PACKET_TOO_LARGE';
  constructor(readonly packetBytes: number, readonly maxBytes: number) {
    super(packetBytes < 0 ? 'malformed MQTT remaining length' : `incoming MQTT packet of ${packetBytes} bytes exceeds the cap of ${maxBytes}`);
  }
}

/** Follows MQTT packet boundaries in a byte stream; pure (no I/O), state survives any chunking. */
export class MqttPacketMeter {
  /** Bytes of the current packet's body still to skip. */
  private remaining = 0;
  /** Inside a fixed header: 0 = expecting the type byte, 1…4 = reading the remaining-length varint. */
  private headerPos = 0;
  private length = 0;
  private multiplier = 1;
  /** Complete packets seen. */
  packets = 0;

  constructor(readonly maxBytes: number) {}

  /** Feeds one chunk; returns the size of the first packet that breaks the cap (or -1 for a malformed length). */
  feed(chunk: Uint8Array): number | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const skip = Math.min(this.remaining, chunk.length - i);
        this.remaining -= skip;
        i += skip;
        if (this.remaining === 0) this.packets++;
        continue;
      }
      const b = chunk[i++]!;
      if (this.headerPos === 0) {
        this.headerPos = 1;
        this.length = 0;
        this.multiplier = 1;
        continue;
      }
      this.length += (b & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      if (b & 0x80) {
        if (++this.headerPos > 4) return -1; // a remaining length has at most 4 bytes [MQTT-2.2.3]
        continue;
      }
      const total = 1 + this.headerPos + this.length;
      this.headerPos = 0;
      if (total > this.maxBytes) return total;
      if (this.length === 0) this.packets++;
      else this.remaining = this.length;
    }
    return undefined;
  }
}

/**
 * The socket as a Duplex whose readable side passes only while every packet header is within `maxBytes`.
 * `socket` stays reachable for callers that need the TLS peer certificate.
 */
export class PacketSizeLimitedStream extends Duplex {
  private readonly meter: MqttPacketMeter;

  constructor(readonly socket: Duplex, maxBytes: number) {
    super({ allowHalfOpen: false });
    this.meter = new MqttPacketMeter(maxBytes);
    socket.on('data', (chunk: Buffer) => {
      const over = this.meter.feed(chunk);
      if (over !== undefined) {
        // The chunk is not passed on: the parser never sees the oversized packet's header.
        this.destroy(new MqttPacketTooLarge(over, maxBytes));
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.once('end', () => this.push(null));
    socket.once('error', (err) => this.destroy(err));
    socket.once('close', () => {
      if (!this.destroyed) this.destroy();
    });
    socket.pause();
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.socket.write(chunk, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.socket.end(() => done());
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.socket.destroy();
    done(err);
  }
}
