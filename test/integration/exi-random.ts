import { Dt, type CompiledSchema, type Datatype, type ExiObject, type ExiValue, type Grammar } from '../../firmware/exi/runtime.ts';
import { P_AT, P_CH, P_EE, P_SE } from '../../firmware/exi/tables.ts';

/**
 * Random valid messages of a schema, generated from its grammar (the same tables the types are generated from):
 * a random walk over each type's productions, bounded in depth and repetition, with random values of each datatype.
 * Wildcard/mixed content (xmldsig ##any) is avoided: the message shape does not carry it.
 */
export type Rng = () => number; // [0, 1)

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const int = (rng: Rng, n: number): number => Math.floor(rng() * n);

function randomString(rng: Rng, max: number): string {
  const len = int(rng, Math.min(12, max) + 1);
  let s = '';
  for (let i = 0; i < len; i++) {
    const r = rng();
    // Mostly ASCII; some NUL, Latin-1, BMP and astral code points (EXI strings are code points).
    const cp = r < 0.7 ? 0x20 + int(rng, 95) : r < 0.75 ? 0 : r < 0.85 ? 0xa0 + int(rng, 0x60) : r < 0.95 ? 0x4e00 + int(rng, 0x100) : 0x1f600 + int(rng, 0x40);
    s += String.fromCodePoint(cp);
  }
  return s;
}

function randomValue(rng: Rng, dt: Datatype): ExiValue {
  switch (dt.kind) {
    case Dt.Str:
      return randomString(rng, dt.maxLength);
    case Dt.Bin: {
      const n = int(rng, Math.min(40, dt.maxLength) + 1);
      let h = '';
      for (let i = 0; i < n; i++) h += int(rng, 256).toString(16).padStart(2, '0');
      return h;
    }
    case Dt.Bool:
      return int(rng, 2);
    case Dt.NBit:
      return dt.min + int(rng, dt.max - dt.min + 1);
    case Dt.Enum:
      return dt.values[int(rng, dt.values.length)]!;
    case Dt.UInt: {
      const maxBits = Math.min(dt.groups * 7, 64);
      const bits = int(rng, maxBits + 1);
      if (bits > 53) {
        const v = (BigInt(Math.floor(rng() * 2 ** 32)) << BigInt(bits - 32)) | BigInt(int(rng, 2 ** 20));
        const capped = v & ((1n << BigInt(maxBits)) - 1n);
        return capped > BigInt(Number.MAX_SAFE_INTEGER) ? capped : Number(capped);
      }
      return Math.floor(rng() * 2 ** bits);
    }
    case Dt.Int: {
      const maxBits = Math.min(dt.groups * 7, 63) - 1;
      const bits = int(rng, Math.min(maxBits, 52) + 1);
      const v = Math.floor(rng() * 2 ** bits);
      return rng() < 0.5 && v !== 0 ? -v : v;
    }
  }
}

/** A random instance of grammar `g`, or undefined if none can be built within the depth budget. */
export function randomElement(rng: Rng, g: Grammar, depth: number): ExiValue | undefined {
  if (depth <= 0) return undefined;
  let obj: ExiObject | undefined;
  let simple: ExiValue | undefined;
  let st = 0;
  const counts = new Map<string, number>();
  for (let steps = 0; steps < 64; steps++) {
    const state = g.states[st]!;
    const usable = state.prods.filter((p) => p.kind === P_AT || p.kind === P_SE || p.kind === P_CH || p.kind === P_EE);
    const ee = usable.find((p) => p.kind === P_EE);
    // Prefer ending once a few children exist, so messages stay small.
    const others = usable.filter((p) => p.kind !== P_EE);
    const order = others.sort(() => rng() - 0.5);
    if (ee && (others.length === 0 || rng() < 0.35 || steps > 12)) {
      return g.simple ? simple : (obj ?? {});
    }
    let advanced = false;
    for (const p of order) {
      if (p.kind === P_CH) {
        const v = randomValue(rng, p.dt!);
        if (g.simple) simple = v;
        else (obj ??= {}).CONTENT = v;
      } else if (p.kind === P_AT) {
        (obj ??= {})[p.key] = randomValue(rng, p.dt!);
      } else {
        const child = randomElement(rng, p.grammar!, depth - 1);
        if (child === undefined) continue;
        obj ??= {};
        const n = counts.get(p.key) ?? 0;
        counts.set(p.key, n + 1);
        if (p.array) ((obj[p.key] as ExiValue[] | undefined) ?? (obj[p.key] = [])).push(child);
        else if (p.oneOrMany && n > 0) obj[p.key] = n === 1 ? [obj[p.key]!, child] : [...(obj[p.key] as ExiValue[]), child];
        else obj[p.key] = child;
      }
      st = p.next;
      advanced = true;
      break;
    }
    if (!advanced) {
      if (ee) return g.simple ? simple : (obj ?? {});
      return undefined;
    }
  }
  return undefined;
}

/** A random document of the schema: one global element. */
export function randomDocument(rng: Rng, s: CompiledSchema, depth = 10): ExiObject | undefined {
  const roots = s.doc.filter((d) => d.grammar);
  for (let tries = 0; tries < 20; tries++) {
    const root = roots[int(rng, roots.length)]!;
    const v = randomElement(rng, root.grammar!, depth);
    if (v !== undefined) return { [root.key]: v };
  }
  return undefined;
}
