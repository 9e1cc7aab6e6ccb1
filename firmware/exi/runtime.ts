import { BitReader, BitWriter, bitsFor } from './bitstream.ts';
import { CBEXIGEN_ARRAY_CAPS } from './cbexigen-caps.ts';
import { compileFast, type FastCodec } from './compile.ts';
import { exiError } from './errors.ts';
import * as T from './tables.ts';
import type { DatatypeJson, SchemaTablesJson } from './tables.ts';

// Production kinds as module-local constants: imported bindings compile to getter calls under tsx/vitest, which
// showed up as a third of the encoder's time.
const P_AT = 0;
const P_SE = 1;
const P_SEANY = 2;
const P_EE = 3;
const P_CH = 4;
const P_CHU = 5;
/** Only in the alternative states of capped lists: SE(entry) beyond the schema's maxOccurs. */
const P_OVER = 6;
if (T.P_AT !== P_AT || T.P_SE !== P_SE || T.P_SEANY !== P_SEANY || T.P_EE !== P_EE || T.P_CH !== P_CH || T.P_CHU !== P_CHU) {
  throw new Error('EXI production kinds out of sync with tables.ts');
}

/**
 * The grammar runtime: interprets the generated tables to decode and encode schema-informed, non-strict,
 * bit-packed EXI bodies (EXI 1.0 §8.5.4 grammars, §7 datatypes) with the ISO 15118 options
 * (header 0x80, no options; string table value hits understood on input, not produced unless asked).
 *
 * Message shape (the public API, as the public vectors print it): an element is keyed by its local name; complex
 * content is an object of attributes and children; repeated children are arrays; simple content with attributes
 * has its value under `CONTENT`; integers are numbers (bigint beyond 2^53); booleans are 0/1; binary is lowercase
 * hex; enumerations are their string values.
 */

export type ExiValue = string | number | bigint | ExiObject | ExiValue[];
export interface ExiObject {
  [key: string]: ExiValue | undefined;
}

export enum Dt {
  Str,
  Bin,
  Bool,
  NBit,
  UInt,
  Int,
  Enum,
}

export interface Datatype {
  kind: Dt;
  bits: number; // n-bit width / enum width
  min: number; // n-bit minimum
  max: number; // n-bit maximum (facet; the n bits may hold more)
  groups: number; // max 7-bit groups
  values: string[]; // enumeration
  index: Map<string, number>;
  /** Length facet (characters / octets), enforced when encoding only. */
  maxLength: number;
}

export interface Production {
  kind: number;
  name: number; // qname index (AT, SE)
  key: string; // local name (JSON key)
  grammar: Grammar | null; // SE
  dt: Datatype | null; // AT, CH
  next: number;
  array: boolean;
  /** Repeated child carried as a bare value when it occurs once. */
  oneOrMany: boolean;
  /** Field slot within the grammar (encoder bookkeeping); CH uses the CONTENT slot. */
  slot: number;
}

export interface State {
  bits: number;
  prods: Production[];
  eeFirst: boolean; // EE is a first-level production
  l2bits: number; // width of second-level codes
  /** A list capped by the cbexigen codec can hold exactly its cap here (cbexigen-caps.ts); null almost everywhere. */
  capRule: CapRule | null;
}

/** How the cbexigen codec codes the event after the cap-th entry of `key` (see cbexigen-caps.ts). */
export interface CapRule {
  key: string;
  cap: number;
  /** The state that codec codes with when the list holds `cap` entries. */
  alt: State;
}

export interface Grammar {
  name: string;
  index: number;
  states: State[];
  /** Simple type (no attributes): the element's value is the bare value. */
  simple: boolean;
  /** Simple content with attributes: the value goes under CONTENT. */
  simpleContent: boolean;
  /** JSON key → field slot. */
  slotOf: Map<string, number>;
  slotCount: number;
  /** Children may interleave (tables `o`): decoded objects carry EXI_CHILD_ORDER, which the encoder follows. */
  ordered: boolean;
}

/**
 * The document order of an element's children where the message shape (one property per name) cannot hold it:
 * grammars whose children interleave (xmldsig KeyInfo, X509Data — a repeated choice). A non-enumerable property of
 * the decoded object, an array of child keys in stream order; `encode` follows it while it matches the object (else,
 * from there on, schema order), so decode → encode keeps the bytes, and a signature over a re-encoded KeyInfo holds.
 * Set it on a constructed object to choose the order.
 */
export const EXI_CHILD_ORDER: unique symbol = Symbol.for('evcc.exi.childOrder');

export interface CompiledSchema {
  id: string;
  names: [string, string][];
  grammars: Grammar[];
  doc: { name: number; key: string; grammar: Grammar | null }[];
  docBits: number;
  docByKey: Map<string, number>;
  frag: { name: number; key: string; grammar: Grammar | null }[];
  fragBits: number;
  fragByKey: Map<string, number>;
  /** Specialized codecs (compile.ts), built on first use. */
  fast?: FastCodec | null;
}

export interface DecodeOptions {
  /** Upper bound on nesting depth (hostile input). */
  maxDepth?: number;
  /**
   * Refuse streams that only decode with the cbexigen full-list rule (README "Charger codecs that end full lists
   * wrongly"). Off by default: chargers built on that codec send such streams.
   */
  strictArrayEnds?: boolean;
}
export interface EncodeOptions {
  /** Emit string-table value hits for repeated strings (EXIficient's default). ISO 15118 stacks do not. */
  valueHits?: boolean;
  /** End an element whose mandatory content is absent with the undeclared (second-level) EE. Off: such a message is an error. */
  undeclaredEnd?: boolean;
  /**
   * Encode strings/binary longer than their schema length facet (field stacks send e.g. 18-character eMAIDs where
   * ISO-2 allows 15). Off by default: we are strict in what we send; simulators replaying field traces turn it on.
   */
  ignoreLengthFacets?: boolean;
}

const CONTENT = 'CONTENT';

function compileDatatype(j: DatatypeJson): Datatype {
  const d: Datatype = { kind: Dt.Str, bits: 0, min: 0, max: 0, groups: 0, values: [], index: new Map(), maxLength: Infinity };
  switch (j[0]) {
    case 's': d.kind = Dt.Str; d.maxLength = j[1] ?? Infinity; break;
    case 'b': d.kind = Dt.Bin; d.maxLength = j[2] ?? Infinity; break;
    case 'o': d.kind = Dt.Bool; break;
    case 'n': d.kind = Dt.NBit; d.bits = j[1]; d.min = j[2]; d.max = j[3]; break;
    case 'u': d.kind = Dt.UInt; d.groups = j[1]; break;
    case 'i': d.kind = Dt.Int; d.groups = j[1]; break;
    case 'e':
      d.kind = Dt.Enum;
      d.values = j.slice(1) as string[];
      d.bits = bitsFor(d.values.length);
      d.values.forEach((v, i) => d.index.set(v, i));
      break;
  }
  return d;
}

export function compileSchema(id: string, t: SchemaTablesJson): CompiledSchema {
  const dts = t.datatypes.map(compileDatatype);
  const grammars: Grammar[] = t.grammars.map((g, index) => ({ name: g.n, index, states: [], simple: false, simpleContent: false, slotOf: new Map(), slotCount: 0, ordered: g.o === 1 }));
  t.grammars.forEach((gj, gi) => {
    const g = grammars[gi]!;
    g.states = gj.s.map(([l2kind, ...prods]) => {
      const ps: Production[] = prods.map((p) => {
        const kind = p[0]!;
        const prod: Production = { kind, name: -1, key: '', grammar: null, dt: null, next: -1, array: false, oneOrMany: false, slot: -1 };
        if (kind === P_AT) {
          prod.name = p[1]!;
          prod.key = t.names[p[1]!]![1];
          prod.dt = dts[p[2]!]!;
          prod.next = p[3]!;
        } else if (kind === P_SE) {
          prod.name = p[1]!;
          prod.key = t.names[p[1]!]![1];
          prod.grammar = grammars[p[2]!]!;
          prod.next = p[3]!;
          prod.array = p[4] === 1;
          prod.oneOrMany = p[4] === 2;
        } else if (kind === P_CH) {
          prod.key = CONTENT;
          prod.dt = dts[p[1]!]!;
          prod.next = p[2]!;
        } else if (kind === P_SEANY || kind === P_CHU) {
          prod.next = p[1]!;
        }
        if (kind === P_AT || kind === P_SE || kind === P_CH) {
          let slot = g.slotOf.get(prod.key);
          if (slot === undefined) {
            slot = g.slotCount++;
            g.slotOf.set(prod.key, slot);
          }
          prod.slot = slot;
        }
        return prod;
      });
      const eeFirst = ps.some((p) => p.kind === P_EE);
      // Second-level productions added when strict is false (EXI §8.5.4.4.1): [EE], xsi:type, xsi:nil, AT(*),
      // AT(untyped), SE(*), CH for the first state; [EE], AT(*), AT(untyped), SE(*), CH up to content; [EE], SE(*), CH after.
      const l2count = (l2kind === 0 ? 6 : l2kind === 1 ? 4 : 2) + (eeFirst ? 0 : 1);
      return { bits: bitsFor(ps.length + 1), prods: ps, eeFirst, l2bits: bitsFor(l2count), capRule: null };
    });
    const s0 = g.states[0]!;
    g.simple = g.states.length === 2 && s0.prods.length === 1 && s0.prods[0]!.kind === P_CH;
    g.simpleContent = !g.simple && g.states.some((s) => s.prods.some((p) => p.kind === P_CH));
  });
  const caps = CBEXIGEN_ARRAY_CAPS[id] ?? {};
  for (const g of grammars) {
    const lists = caps[g.name];
    if (lists) for (const key in lists) addCapRules(g, key, lists[key]!);
  }
  const doc = t.doc.map(([n, g]) => ({ name: n, key: t.names[n]![1], grammar: g < 0 ? null : grammars[g]! }));
  const frag = t.frag.map(([n, g]) => ({ name: n, key: t.names[n]![1], grammar: g < 0 ? null : grammars[g]! }));
  const byKey = (list: { key: string; grammar: Grammar | null }[]): Map<string, number> => {
    const m = new Map<string, number>();
    list.forEach((e, i) => {
      if (e.grammar && !m.has(e.key)) m.set(e.key, i);
    });
    return m;
  };
  return {
    id,
    names: t.names,
    grammars,
    doc,
    docBits: bitsFor(doc.length + 1),
    docByKey: byKey(doc),
    frag,
    fragBits: bitsFor(frag.length + 2),
    fragByKey: byKey(frag),
  };
}

const sameProduction = (a: Production, b: Production): boolean => a.kind === b.kind && a.name === b.name && a.next === b.next && a.grammar === b.grammar && a.dt === b.dt;

/**
 * Gives every state where list `key` of `g` can hold exactly `cap` entries the state the cbexigen codec codes the
 * next event with (cbexigen-caps.ts):
 * - the state still allows another entry (cap below maxOccurs): the same productions without SE(entry), code
 *   width recomputed;
 * - it does not (cap = maxOccurs): the state before the last entry, its SE(entry) marked P_OVER (that codec cannot
 *   send a cap+1-th entry, and the schema forbids it); its other productions must be this state's.
 * A table entry that matches no such state is a build error, not a silent no-op.
 */
function addCapRules(g: Grammar, key: string, cap: number): void {
  const isEntry = (p: Production): boolean => p.kind === P_SE && p.key === key;
  // States by the entry counts they can be reached with (counts saturate at cap + 1).
  const counts = g.states.map(() => new Set<number>());
  const before = g.states.map(() => new Set<number>()); // predecessors through SE(entry)
  const work: [number, number][] = [[0, 0]];
  counts[0]!.add(0);
  while (work.length) {
    const [si, n] = work.pop()!;
    for (const p of g.states[si]!.prods) {
      if (p.next < 0) continue;
      const m = isEntry(p) ? Math.min(n + 1, cap + 1) : n;
      if (isEntry(p)) before[p.next]!.add(si);
      if (!counts[p.next]!.has(m)) {
        counts[p.next]!.add(m);
        work.push([p.next, m]);
      }
    }
  }
  let rules = 0;
  g.states.forEach((st, si) => {
    if (!counts[si]!.has(cap) || !before[si]!.size) return;
    let alt: State;
    if (st.prods.some(isEntry)) {
      const prods = st.prods.filter((p) => !isEntry(p));
      alt = { bits: bitsFor(prods.length + 1), prods, eeFirst: st.eeFirst, l2bits: st.l2bits, capRule: null };
    } else {
      // Every state the last entry comes from must be this state plus SE(entry) at one and the same code.
      const prevs = [...before[si]!].map((pi) => g.states[pi]!);
      const prev = prevs[0]!;
      const entryCode = prev.prods.findIndex(isEntry);
      const isLoopOfThis = (s: State): boolean => {
        const rest = s.prods.filter((p) => !isEntry(p));
        return s.prods.findIndex(isEntry) === entryCode && rest.length === st.prods.length && rest.every((p, i) => sameProduction(p, st.prods[i]!));
      };
      if (!prevs.every(isLoopOfThis)) throw new Error(`cbexigen cap ${g.name}.${key}: the state after the last entry is not the loop state without SE(${key})`);
      const prods = prev.prods.map((p) => (isEntry(p) ? { ...p, kind: P_OVER } : p));
      alt = { bits: prev.bits, prods, eeFirst: prev.eeFirst, l2bits: prev.l2bits, capRule: null };
    }
    st.capRule = { key, cap, alt };
    rules++;
  });
  if (rules === 0) throw new Error(`cbexigen cap ${g.name}.${key}=${cap}: no state holds exactly ${cap} entries`);
}

// ------------------------------------------------------------------------------------------------ decoding

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function withOrder(obj: ExiObject, order: string[] | undefined): ExiObject {
  if (order && order.length > 1) Object.defineProperty(obj, EXI_CHILD_ORDER, { value: order, enumerable: false, writable: true, configurable: true });
  return obj;
}

export class Decoder {
  private global: string[] | undefined;
  private local: (string[] | undefined)[] | undefined;
  depth = 0;
  /** Read capped lists holding exactly their cap the cbexigen way (the second reading, see withCapEnds). */
  capEnds = false;
  /** A capped list held exactly its cap (standard reading): a failure or an early end may be that codec's list end. */
  capSeen = false;

  constructor(private readonly r: BitReader, readonly maxDepth: number) {}

  /** Enumeration value by index (compiled decoders). */
  en(values: string[], i: number): string {
    const v = values[i];
    if (v === undefined) throw exiError('EXI_INVALID', 'enumeration index out of range', { index: i });
    return v;
  }

  /** Adds a one-or-many child (compiled decoders). */
  add1m(o: ExiObject, key: string, child: ExiValue): void {
    const prev = o[key];
    if (prev === undefined) o[key] = child;
    else if (Array.isArray(prev)) prev.push(child);
    else o[key] = [prev, child];
  }

  element(g: Grammar, name: number): ExiValue {
    if (++this.depth > this.maxDepth) throw exiError('EXI_LIMIT', 'element nesting too deep', { maxDepth: this.maxDepth });
    const r = this.r;
    let obj: ExiObject | undefined;
    let simpleValue: ExiValue | undefined;
    const order: string[] | undefined = g.ordered ? [] : undefined;
    let state = g.states[0]!;
    for (;;) {
      const rule = state.capRule;
      if (rule !== null) {
        const list = obj?.[rule.key];
        if (list !== undefined && (list as ExiValue[]).length === rule.cap) {
          if (this.capEnds) state = rule.alt;
          else this.capSeen = true;
        }
      }
      const code = state.bits === 0 ? 0 : r.readBits(state.bits);
      const prods = state.prods;
      if (code >= prods.length) {
        if (code > prods.length) throw exiError('EXI_INVALID', 'event code out of range', { grammar: g.name, code });
        // Second level: only the undeclared EE can be represented in the message shape.
        const c2 = r.readBits(state.l2bits);
        if (c2 === 0 && !state.eeFirst) break;
        throw exiError('EXI_UNSUPPORTED', 'undeclared event (non-strict second level) not supported', { grammar: g.name, code: `${code}.${c2}` });
      }
      const p = prods[code]!;
      switch (p.kind) {
        case P_EE:
          this.depth--;
          if (g.simple) {
            if (simpleValue === undefined) throw exiError('EXI_INVALID', 'simple element without value', { grammar: g.name });
            return simpleValue;
          }
          return withOrder(obj ?? {}, order);
        case P_AT:
          (obj ??= {})[p.key] = this.value(p.dt!, p.name);
          break;
        case P_CH: {
          const v = this.value(p.dt!, name);
          if (g.simple) simpleValue = v;
          else (obj ??= {})[CONTENT] = v;
          break;
        }
        case P_SE: {
          const child = this.element(p.grammar!, p.name);
          obj ??= {};
          order?.push(p.key);
          if (p.array) {
            const arr = obj[p.key];
            if (arr === undefined) obj[p.key] = [child];
            else (arr as ExiValue[]).push(child);
          } else if (p.oneOrMany) {
            const prev = obj[p.key];
            if (prev === undefined) obj[p.key] = child;
            else if (Array.isArray(prev)) prev.push(child);
            else obj[p.key] = [prev, child];
          } else obj[p.key] = child;
          break;
        }
        case P_OVER:
          throw exiError('EXI_INVALID', 'more entries than the schema allows', { grammar: g.name, element: p.key });
        default:
          throw exiError('EXI_UNSUPPORTED', 'wildcard or mixed content not supported', { grammar: g.name });
      }
      state = g.states[p.next]!;
    }
    // Undeclared EE.
    this.depth--;
    if (g.simple && simpleValue === undefined) {
      // EXIficient ends an empty element this way (no characters → no CH): for strings and binary that is the
      // empty value; other types have no empty value.
      const dt = g.states[0]!.prods[0]!.dt!;
      if (dt.kind === Dt.Str || dt.kind === Dt.Bin) return '';
      throw exiError('EXI_INVALID', 'element of a simple type ended without a value', { grammar: g.name });
    }
    return g.simple ? simpleValue! : withOrder(obj ?? {}, order);
  }

  value(dt: Datatype, name: number): ExiValue {
    const r = this.r;
    switch (dt.kind) {
      case Dt.NBit:
        return r.readBits(dt.bits) + dt.min;
      case Dt.Bool:
        return r.readBit();
      case Dt.Enum: {
        const i = r.readBits(dt.bits);
        const v = dt.values[i];
        if (v === undefined) throw exiError('EXI_INVALID', 'enumeration index out of range', { index: i });
        return v;
      }
      case Dt.UInt:
        return r.readUnsigned(dt.groups);
      case Dt.Int: {
        const neg = r.readBit();
        const m = r.readUnsigned(dt.groups);
        if (!neg) return m;
        return typeof m === 'bigint' ? -m - 1n : m + 1 > Number.MAX_SAFE_INTEGER ? -BigInt(m) - 1n : -m - 1;
      }
      case Dt.Bin: {
        const len = r.readLength(r.remainingBits() >>> 3);
        let s = '';
        for (let i = 0; i < len; i++) s += HEX[r.readByte()]!;
        return s;
      }
      case Dt.Str:
        return this.string(name);
    }
  }

  private string(name: number): string {
    const r = this.r;
    const L = r.readLength((r.remainingBits() >>> 3) + 2);
    if (L === 0) {
      const table = this.local?.[name];
      const n = table ? table.length : 0;
      const i = r.readBits(bitsFor(n));
      if (!table || i >= n) throw exiError('EXI_INVALID', 'string table local hit out of range', { index: i });
      return table[i]!;
    }
    if (L === 1) {
      const global = this.global ?? [];
      const n = global.length;
      const i = r.readBits(bitsFor(n));
      if (i >= n) throw exiError('EXI_INVALID', 'string table global hit out of range', { index: i });
      return global[i]!;
    }
    const len = L - 2;
    if (len * 8 > r.remainingBits()) throw exiError('EXI_TRUNCATED', 'string longer than the stream', { len });
    let s = '';
    for (let i = 0; i < len; i++) {
      const b = r.readByte();
      if (b < 0x80) {
        s += String.fromCharCode(b);
        continue;
      }
      // Multi-group code point: continue the 7-bit groups (at most 3 for ≤ 0x10FFFF).
      let cp = b & 0x7f;
      let mult = 128;
      for (let g = 1; ; g++) {
        if (g > 2) throw exiError('EXI_LIMIT', 'code point too long');
        const c = r.readByte();
        cp += (c & 0x7f) * mult;
        if ((c & 0x80) === 0) break;
        mult *= 128;
      }
      if (cp > 0x10ffff) throw exiError('EXI_INVALID', 'code point out of range', { cp });
      s += cp < 0x10000 ? String.fromCharCode(cp) : String.fromCodePoint(cp);
    }
    if (len > 0) {
      // Every string miss enters the global and the local (per qname) value partitions (EXI §7.3.3).
      (this.global ??= []).push(s);
      ((this.local ??= [])[name] ??= []).push(s);
    }
    return s;
  }
}

function readHeader(r: BitReader): void {
  const h = r.readBits(8);
  if (h !== 0x80) throw exiError('EXI_HEADER', 'unsupported EXI header (expected 0x80)', { header: h });
}

const DEFAULT_MAX_DEPTH = 64;

/** How often the compiled codecs handed over to the interpreter (observability; tests check the fast path is used). */
export const fastPathStats = { decodeFallbacks: 0, encodeFallbacks: 0 };

/** Documents decoded the cbexigen way (a charger on that codec is on the line). */
export const capEndStats = { tolerated: 0 };

/**
 * What the last decode saw (decoding is synchronous, so one record serves): whether a capped list held exactly its
 * cap (standard reading only) and whether only zero bits follow the document (computed only when it matters).
 */
const seen = { capSeen: false, cleanEnd: true };

function decodeWith(s: CompiledSchema, list: CompiledSchema['doc'], bits: number, fragment: boolean, bytes: Uint8Array, opts: DecodeOptions): ExiObject {
  if (!(bytes instanceof Uint8Array)) throw exiError('EXI_INVALID', 'input is not bytes');
  const fast = fastOf(s);
  if (fast) {
    try {
      const doc = decodeRoot(list, bits, fragment, bytes, opts, fast, false);
      if (!seen.capSeen || seen.cleanEnd || opts.strictArrayEnds) return doc;
    } catch {
      // The interpreter gives the exact result or the typed error.
      fastPathStats.decodeFallbacks++;
    }
  }
  return withCapEnds(list, bits, fragment, bytes, opts, fast);
}

/**
 * The interpreter's standard reading, then the cbexigen full-list rule (README "Charger codecs that end full lists
 * wrongly"): the standard reading decides unless a capped list held exactly its cap and the standard reading failed
 * or ended with non-zero bits still to come (a standard encoder ends at ED with zero padding; that codec's extra or
 * missing code bit makes the standard reading derail or stop early). Then the stream is read once more the cbexigen
 * way — compiled, the interpreter if that falls back — and that reading is taken only if it decodes and ends in
 * zero padding; otherwise the standard result or error stands.
 */
function withCapEnds(list: CompiledSchema['doc'], bits: number, fragment: boolean, bytes: Uint8Array, opts: DecodeOptions, fast: FastCodec | null): ExiObject {
  let doc: ExiObject | undefined;
  let failure: unknown;
  try {
    doc = decodeRoot(list, bits, fragment, bytes, opts, null, false);
  } catch (err) {
    failure = err;
  }
  if (!seen.capSeen || opts.strictArrayEnds || (doc !== undefined && seen.cleanEnd)) {
    if (doc === undefined) throw failure;
    return doc;
  }
  for (const codec of fast ? [fast, null] : [null]) {
    try {
      const alt = decodeRoot(list, bits, fragment, bytes, opts, codec, true);
      if (!seen.cleanEnd) break;
      capEndStats.tolerated++;
      return alt;
    } catch {
      if (codec) fastPathStats.decodeFallbacks++;
    }
  }
  if (doc === undefined) throw failure;
  return doc;
}

function decodeRoot(list: CompiledSchema['doc'], bits: number, fragment: boolean, bytes: Uint8Array, opts: DecodeOptions, fast: FastCodec | null, capEnds: boolean): ExiObject {
  const r = new BitReader(bytes);
  readHeader(r);
  const d = new Decoder(r, opts.maxDepth ?? DEFAULT_MAX_DEPTH);
  d.capEnds = capEnds;
  seen.capSeen = false;
  seen.cleanEnd = true;
  try {
    const doc = decodeBody(d, r, list, bits, fragment, fast);
    if (d.capSeen || capEnds) seen.cleanEnd = onlyZeroBitsLeft(r);
    return doc;
  } finally {
    seen.capSeen = d.capSeen;
  }
}

function onlyZeroBitsLeft(r: BitReader): boolean {
  for (let left = r.remainingBits(); left > 0; left = r.remainingBits()) {
    if (r.readBits(Math.min(24, left)) !== 0) return false;
  }
  return true;
}

function decodeBody(d: Decoder, r: BitReader, list: CompiledSchema['doc'], bits: number, fragment: boolean, fast: FastCodec | null): ExiObject {
  const code = r.readBits(bits);
  const e = list[code];
  if (!e) throw exiError(code === list.length ? 'EXI_UNSUPPORTED' : 'EXI_INVALID', 'root element code not declared', { code });
  if (!e.grammar) throw exiError('EXI_INVALID', 'abstract root element', { element: e.key });
  const value = fast ? (fast.dec[e.grammar.index]!(d, r, e.name) as ExiValue) : d.element(e.grammar, e.name);
  if (fragment) {
    const end = r.readBits(bits);
    if (end !== list.length + 1) throw exiError('EXI_UNSUPPORTED', 'fragment with more than one element', { code: end });
  }
  // DocEnd: ED has a zero-bit code; trailing bytes are ignored.
  return { [e.key]: value };
}

export function fastOf(s: CompiledSchema): FastCodec | null {
  if (s.fast === undefined) {
    try {
      s.fast = compileFast(s.grammars);
    } catch {
      s.fast = null; // e.g. code generation disallowed: the interpreter serves alone
    }
  }
  return s.fast;
}

export function decodeDocument(s: CompiledSchema, bytes: Uint8Array, opts: DecodeOptions = {}): ExiObject {
  return decodeWith(s, s.doc, s.docBits, false, bytes, opts);
}

export function decodeFragment(s: CompiledSchema, bytes: Uint8Array, opts: DecodeOptions = {}): ExiObject {
  return decodeWith(s, s.frag, s.fragBits, true, bytes, opts);
}

/** The interpreter alone (tests compare it with the compiled codecs), with the same cbexigen full-list rule. */
export function decodeDocumentInterpreted(s: CompiledSchema, bytes: Uint8Array, opts: DecodeOptions = {}): ExiObject {
  return withCapEnds(s.doc, s.docBits, false, bytes, opts, null);
}

// ------------------------------------------------------------------------------------------------ encoding

const MAX_SLOTS = 256;
const SLOT_COUNTS: Int32Array[] = [];

export class Encoder {
  private global: Map<string, number> | undefined;
  private local: (Map<string, number> | undefined)[] | undefined;
  depth = 0;
  /** Items consumed per field slot, one row per nesting depth, shared by all (synchronous) encodes. */
  private readonly counts = SLOT_COUNTS;
  /** Keys from the root to the element being encoded, for error paths. */
  private readonly path: (string | number)[] = [];

  constructor(private readonly w: BitWriter, private readonly opts: EncodeOptions) {}

  pushRoot(key: string): void {
    this.path.push(key);
  }

  /** Back to a fresh state (the compiled path reuses one encoder per writer). */
  resetState(): this {
    this.depth = 0;
    if (this.path.length !== 0) this.path.length = 0;
    if (this.global) this.global = undefined;
    if (this.local) this.local = undefined;
    return this;
  }

  private fail(message: string, details: Record<string, unknown> = {}): never {
    throw exiError('EXI_ENCODE_INVALID', message, { path: this.path.map((k) => (typeof k === 'number' ? `[${k}]` : k)).join('.').replace(/\.\[/g, '['), ...details });
  }

  element(g: Grammar, name: number, value: unknown): void {
    const depth = ++this.depth;
    if (depth > DEFAULT_MAX_DEPTH) this.fail('message nested too deep');
    const w = this.w;
    if (g.simple) {
      const s0 = g.states[0]!;
      w.writeBits(s0.bits, 0);
      this.value(s0.prods[0]!.dt!, name, value);
      w.writeBits(g.states[1]!.bits, 0);
      this.depth--;
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) this.fail('expected an object', { type: g.name });
    const obj = value as Record<string, unknown>;
    let counts = this.counts[depth];
    if (!counts) counts = this.counts[depth] = new Int32Array(MAX_SLOTS);
    counts.fill(0, 0, g.slotCount);
    let consumedKeys = 0;
    let state = g.states[0]!;
    const hint = g.ordered ? obj[EXI_CHILD_ORDER as unknown as string] : undefined;
    let order = Array.isArray(hint) ? (hint as unknown[]) : undefined;
    let oi = 0;
    for (;;) {
      const prods = state.prods;
      let chosen: Production | undefined;
      let chosenIdx = -1;
      let ee = -1;
      let item: unknown;
      // Document order first (EXI_CHILD_ORDER): skip entries with nothing left to encode, take the next one's SE.
      let want: unknown;
      if (order) {
        while (oi < order.length && !this.remaining(g, obj, counts, order[oi])) oi++;
        want = oi < order.length ? order[oi] : undefined;
      }
      for (let pass = want === undefined ? 1 : 0; pass < 2 && !chosen; pass++) for (let i = 0; i < prods.length; i++) {
        const p = prods[i]!;
        const kind = p.kind;
        if (kind === P_EE) {
          if (ee < 0) ee = i;
          continue;
        }
        if (kind !== P_AT && kind !== P_SE && kind !== P_CH) continue;
        if (pass === 0 && kind === P_SE && p.key !== want) continue;
        const v = obj[p.key];
        if (v === undefined) continue;
        const n = counts[p.slot]!;
        if (p.array || (p.oneOrMany && Array.isArray(v))) {
          if (!Array.isArray(v)) {
            this.path.push(p.key);
            this.fail('expected an array');
          }
          if (n < v.length) {
            chosen = p;
            chosenIdx = i;
            item = v[n];
            this.path.push(p.key, n);
            if (n === v.length - 1) consumedKeys++;
            break;
          }
        } else if (n === 0) {
          chosen = p;
          chosenIdx = i;
          item = v;
          this.path.push(p.key);
          consumedKeys++;
          break;
        }
      }
      if (want !== undefined) {
        // The hint's next child is not allowed here (an edited object): schema order from here on.
        if (chosen && chosen.kind === P_SE && chosen.key === want) oi++;
        else if (chosen?.kind === P_SE || !chosen) order = undefined;
      }
      if (!chosen) {
        if (ee >= 0) {
          w.writeBits(state.bits, ee);
          break;
        }
        if (this.opts.undeclaredEnd && !state.eeFirst) {
          w.writeBits(state.bits, prods.length);
          w.writeBits(state.l2bits, 0);
          break;
        }
        this.fail('missing mandatory content', { type: g.name, expected: prods.filter((p) => p.kind === P_SE || p.kind === P_AT || p.kind === P_CH).map((p) => p.key) });
      }
      w.writeBits(state.bits, chosenIdx);
      counts[chosen.slot]!++;
      if (chosen.kind === P_SE) this.element(chosen.grammar!, chosen.name, item);
      else this.value(chosen.dt!, chosen.kind === P_AT ? chosen.name : name, item);
      this.path.pop();
      if (chosen.array || (chosen.oneOrMany && Array.isArray(obj[chosen.key]))) this.path.pop();
      state = g.states[chosen.next]!;
    }
    // Everything given must have been encoded: unknown keys or surplus array items are errors, not silent drops.
    if (Object.keys(obj).length !== consumedKeys) {
      for (const k in obj) {
        const v = obj[k];
        if (v === undefined) continue;
        const slot = g.slotOf.get(k);
        const n = slot === undefined ? 0 : counts[slot]!;
        if (n === 0 || (Array.isArray(v) && n < v.length)) {
          this.path.push(k);
          this.fail(n === 0 ? 'field not allowed here' : 'more items than the schema allows here', { type: g.name });
        }
      }
    }
    this.depth--;
  }

  /** Whether `key` of `obj` still has an item to encode (EXI_CHILD_ORDER entries that do not are skipped). */
  private remaining(g: Grammar, obj: Record<string, unknown>, counts: Int32Array, key: unknown): boolean {
    if (typeof key !== 'string') return false;
    const v = obj[key];
    const slot = g.slotOf.get(key);
    if (v === undefined || slot === undefined) return false;
    return Array.isArray(v) ? counts[slot]! < v.length : counts[slot] === 0;
  }

  value(dt: Datatype, name: number, v: unknown): void {
    const w = this.w;
    switch (dt.kind) {
      case Dt.NBit: {
        const n = this.integer(v);
        const off = typeof n === 'bigint' ? Number(n) - dt.min : n - dt.min;
        if (!(off >= 0 && off <= dt.max - dt.min)) this.fail('integer out of the type range', { value: String(v), min: dt.min, max: dt.max });
        w.writeBits(dt.bits, off);
        return;
      }
      case Dt.Bool:
        if (v === 1 || v === true) w.writeBits(1, 1);
        else if (v === 0 || v === false) w.writeBits(1, 0);
        else this.fail('expected a boolean (0/1)');
        return;
      case Dt.Enum: {
        const i = typeof v === 'string' ? dt.index.get(v) : undefined;
        if (i === undefined) this.fail('not a value of the enumeration', { value: String(v) });
        w.writeBits(dt.bits, i);
        return;
      }
      case Dt.UInt: {
        const n = this.integer(v);
        if (n < 0 || (n > 127 && bitLength(n) > dt.groups * 7)) this.fail('unsigned integer out of range', { value: String(v) });
        w.writeUnsigned(n);
        return;
      }
      case Dt.Int: {
        const n = this.integer(v);
        if (n < 0) {
          w.writeBits(1, 1);
          const m = typeof n === 'bigint' ? -n - 1n : -n - 1;
          if (bitLength(m) > dt.groups * 7) this.fail('integer out of range');
          w.writeUnsigned(m);
        } else {
          if (n > 127 && bitLength(n) > dt.groups * 7) this.fail('integer out of range');
          w.writeBits(1, 0);
          w.writeUnsigned(n);
        }
        return;
      }
      case Dt.Bin: {
        if (typeof v === 'string') {
          const len = v.length >>> 1;
          if (v.length & 1) this.fail('binary hex string of odd length');
          if (len > dt.maxLength && !this.opts.ignoreLengthFacets) this.fail('binary longer than the schema allows', { length: len, maxLength: dt.maxLength });
          w.writeUnsigned(len);
          for (let i = 0; i < len; i++) {
            const hi = HEX_VALUE[v.charCodeAt(2 * i)] ?? -1;
            const lo = HEX_VALUE[v.charCodeAt(2 * i + 1)] ?? -1;
            if (hi < 0 || lo < 0) this.fail('binary must be a hex string or bytes');
            w.writeByte((hi << 4) | lo);
          }
          return;
        }
        if (!(v instanceof Uint8Array)) this.fail('binary must be a hex string or bytes');
        if (v.length > dt.maxLength && !this.opts.ignoreLengthFacets) this.fail('binary longer than the schema allows', { length: v.length, maxLength: dt.maxLength });
        w.writeUnsigned(v.length);
        for (let i = 0; i < v.length; i++) w.writeByte(v[i]!);
        return;
      }
      case Dt.Str:
        if (typeof v !== 'string') this.fail('expected a string');
        this.string(name, v, dt.maxLength);
        return;
    }
  }

  private integer(v: unknown): number | bigint {
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
    if (typeof v === 'bigint') return v;
    if (typeof v === 'string' && /^-?\d+$/.test(v)) {
      const b = BigInt(v);
      return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
    }
    return this.fail('expected an integer', { value: String(v) });
  }

  private string(name: number, s: string, maxLength: number): void {
    const w = this.w;
    if (s.length > maxLength && !this.opts.ignoreLengthFacets && [...s].length > maxLength) this.fail('string longer than the schema allows', { length: [...s].length, maxLength });
    if (this.opts.valueHits && s.length > 0) {
      const global = (this.global ??= new Map());
      const locals = (this.local ??= []);
      const local = locals[name];
      const li = local?.get(s);
      if (li !== undefined) {
        w.writeUnsigned(0);
        w.writeBits(bitsFor(local!.size), li);
        return;
      }
      const gi = global.get(s);
      if (gi !== undefined) {
        w.writeUnsigned(1);
        w.writeBits(bitsFor(global.size), gi);
        return;
      }
      global.set(s, global.size);
      const m = (locals[name] ??= new Map());
      m.set(s, m.size);
    }
    // Length in code points, then each code point.
    let ascii = true;
    for (let i = 0; i < s.length; i++) {
      if (s.charCodeAt(i) >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      w.writeUnsigned(s.length + 2);
      w.writeAscii(s);
      return;
    }
    let count = s.length;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d < 0xe000) {
          count--;
          i++;
        }
      }
    }
    w.writeUnsigned(count + 2);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) w.writeByte(c);
      else {
        const cp = s.codePointAt(i)!;
        if (cp > 0xffff) i++;
        w.writeUnsigned(cp);
      }
    }
  }
}

const HEX_VALUE: number[] = [];
for (let i = 0; i < 16; i++) {
  HEX_VALUE['0123456789abcdef'.charCodeAt(i)] = i;
  HEX_VALUE['0123456789ABCDEF'.charCodeAt(i)] = i;
}

function bitLength(n: number | bigint): number {
  if (typeof n === 'bigint') return n <= 0n ? 0 : n.toString(2).length;
  return n <= 0 ? 0 : Math.floor(Math.log2(n)) + 1;
}

let sharedWriter: BitWriter | undefined;
const defaultEncoders = new WeakMap<BitWriter, Encoder>();
const NO_OPTIONS: EncodeOptions = Object.freeze({});

function encoderFor(w: BitWriter): Encoder {
  let e = defaultEncoders.get(w);
  if (!e) {
    e = new Encoder(w, NO_OPTIONS);
    defaultEncoders.set(w, e);
  }
  return e;
}

function encodeWith(s: CompiledSchema, list: CompiledSchema['doc'], byKey: Map<string, number>, bits: number, fragment: boolean, message: unknown, opts: EncodeOptions, interpretOnly = false): Uint8Array {
  if (typeof message !== 'object' || message === null) throw exiError('EXI_ENCODE_INVALID', 'message must be an object { ElementName: content }');
  let key: string | undefined;
  let roots = 0;
  for (const k in message) {
    if ((message as Record<string, unknown>)[k] === undefined) continue;
    key = k;
    roots++;
  }
  if (roots !== 1 || key === undefined) throw exiError('EXI_ENCODE_INVALID', 'message must have exactly one root element', { keys: Object.keys(message) });
  const idx = byKey.get(key);
  if (idx === undefined) throw exiError('EXI_UNKNOWN_SCHEMA', 'no such root element in this schema', { element: key });
  const e = list[idx]!;
  const content = (message as Record<string, unknown>)[key];
  // Encoding is synchronous: one writer is reused (reset, not reallocated) across calls.
  const w = sharedWriter ?? new BitWriter();
  sharedWriter = undefined;
  try {
    const fast = interpretOnly || opts.valueHits || opts.undeclaredEnd ? null : fastOf(s);
    if (fast) {
      try {
        w.reset();
        w.writeBits(8, 0x80);
        w.writeBits(bits, idx);
        const enc = opts.ignoreLengthFacets ? new Encoder(w, opts) : encoderFor(w);
        fast.enc[e.grammar!.index]!(enc.resetState(), w, content, e.name);
        if (fragment) w.writeBits(bits, list.length + 1);
        return w.finish();
      } catch {
        // FALLBACK or any error: the interpreter gives the exact result or the typed error (with the path).
        fastPathStats.encodeFallbacks++;
      }
    }
    w.reset();
    w.writeBits(8, 0x80);
    w.writeBits(bits, idx);
    const enc = new Encoder(w, opts);
    enc.pushRoot(key);
    enc.element(e.grammar!, e.name, content);
    if (fragment) w.writeBits(bits, list.length + 1);
    return w.finish();
  } finally {
    sharedWriter = w;
  }
}

export function encodeDocument(s: CompiledSchema, message: unknown, opts: EncodeOptions = {}): Uint8Array {
  return encodeWith(s, s.doc, s.docByKey, s.docBits, false, message, opts);
}

export function encodeFragmentWith(s: CompiledSchema, message: unknown, opts: EncodeOptions = {}): Uint8Array {
  return encodeWith(s, s.frag, s.fragByKey, s.fragBits, true, message, opts);
}

/** The interpreter alone (tests compare it with the compiled codecs). */
export function encodeDocumentInterpreted(s: CompiledSchema, message: unknown, opts: EncodeOptions = {}): Uint8Array {
  return encodeWith(s, s.doc, s.docByKey, s.docBits, false, message, opts, true);
}
