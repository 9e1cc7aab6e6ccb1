import { encodeV2gtp } from '../v2gtp/codec.ts';
import { exiError } from './errors.ts';
import { decodeAny, encodeAny, SCHEMA_NAMESPACES, type ExiObject, type SchemaDocuments, type SchemaId } from './index.ts';

/**
 * EXI ↔ V2GTP: which schema a V2GTP payload is in, and framing an encoded message with the right payload type.
 * ISO 15118-2/DIN/SupportedAppProtocol share payload type 0x8001; ISO 15118-20 gives each schema its own type
 * (ISO 15118-20 V2GTP payload types 0x8002–0x8006).
 */
export const EXI_PAYLOAD_TYPE = 0x8001;
export const ISO20_PAYLOAD_TYPES = {
  iso20: 0x8002, // -20 CommonMessages
  iso20ac: 0x8003,
  iso20dc: 0x8004,
  iso20acdp: 0x8005,
  iso20wpt: 0x8006,
} as const satisfies Partial<Record<SchemaId, number>>;

/** The payload type a message of `schema` travels with. */
export function payloadTypeOf(schema: SchemaId): number {
  return (ISO20_PAYLOAD_TYPES as Partial<Record<SchemaId, number>>)[schema] ?? EXI_PAYLOAD_TYPE;
}

/** The schema of a SupportedAppProtocol ProtocolNamespace (undefined: not one we speak). */
export function schemaForNamespace(namespace: string): SchemaId | undefined {
  const ns = namespace.replace(/\0+$/, ''); // field EVs append NUL characters
  for (const [id, uri] of Object.entries(SCHEMA_NAMESPACES)) if (uri === ns && id !== 'xmldsig') return id as SchemaId;
  return undefined;
}

/** Roots that are whole messages of each schema family (anything else decoding "successfully" is a misfit). */
function isMessageRoot(schema: SchemaId, root: string): boolean {
  if (schema === 'appHandshake') return root === 'supportedAppProtocolReq' || root === 'supportedAppProtocolRes';
  if (schema === 'iso2' || schema === 'din') return root === 'V2G_Message';
  return /(Req|Res)$/.test(root);
}

export interface DecodedPayload {
  schema: SchemaId;
  message: ExiObject;
}

/**
 * Decodes a V2GTP payload, choosing the schema from the payload type and content: `negotiated` (the schema agreed by
 * SupportedAppProtocol) is tried first, then the others of the payload type. A schema counts only if the whole
 * stream decodes to one of its message roots. Throws the first schema's ExiError when none fits.
 */
export function decodeV2gtpPayload(payloadType: number, payload: Uint8Array, negotiated?: SchemaId): DecodedPayload {
  let candidates: SchemaId[];
  const iso20 = Object.entries(ISO20_PAYLOAD_TYPES).find(([, t]) => t === payloadType);
  if (iso20) candidates = [iso20[0] as SchemaId];
  else if (payloadType === EXI_PAYLOAD_TYPE) candidates = ['appHandshake', 'iso2', 'din'];
  else throw exiError('EXI_UNKNOWN_SCHEMA', 'V2GTP payload type carries no EXI schema', { payloadType });
  if (negotiated && candidates.includes(negotiated)) candidates = [negotiated, ...candidates.filter((c) => c !== negotiated)];
  let firstError: unknown;
  for (const schema of candidates) {
    try {
      const message = decodeAny(schema, payload);
      const root = Object.keys(message)[0]!;
      if (isMessageRoot(schema, root)) return { schema, message };
      firstError ??= exiError('EXI_INVALID', 'payload decodes to no message of this schema', { schema, root });
    } catch (err) {
      firstError ??= err;
    }
  }
  throw firstError;
}

/** Encodes a message and frames it as a V2GTP message with its schema's payload type. */
export function encodeV2gtpMessage<S extends SchemaId>(schema: S, message: SchemaDocuments[S]): Uint8Array {
  return encodeV2gtp(payloadTypeOf(schema), encodeAny(schema, message));
}
