import { describe, expect, it } from 'vitest';
import type { ByteStream } from '../../hal/net/types.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { decode } from '../exi/index.ts';
import { silentLogger } from '../../core/logger.ts';
import { encodeV2gtp, V2gtpReassembler } from '../v2gtp/codec.ts';
import { PayloadType } from '../v2gtp/constants.ts';
import { answerSupportedAppProtocolReq, buildSupportedAppProtocolReq, DEFAULT_OFFER, evaluateSupportedAppProtocolRes, performAppHandshake } from './app-handshake.ts';

/** One end of an in-memory duplex; `peer` is what the other side does with each chunk written to us. */
function streamTo(peer: (chunk: Uint8Array, reply: (b: Uint8Array) => void, close: () => void) => void): ByteStream {
  let onData: (c: Uint8Array) => void = () => undefined;
  let onClose: (e?: Error) => void = () => undefined;
  return {
    async write(data) { setImmediate(() => peer(data, (b) => onData(b), () => onClose())); },
    onData(l) { onData = l; },
    onClose(l) { onClose = l; },
    async close() { onClose(); },
    destroy() { onClose(); },
  };
}

const ISO2 = { namespace: 'urn:iso:15118:2:2013:MsgDef', major: 2, minor: 0 };
const DIN = { namespace: 'urn:din:70121:2012:MsgDef', major: 2, minor: 0 };

describe('SupportedAppProtocol handshake', () => {
  it('the request carries every offered protocol with its priority', () => {
    const doc = decode('appHandshake', buildSupportedAppProtocolReq(DEFAULT_OFFER));
    expect(doc).toEqual({ supportedAppProtocolReq: { AppProtocol: [
      { ProtocolNamespace: ISO2.namespace, VersionNumberMajor: 2, VersionNumberMinor: 0, SchemaID: 1, Priority: 1 },
      { ProtocolNamespace: DIN.namespace, VersionNumberMajor: 2, VersionNumberMinor: 0, SchemaID: 2, Priority: 2 },
    ] } });
  });

  it('the SECC picks the best priority it supports; minor mismatches are a deviation', () => {
    const req = buildSupportedAppProtocolReq(DEFAULT_OFFER);
    expect(evaluateSupportedAppProtocolRes(DEFAULT_OFFER, answerSupportedAppProtocolReq(req, [DIN, ISO2])))
      .toMatchObject({ schemaId: 1, responseCode: 'OK_SuccessfulNegotiation' });
    expect(evaluateSupportedAppProtocolRes(DEFAULT_OFFER, answerSupportedAppProtocolReq(req, [{ ...DIN, minor: 1 }])))
      .toMatchObject({ schemaId: 2, responseCode: 'OK_SuccessfulNegotiationWithMinorDeviation' });
    expect(() => evaluateSupportedAppProtocolRes(DEFAULT_OFFER, answerSupportedAppProtocolReq(req, [{ namespace: 'urn:x', major: 1, minor: 0 }])))
      .toThrow(expect.objectContaining({ code: 'APPHAND_NO_COMMON_PROTOCOL' }));
  });

  it('refuses a SchemaID that was never offered and garbage instead of EXI', () => {
    const forged = answerSupportedAppProtocolReq(buildSupportedAppProtocolReq([{ ...DEFAULT_OFFER[0]!, schemaId: 9 }]), [ISO2]);
    expect(() => evaluateSupportedAppProtocolRes(DEFAULT_OFFER, forged)).toThrow(expect.objectContaining({ code: 'APPHAND_INVALID_RESPONSE' }));
    expect(() => evaluateSupportedAppProtocolRes(DEFAULT_OFFER, new Uint8Array([0x80, 0xff, 0xff]))).toThrow(expect.objectContaining({ code: 'APPHAND_INVALID_RESPONSE' }));
  });

  it('runs over a V2GTP stream split into single bytes', async () => {
    const clock = new VirtualClock();
    const reasm = new V2gtpReassembler();
    const stream = streamTo((chunk, reply) => {
      for (const m of reasm.push(chunk)) {
        const answer = encodeV2gtp(PayloadType.EXI, answerSupportedAppProtocolReq(m.payload, [ISO2]));
        for (const b of answer) reply(Uint8Array.of(b));
      }
    });
    const negotiated = await performAppHandshake({ stream, clock, log: silentLogger() });
    expect(negotiated).toMatchObject({ namespace: ISO2.namespace, schemaId: 1 });
    expect(clock.pending).toBe(0);
  });

  it('times out with APPHAND_TIMEOUT after V2G_EVCC_Msg_Timeout when the SECC stays silent', async () => {
    const clock = new VirtualClock();
    const p = performAppHandshake({ stream: streamTo(() => undefined), clock, log: silentLogger() });
    clock.advance(1999);
    await new Promise((r) => setImmediate(r));
    clock.advance(1);
    await expect(p).rejects.toMatchObject({ code: 'APPHAND_TIMEOUT' });
    expect(clock.pending).toBe(0);
  });

  it('a channel that closes first ends the wait with APPHAND_CHANNEL_CLOSED', async () => {
    const clock = new VirtualClock();
    const p = performAppHandshake({ stream: streamTo((_c, _r, close) => close()), clock, log: silentLogger() });
    await expect(p).rejects.toMatchObject({ code: 'APPHAND_CHANNEL_CLOSED' });
  });
});
