import fc from 'fast-check';
import { SerialPortMock } from 'serialport';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, macFromString } from '../../firmware/slac/codec.ts';
import { encodeQcaFrame, QcaFrameDecoder } from './qca-framing.ts';
import { QcaUartLink } from './qca-uart.ts';

const EV = '02:00:00:00:ee:01';
const parmReq = () => encodeFrame({
  dst: macFromString('ff:ff:ff:ff:ff:ff'), src: macFromString(EV),
  message: { type: 'CM_SLAC_PARM.REQ', applicationType: 0, securityType: 0, runId: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), cipherSuiteSetSize: 0 },
});

describe('QCA7000 serial framing', () => {
  it('wraps a frame as SOF×4 | length LE | 0 0 | frame | EOF×2', () => {
    const eth = parmReq();
    const f = encodeQcaFrame(eth);
    expect(Array.from(f.subarray(0, 8))).toEqual([0xaa, 0xaa, 0xaa, 0xaa, 60, 0, 0, 0]);
    expect(Array.from(f.subarray(8, 68))).toEqual(Array.from(eth));
    expect(Array.from(f.subarray(68))).toEqual([0x55, 0x55]);
    expect(encodeQcaFrame(new Uint8Array(20)).length).toBe(8 + 60 + 2); // padded to the ethernet minimum
  });

  it('reassembles frames split at every byte boundary and resynchronises after junk', () => {
    const a = encodeQcaFrame(parmReq());
    const b = encodeQcaFrame(new Uint8Array(300).fill(7));
    const stream = Uint8Array.from([0x01, 0xaa, 0x55, ...a, 0xaa, 0xaa, 0x00, ...b]);
    const d = new QcaFrameDecoder();
    const out = [...stream].flatMap((byte) => d.push(Uint8Array.of(byte)));
    expect(out.map((f) => f.length)).toEqual([60, 300]);
    expect(Array.from(out[0]!)).toEqual(Array.from(parmReq()));
  });

  it('drops frames with a bad length or without end-of-frame and recovers', () => {
    const good = encodeQcaFrame(parmReq());
    const badLen = Uint8Array.from(good);
    badLen[4] = 10; // below the ethernet minimum
    const noTail = Uint8Array.from(good);
    noTail[noTail.length - 1] = 0x00;
    const d = new QcaFrameDecoder();
    const out = d.push(Uint8Array.from([...badLen, ...noTail, ...good]));
    expect(out).toHaveLength(1);
    expect(d.stats.errors).toBeGreaterThanOrEqual(2);
  });

  it('never throws and never emits more than the maximum frame on random streams', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 20 }), (chunks) => {
      const d = new QcaFrameDecoder();
      for (const c of chunks) for (const f of d.push(c)) expect(f.length).toBeLessThanOrEqual(1518);
    }), { numRuns: 500 });
  });
});

describe('QcaUartLink over a mock serial port', () => {
  afterEach(() => SerialPortMock.binding.reset());

  it('sends framed MMEs and delivers only HomePlug frames it receives', async () => {
    SerialPortMock.binding.createPort('/dev/ttyQCA0', { echo: false, record: true });
    const port = await new Promise<SerialPortMock>((resolve, reject) => {
      const p = new SerialPortMock({ path: '/dev/ttyQCA0', baudRate: 115200 }, (err) => (err ? reject(err) : resolve(p)));
    });
    const link = new QcaUartLink(port, EV, '/dev/ttyQCA0');
    const got: Uint8Array[] = [];
    link.onFrame((f) => got.push(f));
    await link.send(parmReq());
    expect(Array.from(port.port!.recording)).toEqual(Array.from(encodeQcaFrame(parmReq())));
    const ipv6 = new Uint8Array(80);
    ipv6[12] = 0x86; ipv6[13] = 0xdd;
    const both = Buffer.concat([Buffer.from(encodeQcaFrame(ipv6)), Buffer.from(encodeQcaFrame(parmReq()))]);
    port.port!.emitData(both.subarray(0, 50));
    port.port!.emitData(both.subarray(50));
    await new Promise((r) => setTimeout(r, 20));
    expect(got.map((f) => f.length)).toEqual([60]);
    await link.close();
    expect(port.isOpen).toBe(false);
    await expect(link.send(parmReq())).rejects.toMatchObject({ code: 'IO_FAILED' });
  });
});
