/**
 * PhysicalValue (ISO 15118-2 / DIN 70121): Value (int16) × 10^Multiplier (−3…3), with a Unit. We work in SI numbers
 * and convert at the message boundary. Encoding picks the finest multiplier whose value still fits 16 bits, so
 * 400.5 V goes out as 4005 × 10^-1 and 150 kW as 15000 × 10^1.
 */
import { EvccError } from '../../core/errors.ts';

export type PhysicalUnit = 'h' | 'm' | 's' | 'A' | 'V' | 'W' | 'Wh';

export interface PhysicalValue {
  Multiplier: number;
  Unit?: PhysicalUnit;
  Value: number;
}

const INT16_MAX = 32_767;

export function toPhysical(value: number, unit: PhysicalUnit, o: { withUnit?: boolean; minMultiplier?: number } = {}): PhysicalValue {
  if (!Number.isFinite(value)) throw new EvccError('SESSION_VALUE_RANGE', `physical value ${value} ${unit} is not finite`, { value, unit });
  for (let m = o.minMultiplier ?? -3; m <= 3; m++) {
    const v = Math.round(value / 10 ** m);
    if (Math.abs(v) <= INT16_MAX) {
      return { Multiplier: m, ...(o.withUnit === false ? {} : { Unit: unit }), Value: v };
    }
  }
  throw new EvccError('SESSION_VALUE_RANGE', `physical value ${value} ${unit} does not fit ISO 15118 PhysicalValue`, { value, unit });
}

export function fromPhysical(pv: { Multiplier: number; Value: number } | undefined): number | undefined {
  if (!pv || typeof pv.Value !== 'number' || typeof pv.Multiplier !== 'number') return undefined;
  return pv.Value * 10 ** pv.Multiplier;
}

/** For log lines: `400.0 V`. */
export function formatPhysical(value: number | undefined, unit: string): string {
  return value === undefined ? `? ${unit}` : `${value.toFixed(1)} ${unit}`;
}
