import { exiError } from './errors.ts';
import * as appHandshake from './generated/appHandshake.ts';
import * as din from './generated/din.ts';
import * as iso2 from './generated/iso2.ts';
import * as iso20 from './generated/iso20.ts';
import * as iso20ac from './generated/iso20ac.ts';
import * as iso20acdp from './generated/iso20acdp.ts';
import * as iso20dc from './generated/iso20dc.ts';
import * as iso20wpt from './generated/iso20wpt.ts';
import * as xmldsig from './generated/xmldsig.ts';
import { compileSchema, fastOf, decodeDocument, decodeFragment as decodeFragmentWith, encodeDocument, encodeFragmentWith, type CompiledSchema, type DecodeOptions, type EncodeOptions, type ExiObject } from './runtime.ts';
import type { SchemaTablesJson } from './tables.ts';

/**
 * Public EXI API: `encode(schema, message)`, `decode(schema, bytes)`, `encodeFragment(schema, element)`,
 * `decodeFragment(schema, bytes)`. Messages have the shape `{ <GlobalElement>: content }` (see runtime.ts for the
 * value conventions) and are typed per schema by the generated modules.
 */
export type { ExiValue, ExiObject, DecodeOptions, EncodeOptions } from './runtime.ts';
export { EXI_CHILD_ORDER } from './runtime.ts';
export { ExiError, type ExiErrorCode } from './errors.ts';
export type * as AppHandshake from './generated/appHandshake.ts';
export type * as Iso2 from './generated/iso2.ts';
export type * as Din from './generated/din.ts';
export type * as Iso20 from './generated/iso20.ts';
export type * as Iso20Ac from './generated/iso20ac.ts';
export type * as Iso20Dc from './generated/iso20dc.ts';
export type * as Iso20Acdp from './generated/iso20acdp.ts';
export type * as Iso20Wpt from './generated/iso20wpt.ts';
export type * as XmlDsig from './generated/xmldsig.ts';

export interface SchemaDocuments {
  appHandshake: appHandshake.Document;
  iso2: iso2.Document;
  din: din.Document;
  iso20: iso20.Document;
  iso20ac: iso20ac.Document;
  iso20dc: iso20dc.Document;
  iso20acdp: iso20acdp.Document;
  iso20wpt: iso20wpt.Document;
  xmldsig: xmldsig.Document;
}
export interface SchemaFragments {
  appHandshake: appHandshake.Fragments;
  iso2: iso2.Fragments;
  din: din.Fragments;
  iso20: iso20.Fragments;
  iso20ac: iso20ac.Fragments;
  iso20dc: iso20dc.Fragments;
  iso20acdp: iso20acdp.Fragments;
  iso20wpt: iso20wpt.Fragments;
  xmldsig: xmldsig.Fragments;
}
export type SchemaId = keyof SchemaDocuments;
/** One fragment element of a schema, e.g. `{ AuthorizationReq: {...} }`. */
export type FragmentOf<S extends SchemaId> = { [K in keyof SchemaFragments[S]]: { [P in K]: SchemaFragments[S][K] } }[keyof SchemaFragments[S]];

const TABLES: Record<SchemaId, SchemaTablesJson> = {
  appHandshake: appHandshake.tables,
  iso2: iso2.tables,
  din: din.tables,
  iso20: iso20.tables,
  iso20ac: iso20ac.tables,
  iso20dc: iso20dc.tables,
  iso20acdp: iso20acdp.tables,
  iso20wpt: iso20wpt.tables,
  xmldsig: xmldsig.tables,
};

/** Protocol namespaces (SupportedAppProtocol) of each schema. */
export const SCHEMA_NAMESPACES: Record<SchemaId, string> = {
  appHandshake: 'urn:iso:15118:2:2010:AppProtocol',
  iso2: 'urn:iso:15118:2:2013:MsgDef',
  din: 'urn:din:70121:2012:MsgDef',
  iso20: 'urn:iso:std:iso:15118:-20:CommonMessages',
  iso20ac: 'urn:iso:std:iso:15118:-20:AC',
  iso20dc: 'urn:iso:std:iso:15118:-20:DC',
  iso20acdp: 'urn:iso:std:iso:15118:-20:ACDP',
  iso20wpt: 'urn:iso:std:iso:15118:-20:WPT',
  xmldsig: 'http://www.w3.org/2000/09/xmldsig#',
};

export const SCHEMA_IDS = Object.keys(TABLES) as SchemaId[];

const compiled = new Map<SchemaId, CompiledSchema>();
/** The compiled grammar of a schema (compiled once, on first use). */
export function schema(id: SchemaId): CompiledSchema {
  let s = compiled.get(id);
  if (!s) {
    const t = TABLES[id];
    if (!t) throw exiError('EXI_UNKNOWN_SCHEMA', `unknown EXI schema ${String(id)}`, { schema: id });
    s = compileSchema(id, t);
    compiled.set(id, s);
  }
  return s;
}

/**
 * Compiles a schema's tables and specialized codecs now (10–30 ms each) instead of on the first message: call at
 * start-up so the first SupportedAppProtocol exchange does not pay for it.
 */
export function prepare(...ids: SchemaId[]): void {
  for (const id of ids) fastOf(schema(id));
}

export function encode<S extends SchemaId>(id: S, message: SchemaDocuments[S], opts?: EncodeOptions): Uint8Array {
  return encodeDocument(schema(id), message, opts);
}

export function decode<S extends SchemaId>(id: S, bytes: Uint8Array, opts?: DecodeOptions): SchemaDocuments[S] {
  return decodeDocument(schema(id), bytes, opts) as SchemaDocuments[S];
}

/** EXI fragment (schema-informed fragment grammar), as xmldsig reference digests and SignedInfo need. */
export function encodeFragment<S extends SchemaId>(id: S, element: FragmentOf<S>, opts?: EncodeOptions): Uint8Array {
  return encodeFragmentWith(schema(id), element, opts);
}

export function decodeFragment<S extends SchemaId>(id: S, bytes: Uint8Array, opts?: DecodeOptions): FragmentOf<S> {
  return decodeFragmentWith(schema(id), bytes, opts) as FragmentOf<S>;
}

/** Untyped variants for tools (CLI, fuzzers) that pick the schema at run time. */
export function encodeAny(id: SchemaId, message: unknown, opts?: EncodeOptions): Uint8Array {
  return encodeDocument(schema(id), message, opts);
}
export function decodeAny(id: SchemaId, bytes: Uint8Array, opts?: DecodeOptions): ExiObject {
  return decodeDocument(schema(id), bytes, opts);
}

/** ISO-2 / DIN: decode a stream that must be a whole V2G_Message (anything else is EXI_INVALID) and unwrap it. */
export function decodeV2gMessage(id: 'iso2', bytes: Uint8Array): iso2.V2G_MessageElement;
export function decodeV2gMessage(id: 'din', bytes: Uint8Array): din.V2G_MessageElement;
export function decodeV2gMessage(id: 'iso2' | 'din', bytes: Uint8Array): iso2.V2G_MessageElement | din.V2G_MessageElement {
  const doc = decodeDocument(schema(id), bytes) as { V2G_Message?: iso2.V2G_MessageElement | din.V2G_MessageElement };
  if (!doc.V2G_Message) throw exiError('EXI_INVALID', 'not a V2G_Message', { schema: id, root: Object.keys(doc)[0] });
  return doc.V2G_Message;
}

/** ISO-2 / DIN: encode `{ V2G_Message: { Header, Body } }`. */
export function encodeV2gMessage(id: 'iso2', message: iso2.V2G_MessageElement, opts?: EncodeOptions): Uint8Array;
export function encodeV2gMessage(id: 'din', message: din.V2G_MessageElement, opts?: EncodeOptions): Uint8Array;
export function encodeV2gMessage(id: 'iso2' | 'din', message: iso2.V2G_MessageElement | din.V2G_MessageElement, opts?: EncodeOptions): Uint8Array {
  return encodeDocument(schema(id), { V2G_Message: message }, opts);
}
