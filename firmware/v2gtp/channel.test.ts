import { describe, expect, it } from 'vitest';
import type { ByteStream } from '../../hal/net/types.ts';
import { PayloadType } from './constants.ts';
import { V2gtpChannel } from './channel.ts';
import { encodeV2gtp } from './codec.ts';

/** A ByteStream whose far end is driven by the test. */
function fakeStream() {
  let data: ((c: Uint8Array) => void) | undefined;
  let close: ((e?: Error) => void) | undefined;
  const written: Uint8Array[] = [];
  let destroyed = false;
  const stream: ByteStream = {
    write: async (d) => void written.push(d),
    onData: (l) => void (data = l),
    onClose: (l) => void (close = l),
    close: async () => close?.(),
    destroy: () => {
      destroyed = true;
      close?.();
    },
  };
  return { stream, written, feed: (b: Uint8Array) => data!(b), isDestroyed: () => destroyed };
}

describe('V2gtpChannel', () => {
  it('frames what it sends and delivers reassembled messages', async () => {
    const f = fakeStream();
    const ch = new V2gtpChannel(f.stream);
    const got: number[][] = [];
    ch.onMessage((m) => got.push([m.payloadType, ...m.payload]));
    await ch.send(PayloadType.EXI, Uint8Array.from([0x80, 0x01]));
    expect(Buffer.from(f.written[0]!).toString('hex')).toBe('01fe8001000000028001');
    f.feed(Uint8Array.from([1, 0xfe, 0x80, 0x01, 0, 0]));
    f.feed(Uint8Array.from([0, 1, 0x42, 1, 0xfe]));
    expect(got).toEqual([[0x8001, 0x42]]);
  });

  it('delivers a 64 KiB message trickled one byte per read, once', () => {
    const f = fakeStream();
    const ch = new V2gtpChannel(f.stream);
    const got: Uint8Array[] = [];
    ch.onMessage((m) => got.push(m.payload));
    const payload = Uint8Array.from({ length: 65_536 }, (_, i) => i & 0xff);
    const wire = encodeV2gtp(PayloadType.EXI, payload);
    for (let i = 0; i < wire.length; i++) f.feed(wire.subarray(i, i + 1));
    expect(got).toHaveLength(1);
    expect(Buffer.from(got[0]!).equals(Buffer.from(payload))).toBe(true);
  });

  it('closes at the second byte when the peer speaks TLS on a plain V2GTP connection', async () => {
    const f = fakeStream();
    const ch = new V2gtpChannel(f.stream);
    const closed = new Promise<Error | undefined>((r) => ch.onClose(r));
    f.feed(Uint8Array.from([0x15, 0x03]));
    expect(await closed).toMatchObject({ code: 'V2GTP_BAD_VERSION' });
    expect(f.isDestroyed()).toBe(true);
  });

  it('closes the stream on a framing error and reports it typed', async () => {
    const f = fakeStream();
    const ch = new V2gtpChannel(f.stream, { maxPayload: 100 });
    const closed = new Promise<Error | undefined>((r) => ch.onClose(r));
    f.feed(Uint8Array.from([1, 0xfe, 0x80, 0x01, 0, 0, 1, 0]));
    expect(await closed).toMatchObject({ code: 'V2GTP_PAYLOAD_TOO_LARGE' });
    expect(f.isDestroyed()).toBe(true);
    await expect(ch.send(PayloadType.EXI, new Uint8Array(1))).rejects.toMatchObject({ code: 'V2GTP_CLOSED' });
  });
});
