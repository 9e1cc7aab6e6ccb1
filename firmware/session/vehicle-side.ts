/**
 * What every protocol module does on the vehicle side alike: contactor and S2 effects that bring the vehicle to a
 * state (only when it is not there yet, updating what the module believes), telling the EV port what the charger
 * delivers, recording SoC and energy for the report, and the one-or-many shape of decoded lists.
 */
import type { EvseOutput } from '../../hal/ev/types.ts';
import type { EffectRequest, StepEnv } from './exchange.ts';

export interface VehicleSideState {
  contactorsClosed: boolean;
  s2Closed: boolean;
}

export function closeContactors(s: VehicleSideState): EffectRequest[] {
  if (s.contactorsClosed) return [];
  s.contactorsClosed = true;
  return [{ kind: 'contactors', closed: true }];
}

export function openContactors(s: VehicleSideState): EffectRequest[] {
  if (!s.contactorsClosed) return [];
  s.contactorsClosed = false;
  return [{ kind: 'contactors', closed: false }];
}

export function closeS2(s: VehicleSideState): EffectRequest[] {
  if (s.s2Closed) return [];
  s.s2Closed = true;
  return [{ kind: 'chargeRequest', closed: true }];
}

export function openS2(s: VehicleSideState): EffectRequest[] {
  if (!s.s2Closed) return [];
  s.s2Closed = false;
  return [{ kind: 'chargeRequest', closed: false }];
}

/** Tells the vehicle what the charger delivers (the module's option, else the EV port behind the EvView, if it is one). */
export function reportEvseOutput(ctx: { options: { reportEvseOutput?: ((o: EvseOutput) => void) | undefined } }, env: StepEnv, output: EvseOutput): void {
  const port = env.ev as StepEnv['ev'] & { reportEvseOutput?: (o: EvseOutput) => void };
  const sink = ctx.options.reportEvseOutput ?? (typeof port.reportEvseOutput === 'function' ? port.reportEvseOutput.bind(port) : undefined);
  sink?.(output);
}

export interface EnergyRecord {
  socStart?: number | undefined;
  energyStartWh?: number | undefined;
  socEnd?: number | undefined;
  energyEndWh?: number | undefined;
}

/** SoC and energy at the start of energy transfer, and the latest values (nothing before the start). */
export function recordEnergy(ctx: EnergyRecord, env: StepEnv, at: 'start' | 'now'): void {
  const s = env.ev.status();
  if (at === 'start' && ctx.socStart === undefined) {
    ctx.socStart = s.socPercent;
    ctx.energyStartWh = s.energyDeliveredWh;
  }
  if (ctx.socStart === undefined) return;
  ctx.socEnd = s.socPercent;
  ctx.energyEndWh = s.energyDeliveredWh;
}

/** A decoded list field: one element or many (the EXI shape), as an array. */
export function asArray<T>(v: T | readonly T[] | undefined): T[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? [...(v as T[])] : [v as T];
}
