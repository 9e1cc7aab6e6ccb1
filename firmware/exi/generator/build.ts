import { childrenInterleave, P_AT, P_CH, P_CHU, P_EE, P_SE, P_SEANY, type DatatypeJson, type GrammarJson, type ProductionJson, type SchemaTablesJson, type StateJson } from '../tables.ts';
import { qkey, qlocal, quri, XS, type AttrUse, type ComplexTypeDef, type ElementDecl, type Particle, type SchemaSet, type SimpleTypeDef, type TypeDef } from './xsd.ts';

/**
 * Builds the EXI schema-informed grammars (W3C EXI 1.0 §8.5.4) of a schema set.
 *
 * Content models become Glushkov automata: every element/wildcard occurrence is a position, bounded repetitions
 * are unrolled (as the spec's proto-grammars are), and a subset construction gives the normalized, deterministic
 * grammar. Attribute uses are prepended as states 0..A (sorted by qname), each also offering the content's first
 * productions when the remaining attributes are optional.
 */

/** Description of a child field for TypeScript type generation. */
export interface FieldInfo {
  key: string; // JSON key (local name)
  grammar: number; // grammar of the child
  array: boolean;
  /** Repeated, but a single occurrence is a bare value (see ONE_OR_MANY). */
  oneOrMany?: boolean;
  required: boolean;
  attribute: boolean;
  datatype?: number; // for attributes
  maxOccurs: number;
}

export interface GrammarInfo {
  json: GrammarJson;
  typeKey: string;
  simpleDatatype?: number; // for simple-type grammars / simple content
  simpleContent: boolean;
  fields: FieldInfo[];
  named: boolean;
}

export interface BuiltSchema {
  tables: SchemaTablesJson;
  grammars: GrammarInfo[];
  /** Named simple types (local name → datatype index) for TS aliases. */
  datatypeNames: Map<number, string>;
  docElements: { name: string; grammar: number }[];
}

const INT_RANGES: Record<string, [bigint | null, bigint | null]> = {
  integer: [null, null],
  nonNegativeInteger: [0n, null],
  positiveInteger: [1n, null],
  nonPositiveInteger: [null, 0n],
  negativeInteger: [null, -1n],
  long: [-(2n ** 63n), 2n ** 63n - 1n],
  int: [-(2n ** 31n), 2n ** 31n - 1n],
  short: [-32768n, 32767n],
  byte: [-128n, 127n],
  unsignedLong: [0n, 2n ** 64n - 1n],
  unsignedInt: [0n, 2n ** 32n - 1n],
  unsignedShort: [0n, 65535n],
  unsignedByte: [0n, 255n],
};
/**
 * Repeated children the message shape carries as a single value unless they really repeat ("one or many"): the
 * public vectors (libcbv2g's structures, cbexigen sizes these arrays to one) show `Transforms.Transform` as an object.
 */
const ONE_OR_MANY = new Set(['TransformsType/Transform']);

const STRING_TYPES = new Set(['string', 'normalizedString', 'token', 'anyURI', 'ID', 'IDREF', 'NCName', 'Name', 'NMTOKEN', 'language', 'anySimpleType']);

interface Position {
  id: number;
  wildcard: boolean;
  nameKey: string; // qname key or '*'
  decl?: ElementDecl; // resolved declaration (for its type)
  order: number; // schema order of the particle
  sub: number; // rank within a substitution group
}

type Ast =
  | { t: 'sym'; p: Position }
  | { t: 'seq'; items: Ast[] }
  | { t: 'alt'; items: Ast[] }
  | { t: 'opt'; x: Ast }
  | { t: 'star'; x: Ast }
  | { t: 'chain'; items: Ast[]; min: number } // bounded repetition of a non-nullable term, unrolled
  | { t: 'eps' };

export function buildSchema(set: SchemaSet): BuiltSchema {
  const names: [string, string][] = [];
  const nameIdx = new Map<string, number>();
  const name = (key: string): number => {
    let i = nameIdx.get(key);
    if (i === undefined) {
      i = names.length;
      names.push([quri(key), qlocal(key)]);
      nameIdx.set(key, i);
    }
    return i;
  };
  const datatypes: DatatypeJson[] = [];
  const dtIdx = new Map<string, number>();
  const datatypeNames = new Map<number, string>();
  const datatype = (dt: DatatypeJson, typeName?: string): number => {
    const k = JSON.stringify(dt);
    let i = dtIdx.get(k);
    if (i === undefined) {
      i = datatypes.length;
      datatypes.push(dt);
      dtIdx.set(k, i);
    }
    if (typeName && !datatypeNames.has(i)) datatypeNames.set(i, typeName);
    return i;
  };

  // --- simple types → EXI datatype representation
  const simpleDatatype = (key: string | undefined, anon?: SimpleTypeDef): number => {
    let enumeration: string[] | undefined;
    let lo: bigint | null | undefined;
    let hi: bigint | null | undefined;
    let maxLen: number | undefined;
    let t: SimpleTypeDef | undefined = anon;
    let k = key;
    let namedAs: string | undefined = key && !key.startsWith(`${XS}|`) ? qlocal(key) : undefined;
    for (let guard = 0; guard < 50; guard++) {
      if (!t) {
        if (!k) throw new Error('simple type without base');
        if (k.startsWith(`${XS}|`)) break;
        const def = set.types.get(k);
        if (!def || def.kind !== 'simple') throw new Error(`not a simple type: ${k}`);
        t = def;
      }
      if (!enumeration && t.enumeration.length) enumeration = t.enumeration;
      const ml = t.length ?? t.maxLength;
      if (ml !== undefined && (maxLen === undefined || ml < maxLen)) maxLen = ml;
      const mi = t.minInclusive ?? (t.minExclusive !== undefined ? t.minExclusive + 1n : undefined);
      const ma = t.maxInclusive ?? (t.maxExclusive !== undefined ? t.maxExclusive - 1n : undefined);
      if (mi !== undefined && (lo === undefined || lo === null || mi > lo)) lo = mi;
      if (ma !== undefined && (hi === undefined || hi === null || ma < hi)) hi = ma;
      if (t.anonBase) {
        t = t.anonBase;
        k = undefined;
      } else {
        k = t.baseKey;
        t = undefined;
      }
    }
    if (!k || !k.startsWith(`${XS}|`)) throw new Error(`cannot resolve builtin for ${key}`);
    const builtin = qlocal(k);
    if (enumeration) return datatype(['e', ...enumeration], namedAs);
    // Length facets are carried so that the encoder refuses what the schema forbids (strict in what we send).
    if (STRING_TYPES.has(builtin)) return datatype(maxLen === undefined ? ['s'] : ['s', maxLen], namedAs);
    if (builtin === 'boolean') return datatype(['o']);
    if (builtin === 'base64Binary') return datatype(maxLen === undefined ? ['b', 'b64'] : ['b', 'b64', maxLen]);
    if (builtin === 'hexBinary') return datatype(maxLen === undefined ? ['b', 'hex'] : ['b', 'hex', maxLen]);
    const range = INT_RANGES[builtin];
    if (!range) throw new Error(`unsupported builtin xs:${builtin}`);
    let min = range[0];
    let max = range[1];
    if (lo !== undefined && lo !== null && (min === null || lo > min)) min = lo;
    if (hi !== undefined && hi !== null && (max === null || hi < max)) max = hi;
    const magBits = (v: bigint | null): number => (v === null ? 160 : v < 0n ? (-v).toString(2).length : v.toString(2).length);
    const groups = Math.ceil(Math.max(magBits(min), magBits(max), 1) / 7);
    if (min !== null && max !== null && max - min < 4096n) {
      const range = Number(max - min);
      const bits = range === 0 ? 0 : Math.ceil(Math.log2(range + 1));
      return datatype(['n', bits, Number(min), Number(max)], namedAs);
    }
    if (min !== null && min >= 0n) return datatype(['u', groups], namedAs);
    return datatype(['i', groups], namedAs);
  };

  // --- grammars
  const grammars: GrammarInfo[] = [];
  const grammarIdx = new Map<string, number>();

  const typeOf = (decl: ElementDecl): { key: string; def?: TypeDef } => {
    const d = set.resolveDecl(decl);
    if (d.anonType) return { key: d.anonType.key, def: d.anonType };
    const key = d.typeKey!;
    return { key, def: key.startsWith(`${XS}|`) ? undefined : set.types.get(key) };
  };

  const grammarForDecl = (decl: ElementDecl): number => {
    const { key, def } = typeOf(decl);
    return grammarFor(key, def);
  };

  const grammarFor = (key: string, def: TypeDef | undefined): number => {
    const existing = grammarIdx.get(key);
    if (existing !== undefined) return existing;
    const idx = grammars.length;
    const info: GrammarInfo = { json: { n: key.startsWith('#anon') ? key.slice(key.indexOf(':') + 1) : qlocal(key), s: [] }, typeKey: key, simpleContent: false, fields: [], named: !key.startsWith('#anon') };
    grammars.push(info);
    grammarIdx.set(key, idx);
    if (!def || def.kind === 'simple') {
      if (key === qkey(XS, 'anyType')) throw new Error('xs:anyType elements not supported');
      const dt = def ? simpleDatatype(undefined, def) : simpleDatatype(key);
      info.simpleDatatype = dt;
      info.json.s = [
        [0, [P_CH, dt, 1]],
        [2, [P_EE]],
      ];
      return idx;
    }
    buildComplex(info, def);
    return idx;
  };

  /** Effective attributes, content particle and simple content of a complex type (following its base chain). */
  const flatten = (def: ComplexTypeDef): { attrs: AttrUse[]; particle?: Particle; simple?: number; mixed: boolean } => {
    let attrs: AttrUse[] = [];
    let particle: Particle | undefined;
    let simple: number | undefined;
    if (def.baseKey && !def.baseKey.startsWith(`${XS}|anyType`)) {
      const base = def.baseKey.startsWith(`${XS}|`) ? undefined : set.types.get(def.baseKey);
      if (!base || base.kind === 'simple') {
        simple = simpleDatatype(def.baseKey);
      } else {
        const b = flatten(base);
        if (def.derivation === 'extension') {
          attrs = [...b.attrs];
          particle = b.particle;
          simple = b.simple;
        } else {
          attrs = [...b.attrs];
          simple = b.simple;
        }
      }
    }
    for (const a of def.attrs) {
      attrs = attrs.filter((x) => x.key !== a.key);
      attrs.push(a);
    }
    if (def.particle) {
      particle = particle && def.derivation === 'extension' ? { kind: 'seq', items: [particle, def.particle], min: 1, max: 1 } : def.particle;
    }
    return { attrs, particle, simple, mixed: def.mixed };
  };

  const buildComplex = (info: GrammarInfo, def: ComplexTypeDef): void => {
    const flat = flatten(def);
    const attrs = [...flat.attrs].sort((a, b) => cmpQname(a.key, b.key));
    const A = attrs.length;
    const states: StateJson[] = [];
    // Content automaton, state indices offset by A.
    let contentStates: ProductionJson[][];
    if (flat.simple !== undefined) {
      info.simpleContent = true;
      info.simpleDatatype = flat.simple;
      contentStates = [[[P_CH, flat.simple, 1]], [[P_EE]]];
    } else {
      contentStates = contentAutomaton(flat.particle, flat.mixed, info);
    }
    const shift = (p: ProductionJson): ProductionJson => {
      const q = [...p];
      if (q[0] === P_SE || q[0] === P_AT) q[3] = q[3]! + A;
      else if (q[0] === P_SEANY || q[0] === P_CHU) q[1] = q[1]! + A;
      else if (q[0] === P_CH) q[2] = q[2]! + A;
      return q;
    };
    for (let i = 0; i < A; i++) {
      const prods: ProductionJson[] = [];
      for (let j = i; j < A; j++) {
        const a = attrs[j]!;
        const dt = a.anonType ? simpleDatatype(undefined, a.anonType) : simpleDatatype(a.typeKey);
        prods.push([P_AT, name(a.key), dt, j + 1]);
        if (a.required) break;
      }
      if (attrs.slice(i).every((a) => !a.required)) prods.push(...contentStates[0]!.map(shift));
      states.push([i === 0 ? 0 : 1, ...prods]);
    }
    contentStates.forEach((prods, k) => states.push([A + k === 0 ? 0 : k === 0 ? 1 : 2, ...prods.map(shift)]));
    info.json.s = states;
    if (childrenInterleave(states)) info.json.o = 1;
    for (const a of attrs) {
      info.fields.push({ key: qlocal(a.key), grammar: -1, array: false, required: a.required, attribute: true, datatype: a.anonType ? simpleDatatype(undefined, a.anonType) : simpleDatatype(a.typeKey), maxOccurs: 1 });
    }
  };

  /** Glushkov automaton of a content particle → list of states (state 0 initial), productions in event-code order. */
  const contentAutomaton = (particle: Particle | undefined, mixed: boolean, info: GrammarInfo): ProductionJson[][] => {
    const positions: Position[] = [];
    let order = 0;
    const fieldMap = new Map<string, FieldInfo>();
    const particleOrder = new Map<Particle, number>();
    const assignOrder = (p: Particle): void => {
      particleOrder.set(p, order++);
      if (p.kind === 'seq' || p.kind === 'choice') p.items.forEach(assignOrder);
    };
    if (particle) assignOrder(particle);
    const typeLocal = info.json.n;

    const term = (p: Particle, multi: boolean, required: boolean): Ast => {
      if (p.kind === 'element') {
        const decl = set.resolveDecl(p.decl);
        const members = set.hasSubstitutes(decl) ? set.substitutionMembers(decl).sort((a, b) => cmpQname(a.key, b.key)) : [decl];
        const alts: Ast[] = members.map((m, i) => {
          const pos: Position = { id: positions.length, wildcard: false, nameKey: m.key, decl: m, order: particleOrder.get(p)!, sub: i };
          positions.push(pos);
          const key = qlocal(m.key);
          const f = fieldMap.get(key);
          const g = grammarForDecl(m);
          if (f) {
            f.array = true; // the same name in two particles: a list
            f.required = f.required || (required && members.length === 1);
          } else {
            const fi: FieldInfo = { key, grammar: g, array: multi, required: required && members.length === 1, attribute: false, maxOccurs: p.max };
            fieldMap.set(key, fi);
          }
          return { t: 'sym', p: pos } as Ast;
        });
        return alts.length === 1 ? alts[0]! : { t: 'alt', items: alts };
      }
      if (p.kind === 'any') {
        const pos: Position = { id: positions.length, wildcard: true, nameKey: '*', order: particleOrder.get(p)!, sub: 0 };
        positions.push(pos);
        return { t: 'sym', p: pos };
      }
      const items = p.items.map((c) => expand(c, multi, required && p.kind === 'seq'));
      return p.kind === 'seq' ? { t: 'seq', items } : { t: 'alt', items };
    };
    const expand = (p: Particle, multi: boolean, required: boolean): Ast => {
      const m = multi || p.max > 1;
      const req = required && p.min >= 1;
      if (p.max === 0) return { t: 'eps' };
      if (p.max !== Infinity && p.max > 1 && p.kind === 'element') {
        // Element terms are never nullable: unroll as a flat chain (a nested opt() would recurse max deep).
        const items: Ast[] = [];
        for (let i = 0; i < p.max; i++) items.push(term(p, m, req && i < p.min));
        return { t: 'chain', items, min: p.min };
      }
      const parts: Ast[] = [];
      for (let i = 0; i < p.min; i++) parts.push(term(p, m, req));
      if (p.max === Infinity) parts.push({ t: 'star', x: term(p, m, req) });
      else {
        let tail: Ast | undefined;
        for (let i = p.max - 1; i >= p.min; i--) {
          const t = term(p, m, req);
          tail = { t: 'opt', x: tail ? { t: 'seq', items: [t, tail] } : t };
        }
        if (tail) parts.push(tail);
      }
      return parts.length === 1 ? parts[0]! : { t: 'seq', items: parts };
    };
    const root: Ast = particle ? expand(particle, false, true) : { t: 'eps' };
    for (const f of fieldMap.values()) if (f.array && ONE_OR_MANY.has(`${typeLocal}/${f.key}`)) f.oneOrMany = true;
    info.fields.push(...fieldMap.values());

    // Glushkov sets.
    const follow: Set<number>[] = positions.map(() => new Set<number>());
    const an = (a: Ast): { nullable: boolean; first: number[]; last: number[] } => {
      switch (a.t) {
        case 'eps':
          return { nullable: true, first: [], last: [] };
        case 'sym':
          return { nullable: false, first: [a.p.id], last: [a.p.id] };
        case 'opt': {
          const r = an(a.x);
          return { nullable: true, first: r.first, last: r.last };
        }
        case 'star': {
          const r = an(a.x);
          for (const l of r.last) for (const f of r.first) follow[l]!.add(f);
          return { nullable: true, first: r.first, last: r.last };
        }
        case 'chain': {
          const rs = a.items.map(an);
          for (let i = 0; i + 1 < rs.length; i++) for (const l of rs[i]!.last) for (const f of rs[i + 1]!.first) follow[l]!.add(f);
          return { nullable: a.min === 0, first: rs[0]!.first, last: rs.flatMap((r, i) => (i >= a.min - 1 ? r.last : [])) };
        }
        case 'alt': {
          const rs = a.items.map(an);
          return { nullable: rs.some((r) => r.nullable), first: rs.flatMap((r) => r.first), last: rs.flatMap((r) => r.last) };
        }
        case 'seq': {
          let acc = { nullable: true, first: [] as number[], last: [] as number[] };
          for (const item of a.items) {
            const r = an(item);
            for (const l of acc.last) for (const f of r.first) follow[l]!.add(f);
            acc = {
              nullable: acc.nullable && r.nullable,
              first: acc.nullable ? [...acc.first, ...r.first] : acc.first,
              last: r.nullable ? [...acc.last, ...r.last] : r.last,
            };
          }
          return acc;
        }
      }
    };
    const top = an(root);
    const lastSet = new Set(top.last);

    // Subset construction. State key: sorted position ids; initial = 'I'.
    const stateIds = new Map<string, number>();
    const stateSets: (number[] | null)[] = [];
    const out: ProductionJson[][] = [];
    const idOf = (set: number[] | null): number => {
      const k = set === null ? 'I' : set.join(',');
      let id = stateIds.get(k);
      if (id === undefined) {
        id = stateSets.length;
        stateIds.set(k, id);
        stateSets.push(set);
      }
      return id;
    };
    idOf(null);
    for (let s = 0; s < stateSets.length; s++) {
      const S = stateSets[s]!;
      const cand = S === null ? top.first : [...new Set(S.flatMap((p) => [...follow[p]!]))];
      const final = S === null ? top.nullable : S.some((p) => lastSet.has(p));
      const groups = new Map<string, number[]>();
      for (const p of cand) {
        const k = positions[p]!.nameKey;
        const g = groups.get(k) ?? [];
        g.push(p);
        groups.set(k, g);
      }
      const se: { order: number; sub: number; prod: ProductionJson }[] = [];
      let wildcard: ProductionJson | undefined;
      for (const [k, ps] of groups) {
        ps.sort((a, b) => a - b);
        const target = idOf(ps);
        const first = positions[ps[0]!]!;
        const minOrder = Math.min(...ps.map((p) => positions[p]!.order));
        if (k === '*') wildcard = [P_SEANY, target];
        else {
          const field = fieldMap.get(qlocal(k))!;
          se.push({ order: minOrder, sub: first.sub, prod: [P_SE, name(k), grammarForDecl(first.decl!), target, field.oneOrMany ? 2 : field.array ? 1 : 0] });
        }
      }
      se.sort((a, b) => a.order - b.order || a.sub - b.sub);
      const prods = se.map((x) => x.prod);
      if (wildcard) prods.push(wildcard);
      if (final) prods.push([P_EE]);
      if (mixed) prods.push([P_CHU, s]);
      out[s] = prods;
    }
    return out;
  };

  // Document grammar: global elements sorted by qname.
  const globals = [...set.elements.values()].sort((a, b) => cmpQname(a.key, b.key));
  const doc: [number, number][] = [];
  const docElements: { name: string; grammar: number }[] = [];
  for (const g of globals) {
    const gi = grammarForDecl(g);
    doc.push([name(g.key), gi]);
    if (!g.abstract) docElements.push({ name: qlocal(g.key), grammar: gi });
  }
  // Fragment grammar: every element declaration, unique by qname. When same-named declarations differ in type
  // (ISO-2 eMAID: a string in PaymentDetailsReq, EMAIDType with an Id in CertificateInstallationRes), the one that
  // carries an `Id` attribute wins: fragments exist to digest xmldsig references, which point at Ids (as libcbv2g).
  const hasId = (d: ElementDecl): boolean => {
    const { def } = typeOf(d);
    return def?.kind === 'complex' && flatten(def).attrs.some((a) => qlocal(a.key) === 'Id');
  };
  const fragDecls = new Map<string, ElementDecl>();
  for (const d of set.allElementDecls) {
    const prev = fragDecls.get(d.key);
    if (!prev || (!hasId(prev) && hasId(d))) fragDecls.set(d.key, d);
  }
  const frag: [number, number][] = [...fragDecls.values()]
    .sort((a, b) => cmpQname(a.key, b.key))
    .map((d) => [name(d.key), grammarForDecl(d)]);

  return { tables: { names, datatypes, grammars: grammars.map((g) => g.json), doc, frag }, grammars, datatypeNames, docElements };
}

/** EXI orders qnames by local name, then by namespace URI (code-point order). */
export function cmpQname(a: string, b: string): number {
  const la = qlocal(a);
  const lb = qlocal(b);
  if (la !== lb) return la < lb ? -1 : 1;
  const ua = quri(a);
  const ub = quri(b);
  return ua < ub ? -1 : ua > ub ? 1 : 0;
}
