/**
 * DIN PhysicalValues at the message boundary (firmware/session/units.ts does the arithmetic): we always send the
 * Unit, and accept values without one (DIN's Unit element is optional; ISO-2 requires it).
 */
import type { Din } from '../../exi/index.ts';
import { fromPhysical, toPhysical, type PhysicalUnit } from '../units.ts';

/** A PhysicalValue with its Unit. */
export function pv(value: number, unit: PhysicalUnit): Din.PhysicalValueType {
  return toPhysical(value, unit) as Din.PhysicalValueType;
}

/**
 * A PhysicalValue that never says more than `value`: limits and targets are rounded down, never up (400.05 A must
 * not go out as 400.1 A). Negative or non-finite inputs go out as 0.
 */
export function pvAtMost(value: number, unit: PhysicalUnit): Din.PhysicalValueType {
  const v = Number.isFinite(value) && value > 0 ? value : 0;
  const p = toPhysical(v, unit) as Din.PhysicalValueType;
  // Compared in the value's own scale (multiplying by 10, 100, 1000 is exact where dividing by 0.1… is not), with
  // the scaled number's own rounding error as the only slack: 4005 × 10^-1 is 400.5, but 23 825 × 10^-2 is above
  // 238.24999999999.
  const scaled = p.Multiplier < 0 ? v * 10 ** -p.Multiplier : v / 10 ** p.Multiplier;
  if (p.Value - scaled > 4 * Number.EPSILON * Math.max(1, scaled)) return { ...p, Value: p.Value - 1 };
  return p;
}

/** SI number of a received value (undefined when absent). */
export function si(p: unknown): number | undefined {
  return fromPhysical(p as { Multiplier: number; Value: number } | undefined);
}

export function fmt(value: number | undefined, unit: string): string {
  if (value === undefined) return `? ${unit}`;
  if (unit === 'W' && Math.abs(value) >= 1_000) return `${(value / 1_000).toFixed(1)} kW`;
  if (unit === 'Wh' && Math.abs(value) >= 1_000) return `${(value / 1_000).toFixed(1)} kWh`;
  return `${value.toFixed(1)} ${unit}`;
}

export const fmtPv = (p: unknown, unit: string): string => fmt(si(p), unit);

/** Units a field of the given quantity may carry (DIN's unitSymbolType also has Ah, VA, W/s). */
export const UNITS_OF: Record<'V' | 'A' | 'W' | 'Wh' | 's', readonly string[]> = {
  V: ['V'],
  A: ['A'],
  W: ['W', 'VA'],
  Wh: ['Wh'],
  s: ['s'],
};
