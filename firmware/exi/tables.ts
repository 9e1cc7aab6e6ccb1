/**
 * The shape of the generated grammar tables (firmware/exi/generated/*.ts), shared by the generator and the runtime.
 * Tables are plain JSON so a generated file is one string literal: cheap for tsc, cheap to load.
 *
 * W3C EXI 1.0 §8.5.4: each schema type yields a normalized grammar; a state's first-level productions are listed in
 * event-code order (AT sorted by qname, SE in schema order, SE(*), EE, CH). The second-level (undeclared) productions
 * of non-strict mode are not listed: the runtime derives them from `l2` (state position relative to `content`).
 */

/** Datatype representations (EXI §7.1). */
export type DatatypeJson =
  | ['s'] // string (string table, length+2 on a miss)
  | ['s', number] // string with a maxLength/length facet (characters)
  | ['b', 'hex' | 'b64'] // binary: length + bytes
  | ['b', 'hex' | 'b64', number] // binary with a maxLength/length facet (octets)
  | ['o'] // boolean: 1 bit
  | ['n', number, number, number] // n-bit unsigned: bits, minimum, maximum (bounded integer, range < 4096)
  | ['u', number] // unsigned integer (7-bit groups); max number of groups
  | ['i', number] // integer: sign + unsigned magnitude; max number of groups
  | ['e', ...string[]]; // enumeration: n-bit index

/** Productions, first element is the kind. */
export const P_AT = 0; // [0, name, datatype, next]
export const P_SE = 1; // [1, name, grammar, next, isArray]
export const P_SEANY = 2; // [2, next]
export const P_EE = 3; // [3]
export const P_CH = 4; // [4, datatype, next]
export const P_CHU = 5; // [5, next] (mixed content, untyped)

export type ProductionJson = number[];

/** A state: [l2kind, ...productions]. l2kind: 0 = first state, 1 = attribute state up to content, 2 = content. */
export type StateJson = [number, ...ProductionJson[]];

export interface GrammarJson {
  /** Local name of the type (for messages and generated TS names). */
  n: string;
  s: StateJson[];
}

export interface SchemaTablesJson {
  /** Qualified names: [uri, local]. */
  names: [string, string][];
  datatypes: DatatypeJson[];
  grammars: GrammarJson[];
  /** Document grammar: global elements sorted by qname: [name, grammar]. */
  doc: [number, number][];
  /** Fragment grammar: all element declarations, unique qnames sorted: [name, grammar]. */
  frag: [number, number][];
}
