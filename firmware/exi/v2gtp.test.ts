import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeDatagram } from '../v2gtp/codec.ts';
import { decodeV2gtpPayload, encodeV2gtpMessage, ISO20_PAYLOAD_TYPES, payloadTypeOf, schemaForNamespace } from './v2gtp.ts';

const vectors = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../../shared/vectors/exi-public.json'), 'utf8')) as { schema: string; hex: string; expected_result?: string; decoded: unknown }[];
const SCHEMA = { appHandshake: 'appHandshake', 'ISO15118-2': 'iso2', DIN70121: 'din', 'ISO15118-20 CommonMessages': 'iso20', 'ISO15118-20 DC': 'iso20dc', 'ISO15118-20 AC': 'iso20ac' } as const;

describe('EXI over V2GTP: schema selection', () => {
  it('picks the schema of every public vector from payload type and content alone', () => {
    let n = 0;
    for (const v of vectors.filter((x) => !x.expected_result?.startsWith('must FAIL'))) {
      const schema = SCHEMA[v.schema as keyof typeof SCHEMA];
      const got = decodeV2gtpPayload(payloadTypeOf(schema), new Uint8Array(Buffer.from(v.hex, 'hex')));
      expect(got.schema, v.hex.slice(0, 20)).toBe(schema);
      n++;
    }
    expect(n).toBe(415);
  });

  it('frames with the -20 payload types and the shared 0x8001, and maps SupportedAppProtocol namespaces', () => {
    const msg = { supportedAppProtocolRes: { ResponseCode: 'OK_SuccessfulNegotiation' as const, SchemaID: 2 } };
    const frame = decodeDatagram(encodeV2gtpMessage('appHandshake', msg));
    expect(frame.payloadType).toBe(0x8001);
    expect(decodeV2gtpPayload(frame.payloadType, frame.payload)).toEqual({ schema: 'appHandshake', message: msg });
    expect(ISO20_PAYLOAD_TYPES.iso20dc).toBe(0x8004);
    expect(schemaForNamespace('urn:iso:15118:2:2013:MsgDef\u0000')).toBe('iso2');
    expect(schemaForNamespace('urn:din:70121:2012:MsgDef')).toBe('din');
    expect(schemaForNamespace('urn:iso:std:iso:15118:-20:DC')).toBe('iso20dc');
    expect(schemaForNamespace('urn:example')).toBeUndefined();
    expect(() => decodeV2gtpPayload(0x9000, new Uint8Array([0x80]))).toThrow(expect.objectContaining({ code: 'EXI_UNKNOWN_SCHEMA' }));
  });
});

describe('V2G_Message helpers', () => {
  it('decodeV2gMessage unwraps ISO-2/DIN messages and refuses other roots', async () => {
    const { decodeV2gMessage, encodeV2gMessage, encodeAny } = await import('./index.ts');
    const msg = { Header: { SessionID: '0011223344556677' }, Body: { SessionStopReq: { ChargingSession: 'Terminate' as const } } };
    expect(decodeV2gMessage('iso2', encodeV2gMessage('iso2', msg))).toEqual(msg);
    const other = encodeAny('iso2', { SessionStopReq: { ChargingSession: 'Terminate' } });
    expect(() => decodeV2gMessage('iso2', other)).toThrow(expect.objectContaining({ code: 'EXI_INVALID' }));
  });
});

describe('prepare', () => {
  it('compiles every schema eagerly and leaves the codecs working', async () => {
    const { prepare, SCHEMA_IDS, schema, encodeAny, decodeAny } = await import('./index.ts');
    prepare(...SCHEMA_IDS);
    for (const id of SCHEMA_IDS) expect(schema(id).fast).toBeTruthy();
    const msg = { supportedAppProtocolRes: { ResponseCode: 'Failed_NoNegotiation' } };
    expect(decodeAny('appHandshake', encodeAny('appHandshake', msg))).toEqual(msg);
  });
});
