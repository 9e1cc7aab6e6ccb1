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
  /**
   * 1: the children may come in more than one order (`childrenInterleave`), so the message shape — one property per
   * name — does not determine the event sequence: the decoder records the document order, the encoder follows it.
   */
  o?: 1;
}

/**
 * Whether a content model lets two child names come in either order (a repeated choice, e.g. xmldsig KeyInfo and
 * X509Data): some reachable state offers SE(a) before SE(b) in event-code order while SE(a) is still reachable after
 * SE(b). An encoder that walks the productions in order would then put every `a` before a `b` that came first.
 */
export function childrenInterleave(states: StateJson[]): boolean {
  const targets = (st: StateJson): number[] => st.slice(1).map((p) => (p as number[])[TARGET_INDEX[(p as number[])[0]!]!]).filter((t): t is number => t !== undefined);
  const reachable = new Map<number, Set<number>>(); // state → child names offered in it or after it
  const namesFrom = (start: number): Set<number> => {
    const cached = reachable.get(start);
    if (cached) return cached;
    const names = new Set<number>();
    const seen = new Set<number>([start]);
    for (const todo = [start]; todo.length; ) {
      const st = states[todo.pop()!]!;
      for (const p of st.slice(1) as number[][]) if (p[0] === P_SE) names.add(p[1]!);
      for (const t of targets(st)) if (!seen.has(t)) {
        seen.add(t);
        todo.push(t);
      }
    }
    reachable.set(start, names);
    return names;
  };
  for (const st of states) {
    const se = (st.slice(1) as number[][]).filter((p) => p[0] === P_SE);
    for (let j = 1; j < se.length; j++) {
      const after = namesFrom(se[j]![3]!);
      for (let i = 0; i < j; i++) if (se[i]![1] !== se[j]![1] && after.has(se[i]![1]!)) return true;
    }
  }
  return false;
}

/**
 * Emitted form of a grammar's states: unrolled repetitions (maxOccurs="1024") make long runs of states that differ
 * only in "go to the next state". A negative target means "this state + |t|"; `[RUN, k, state]` stands for k copies.
 */
export const RUN = -1;
export type PackedStateJson = StateJson | [typeof RUN, number, StateJson];

const TARGET_INDEX: Record<number, number> = { [P_AT]: 3, [P_SE]: 3, [P_SEANY]: 1, [P_CHU]: 1, [P_CH]: 2 };

export function packStates(states: StateJson[]): PackedStateJson[] {
  const rel = states.map(([l2, ...prods], i) => [l2, ...prods.map((p) => {
    const q = [...p];
    const ti = TARGET_INDEX[q[0]!];
    if (ti !== undefined && q[ti]! > i) q[ti] = i - q[ti]!;
    return q;
  })] as StateJson);
  const out: PackedStateJson[] = [];
  for (let i = 0; i < rel.length; ) {
    const key = JSON.stringify(rel[i]);
    let k = 1;
    while (i + k < rel.length && JSON.stringify(rel[i + k]) === key) k++;
    out.push(k === 1 ? rel[i]! : [RUN, k, rel[i]!]);
    i += k;
  }
  return out;
}

export function unpackStates(packed: PackedStateJson[]): StateJson[] {
  const out: StateJson[] = [];
  const add = (st: StateJson): void => {
    const i = out.length;
    const [l2, ...prods] = st;
    out.push([l2, ...prods.map((p) => {
      const ti = TARGET_INDEX[p[0]!];
      if (ti === undefined || p[ti]! >= 0) return p;
      const q = [...p];
      q[ti] = i - q[ti]!;
      return q;
    })]);
  };
  for (const e of packed) {
    if (e[0] === RUN) for (let k = 0; k < (e[1] as number); k++) add(e[2] as StateJson);
    else add(e as StateJson);
  }
  return out;
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

/** Expands the emitted (packed) tables of a generated module. */
export function unpackTables(packed: Omit<SchemaTablesJson, 'grammars'> & { grammars: { n: string; s: PackedStateJson[]; o?: 1 }[] }): SchemaTablesJson {
  return { ...packed, grammars: packed.grammars.map((g) => ({ n: g.n, s: unpackStates(g.s), ...(g.o ? { o: g.o } : {}) })) };
}
