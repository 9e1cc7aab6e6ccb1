import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MqttPacketMeter, MqttPacketTooLarge, PacketSizeLimitedStream } from './packet-size.ts';
import { varint } from '../../test/support/mqtt-packets.ts';

/** A QoS 0 PUBLISH packet (3.1.1) with `payloadBytes` of payload. */
function publish(topic: string, payloadBytes: number): Uint8Array {
  const t = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, Buffer.alloc(payloadBytes, 0x61)]);
  return Buffer.concat([Buffer.from([0x30, ...varint(body.length)]), body]);
}

describe('MqttPacketMeter', () => {
  it('passes packets within the cap, whatever the chunking', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 900 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 97 }), (sizes, chunk) => {
      const stream = Buffer.concat(sizes.map((n) => publish('evcc/v1/ev-1/x', n)));
      const m = new MqttPacketMeter(1024);
      for (let i = 0; i < stream.length; i += chunk) expect(m.feed(stream.subarray(i, i + chunk))).toBeUndefined();
      expect(m.packets).toBe(sizes.length);
    }));
  });

  it('flags an oversized packet at its fixed header, before any payload byte', () => {
    const m = new MqttPacketMeter(128 * 1024);
    const header = Buffer.from([0x30, ...varint(64 * 1024 * 1024)]);
    expect(m.feed(header.subarray(0, 2))).toBeUndefined();
    expect(m.feed(header.subarray(2))).toBe(1 + 4 + 64 * 1024 * 1024);
  });

  it('flags a remaining length of more than 4 bytes as malformed', () => {
    expect(new MqttPacketMeter(1 << 20).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toBe(-1);
  });

  it('a packet of exactly the cap passes, one byte more does not', () => {
    const p = publish('t', 100);
    expect(new MqttPacketMeter(p.length).feed(p)).toBeUndefined();
    expect(new MqttPacketMeter(p.length - 1).feed(p)).toBe(p.length);
  });
});

describe('PacketSizeLimitedStream', () => {
  it('passes small packets and is destroyed by an oversized header without passing it on', async () => {
    const socket = new PassThrough();
    const s = new PacketSizeLimitedStream(socket, 1024);
    const got: Buffer[] = [];
    s.on('data', (b: Buffer) => got.push(b));
    const failed = new Promise<Error>((resolve) => s.once('error', resolve));
    socket.write(publish('a', 10));
    await new Promise((r) => setImmediate(r));
    socket.write(Buffer.from([0x30, ...varint(10 * 1024 * 1024)]));
    const err = await failed;
    expect(err).toBeInstanceOf(MqttPacketTooLarge);
    expect(err).toMatchObject({ code: 'MQTT_PACKET_TOO_LARGE', maxBytes: 1024 });
    expect(Buffer.concat(got)).toEqual(Buffer.from(publish('a', 10)));
    expect(socket.destroyed).toBe(true);
  });
});
