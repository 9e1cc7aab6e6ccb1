import { describe, expect, it } from 'vitest';
import { encodeAny, type ExiError } from './index.ts';

/** Messages that do not fit the schema are typed errors naming the field — never silently dropped or truncated. */
function error(schema: Parameters<typeof encodeAny>[0], message: unknown): ExiError {
  try {
    encodeAny(schema, message);
  } catch (err) {
    return err as ExiError;
  }
  throw new Error('expected an encode error');
}

const header = { SessionID: '0011223344556677' };

describe('EXI encoder refuses what the schema does not allow', () => {
  it.each([
    ['an unknown field', { V2G_Message: { Header: header, Body: { SessionSetupReq: { EVCCID: '001122334455', Color: 'red' } } } }, 'V2G_Message.Body.SessionSetupReq.Color'],
    ['a missing mandatory field', { V2G_Message: { Header: header, Body: { SessionSetupRes: { ResponseCode: 'OK' } } } }, 'V2G_Message.Body.SessionSetupRes'],
    ['a value outside the enumeration', { V2G_Message: { Header: header, Body: { SessionSetupRes: { ResponseCode: 'GREAT', EVSEID: 'X' } } } }, 'V2G_Message.Body.SessionSetupRes.ResponseCode'],
    ['an integer outside its bounded range', { V2G_Message: { Header: header, Body: { ChargingStatusReq: {} , } } }, undefined],
    ['binary that is not hex', { V2G_Message: { Header: { SessionID: 'zz' }, Body: {} } }, 'V2G_Message.Header.SessionID'],
    ['a SessionID over its 8-octet facet', { V2G_Message: { Header: { SessionID: '00'.repeat(9) }, Body: {} } }, 'V2G_Message.Header.SessionID'],
    ['two root elements', { V2G_Message: { Header: header, Body: {} }, Extra: {} }, undefined],
  ])('%s', (_what, message, path) => {
    if (_what.startsWith('an integer')) {
      const e = error('appHandshake', { supportedAppProtocolReq: { AppProtocol: [{ ProtocolNamespace: 'urn:x', VersionNumberMajor: 2, VersionNumberMinor: 0, SchemaID: 1, Priority: 21 }] } });
      expect(e.code).toBe('EXI_ENCODE_INVALID');
      expect(e.details.path).toBe('supportedAppProtocolReq.AppProtocol[0].Priority');
      return;
    }
    const e = error('iso2', message);
    expect(e.code).toBe('EXI_ENCODE_INVALID');
    if (path) expect(e.details.path).toBe(path);
  });

  it('more items than maxOccurs (SupportedAppProtocolReq allows 20)', () => {
    const p = { ProtocolNamespace: 'urn:x', VersionNumberMajor: 2, VersionNumberMinor: 0, SchemaID: 1, Priority: 1 };
    expect(() => encodeAny('appHandshake', { supportedAppProtocolReq: { AppProtocol: new Array(20).fill(p) } })).not.toThrow();
    expect(error('appHandshake', { supportedAppProtocolReq: { AppProtocol: new Array(21).fill(p) } }).details.path).toBe('supportedAppProtocolReq.AppProtocol');
  });
});

describe('EXI decoder: undeclared (second-level) EE of an empty element', () => {
  it('an empty string element ended by the second-level EE (as EXIficient writes it) decodes as ""', async () => {
    const { BitWriter } = await import('./bitstream.ts');
    const { decodeAny: decode } = await import('./index.ts');
    // supportedAppProtocolReq > AppProtocol > ProtocolNamespace ended by escape (1) + 2nd-level EE (0, 3 bits), then
    // the rest of AppProtocol.
    const w = new BitWriter();
    w.writeBits(8, 0x80);
    w.writeBits(2, 0); // SE(supportedAppProtocolReq)
    w.writeBits(1, 0); // SE(AppProtocol)
    w.writeBits(1, 0); // SE(ProtocolNamespace)
    w.writeBits(1, 1); // escape to second level
    w.writeBits(3, 0); // EE (second level)
    for (const v of [2, 0]) {
      w.writeBits(1, 0); // SE(VersionNumberMajor/Minor)
      w.writeBits(1, 0); // CH
      w.writeUnsigned(v);
      w.writeBits(1, 0); // EE
    }
    w.writeBits(1, 0); w.writeBits(1, 0); w.writeBits(8, 1); w.writeBits(1, 0); // SchemaID
    w.writeBits(1, 0); w.writeBits(1, 0); w.writeBits(5, 0); w.writeBits(1, 0); // Priority 1
    w.writeBits(1, 0); // EE AppProtocol
    w.writeBits(2, 1); // EE supportedAppProtocolReq (state after one AppProtocol: SE, EE)
    expect(decode('appHandshake', w.finish())).toEqual({ supportedAppProtocolReq: { AppProtocol: [{ ProtocolNamespace: '', VersionNumberMajor: 2, VersionNumberMinor: 0, SchemaID: 1, Priority: 1 }] } });
  });
});
