import type { Datatype, Grammar, Production, State } from './runtime.ts';

/**
 * Specializes the grammar tables into JavaScript functions, one decoder and one encoder per type (the way protobufjs
 * and ajv compile their schemas): each state becomes a `case`, each production straight-line code with constant
 * property names, so V8 sees monomorphic property accesses instead of the interpreter's table walk.
 *
 * The source is built only from the generated tables (no input data), then instantiated with `new Function`.
 * Semantics are the interpreter's (runtime.ts); on anything unusual — an undeclared event, a missing field, a
 * truncated stream — the compiled code throws FALLBACK and the caller re-runs the interpreter, which produces the
 * exact result or typed error. Types with very many states (unrolled maxOccurs=1024) stay interpreted.
 *
 * States with a cbexigen cap rule (runtime.ts `capRule`) get their alternative state as an extra case, entered only
 * when the list holds exactly its cap and the decoder runs in `capEnds` mode (the standard reading just notes the
 * cap, as the interpreter does): the normal path pays one length test in those few states.
 */
export const FALLBACK = Symbol('exi-fallback');

const MAX_STATES = 48;

// Production kinds (tables.ts).
const P_AT = 0;
const P_SE = 1;
const P_EE = 3;
const P_CH = 4;

// Datatype kinds (runtime.ts Dt).
const DT_STR = 0;
const DT_BIN = 1;
const DT_BOOL = 2;
const DT_NBIT = 3;
const DT_UINT = 4;
const DT_INT = 5;
const DT_ENUM = 6;

export type CompiledDecode = (d: unknown, r: unknown, name: number) => unknown;
export type CompiledEncode = (e: unknown, w: unknown, v: unknown, name: number) => void;

export interface FastCodec {
  dec: CompiledDecode[];
  enc: CompiledEncode[];
}

const lit = (s: string): string => JSON.stringify(s);

export function compileFast(grammars: Grammar[]): FastCodec {
  const index = new Map<Grammar, number>();
  grammars.forEach((g, i) => index.set(g, i));
  const consts: unknown[] = []; // enumeration arrays, datatypes, grammars (for interpreter bridges)
  const constIdx = new Map<unknown, number>();
  const K = (v: unknown): string => {
    let i = constIdx.get(v);
    if (i === undefined) {
      i = consts.length;
      consts.push(v);
      constIdx.set(v, i);
    }
    return `K[${i}]`;
  };

  const readValue = (dt: Datatype, name: number | string): string => {
    switch (dt.kind as number) {
      case DT_NBIT:
        return dt.bits === 0 ? `${dt.min}` : `(r.readBits(${dt.bits}) + ${dt.min})`;
      case DT_BOOL:
        return 'r.readBit()';
      case DT_ENUM:
        return `d.en(${K(dt.values)}, r.readBits(${dt.bits}))`;
      case DT_UINT:
        return `r.readUnsigned(${dt.groups})`;
      case DT_INT:
      case DT_BIN:
      case DT_STR:
        return `d.value(${K(dt)}, ${name})`;
    }
    throw new Error('unknown datatype');
  };

  const writeValue = (dt: Datatype, name: number | string, x: string): string => {
    switch (dt.kind as number) {
      case DT_NBIT:
        return `if (typeof ${x} !== 'number' || !Number.isInteger(${x}) || ${x} < ${dt.min} || ${x} > ${dt.max}) F(); w.writeBits(${dt.bits}, ${x} - ${dt.min});`;
      case DT_BOOL:
        return `if (${x} === 1 || ${x} === true) w.writeBits(1, 1); else if (${x} === 0 || ${x} === false) w.writeBits(1, 0); else F();`;
      case DT_ENUM:
        return `{ const i = ${K(dt.index)}.get(${x}); if (i === undefined) F(); w.writeBits(${dt.bits}, i); }`;
      case DT_UINT:
        return `if (typeof ${x} === 'number' && ${x} >= 0 && ${x} < 2147483648 && (${x} | 0) === ${x}) w.writeUnsigned(${x}); else e.value(${K(dt)}, ${name}, ${x});`;
      default:
        return `e.value(${K(dt)}, ${name}, ${x});`;
    }
  };

  const dec: string[] = [];
  const enc: string[] = [];
  grammars.forEach((g, gi) => {
    // Interleaving children (EXI_CHILD_ORDER) stay interpreted: their order is data, not a state's constant choice.
    if (g.states.length > MAX_STATES || g.ordered) {
      dec.push(`D[${gi}] = (d, r, name) => d.element(${K(g)}, name);`);
      enc.push(`E[${gi}] = (e, w, v, name) => e.element(${K(g)}, name, v);`);
      return;
    }
    // ---------------- decoder
    const ds: string[] = [];
    ds.push(`D[${gi}] = function (d, r, name) {`);
    ds.push(`if (++d.depth > d.maxDepth) F();`);
    ds.push(g.simple ? 'let val;' : 'const o = {};');
    ds.push('let st = 0;');
    ds.push('for (;;) switch (st) {');
    const alts: State[] = [];
    const decodeState = (s: State, si: number): void => {
      ds.push(`case ${si}: {`);
      const rule = s.capRule;
      if (rule) {
        const alt = g.states.length + alts.length;
        alts.push(rule.alt);
        ds.push(`{ const a = o[${lit(rule.key)}]; if (a !== undefined && a.length === ${rule.cap}) { if (d.capEnds) { st = ${alt}; continue; } d.capSeen = true; } }`);
      }
      ds.push(s.bits === 0 ? 'const c = 0;' : `const c = r.readBits(${s.bits});`);
      s.prods.forEach((p, pi) => {
        ds.push(`if (c === ${pi}) {`);
        ds.push(decodeProduction(g, p));
        ds.push('}');
      });
      ds.push('F(); }');
    };
    g.states.forEach(decodeState);
    alts.forEach((s, i) => decodeState(s, g.states.length + i));
    ds.push('default: F(); } };');
    dec.push(ds.join('\n'));

    function decodeProduction(g: Grammar, p: Production): string {
      const key = lit(p.key);
      switch (p.kind) {
        case P_EE:
          return g.simple ? 'if (val === undefined) F(); d.depth--; return val;' : 'd.depth--; return o;';
        case P_AT:
          return `o[${key}] = ${readValue(p.dt!, p.name)}; st = ${p.next}; continue;`;
        case P_CH:
          return `${g.simple ? 'val' : `o[${lit('CONTENT')}]`} = ${readValue(p.dt!, 'name')}; st = ${p.next}; continue;`;
        case P_SE: {
          const child = `D[${index.get(p.grammar!)}](d, r, ${p.name})`;
          if (p.array) return `{ const x = ${child}; const a = o[${key}]; if (a === undefined) o[${key}] = [x]; else a.push(x); } st = ${p.next}; continue;`;
          if (p.oneOrMany) return `d.add1m(o, ${key}, ${child}); st = ${p.next}; continue;`;
          return `o[${key}] = ${child}; st = ${p.next}; continue;`;
        }
        default:
          return 'F();';
      }
    }

    // ---------------- encoder
    const es: string[] = [];
    const slots = [...g.slotOf.entries()];
    es.push(`E[${gi}] = function (e, w, v, name) {`);
    es.push(`if (++e.depth > 64) F();`);
    if (g.simple) {
      const p = g.states[0]!.prods[0]!;
      es.push(`w.writeBits(${g.states[0]!.bits}, 0);`);
      es.push(writeValue(p.dt!, 'name', 'v'));
      es.push(`w.writeBits(${g.states[1]!.bits}, 0); e.depth--; return; };`);
      enc.push(es.join('\n'));
      return;
    }
    es.push(`if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) F();`);
    es.push(`let consumed = 0; ${slots.map(([, i]) => `let c${i} = 0;`).join(' ')}`);
    es.push('let st = 0;');
    es.push('L: for (;;) switch (st) {');
    g.states.forEach((s, si) => {
      es.push(`case ${si}: {`);
      let ee = -1;
      s.prods.forEach((p, pi) => {
        if (p.kind === P_EE) {
          if (ee < 0) ee = pi;
          return;
        }
        if (p.kind !== P_AT && p.kind !== P_SE && p.kind !== P_CH) return;
        const c = `c${p.slot}`;
        const x = `x${pi}`;
        const emit = (item: string): string => {
          if (p.kind === P_SE) return `E[${index.get(p.grammar!)}](e, w, ${item}, ${p.name});`;
          return writeValue(p.dt!, p.kind === P_AT ? p.name : 'name', item);
        };
        es.push(`const ${x} = v[${lit(p.key)}];`);
        if (p.array) {
          es.push(`if (${x} !== undefined) { if (!Array.isArray(${x})) F(); if (${c} < ${x}.length) { w.writeBits(${s.bits}, ${pi}); const it = ${x}[${c}++]; if (${c} === ${x}.length) consumed++; ${emit('it')} st = ${p.next}; continue L; } }`);
        } else if (p.oneOrMany) {
          es.push(`if (${x} !== undefined) { if (Array.isArray(${x})) { if (${c} < ${x}.length) { w.writeBits(${s.bits}, ${pi}); const it = ${x}[${c}++]; if (${c} === ${x}.length) consumed++; ${emit('it')} st = ${p.next}; continue L; } } else if (${c} === 0) { w.writeBits(${s.bits}, ${pi}); ${c} = 1; consumed++; ${emit(x)} st = ${p.next}; continue L; } }`);
        } else {
          es.push(`if (${x} !== undefined && ${c} === 0) { w.writeBits(${s.bits}, ${pi}); ${c} = 1; consumed++; ${emit(x)} st = ${p.next}; continue L; }`);
        }
      });
      es.push(ee >= 0 ? `w.writeBits(${s.bits}, ${ee}); break L; }` : 'F(); }');
    });
    es.push('default: F(); }');
    es.push('if (Object.keys(v).length !== consumed) F();');
    es.push('e.depth--; };');
    enc.push(es.join('\n'));
  });

  const src = `"use strict";\nconst D = [];\nconst E = [];\nconst F = () => { throw FALLBACK; };\n${dec.join('\n')}\n${enc.join('\n')}\nreturn { dec: D, enc: E };`;
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- source built from the generated tables only
  const factory = new Function('K', 'FALLBACK', src) as (k: unknown[], f: symbol) => FastCodec;
  return factory(consts, FALLBACK);
}
