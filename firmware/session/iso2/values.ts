/**
 * PhysicalValue helpers for the ISO-2 messages. What the EV requests (targets) and declares (its limits) is rounded
 * DOWN to the representable value: a request must never exceed a limit by a rounding step (units.ts rounds to
 * nearest, fine for reporting, not for limits).
 */
import type { Iso2 } from '../../exi/index.ts';
import { fromPhysical, toPhysical, type PhysicalUnit } from '../units.ts';

const INT16_MAX = 32_767;

/** The largest PhysicalValue ≤ `value` (value ≥ 0), finest multiplier first. */
export function pvAtMost(value: number, unit: PhysicalUnit): Iso2.PhysicalValueType {
  const v = Number.isFinite(value) && value > 0 ? value : 0;
  for (let m = -3; m <= 3; m++) {
    // Scale by an exact power of ten (10 ** -m is exact for m ≤ 0); the epsilon absorbs binary noise such as
    // 0.3 × 10 = 3.0000000000000004 without ever adding a whole step.
    const scaled = m <= 0 ? v * 10 ** -m : v / 10 ** m;
    const n = Math.floor(scaled + 1e-9);
    if (n <= INT16_MAX) return { Multiplier: m, Unit: unit, Value: n };
  }
  return { Multiplier: 3, Unit: unit, Value: INT16_MAX };
}

/** Nearest PhysicalValue (reported quantities such as the energy request). */
export function pv(value: number, unit: PhysicalUnit): Iso2.PhysicalValueType {
  return toPhysical(Math.max(0, Number.isFinite(value) ? value : 0), unit) as Iso2.PhysicalValueType;
}

export function si(v: unknown): number | undefined {
  return fromPhysical(v as { Multiplier: number; Value: number } | undefined);
}

/** A PhysicalValue the state can rely on: numeric Value and a Multiplier in −3…3. */
export function isPhysical(v: unknown): boolean {
  const p = v as { Multiplier?: unknown; Value?: unknown } | undefined;
  return !!p && typeof p.Value === 'number' && typeof p.Multiplier === 'number' && p.Multiplier >= -3 && p.Multiplier <= 3;
}

export const fmt = (v: number | undefined, unit: string, digits = 1): string => (v === undefined ? `? ${unit}` : `${v.toFixed(digits)} ${unit}`);
export const fmtPv = (p: unknown, unit: string): string => fmt(si(p), unit);
