import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { PowerStage } from './power-stage.ts';

function stage() {
  const clock = new VirtualClock(0);
  const ps = new PowerStage({
    clock, limits: { maxVoltageV: 500, minVoltageV: 150, maxCurrentA: 200, maxPowerW: 50_000 },
    voltageRampVPerS: 100, currentRampAPerS: 50, dischargeVPerS: 200,
  });
  return { clock, ps };
}

describe('simulated DC power stage', () => {
  it('ramps the voltage at V/s towards the PreCharge target and stops there', () => {
    const { clock, ps } = stage();
    expect(ps.precharge(380).voltageV).toBe(0);
    clock.advance(1000);
    expect(ps.read().voltageV).toBe(100);
    clock.advance(2500);
    expect(ps.read().voltageV).toBe(350);
    clock.advance(1000);
    expect(ps.read()).toMatchObject({ voltageV: 380, currentA: 0, mode: 'precharge' });
  });

  it('ramps the current at A/s, limited by the current and the power limit, and says which limit it hit', () => {
    const { clock, ps } = stage();
    ps.precharge(400);
    clock.advance(4000);
    ps.demand(400, 100);
    clock.advance(1000);
    expect(ps.read().currentA).toBe(50);
    clock.advance(1000);
    expect(ps.read()).toMatchObject({ currentA: 100, currentLimitAchieved: false, powerLimitAchieved: false });
    // 400 V × 300 A asked: the current limit (200 A) and then the power limit (50 kW → 125 A) apply.
    const r = ps.demand(400, 300);
    expect([r.currentLimitAchieved, r.powerLimitAchieved, r.voltageLimitAchieved]).toEqual([true, true, false]);
    clock.advance(10_000);
    expect(ps.read().currentA).toBe(125);
    expect(ps.demand(600, 10)).toMatchObject({ voltageLimitAchieved: true });
    clock.advance(10_000);
    expect(ps.read().voltageV).toBe(500);
  });

  it('meters the energy of the ramps (trapezoid) and discharges at its own rate once off, or holds the voltage', () => {
    const { clock, ps } = stage();
    ps.precharge(400);
    clock.advance(4000);
    ps.demand(400, 100);
    clock.advance(2000); // 0 → 100 A in 2 s at 400 V: 40 kW × 2 s / 2 = 40 kJ
    expect(ps.read().energyWh).toBeCloseTo(40_000 / 3600, 6);
    ps.off();
    clock.advance(1000);
    expect(ps.read()).toMatchObject({ voltageV: 200, currentA: 50, mode: 'off' });
    clock.advance(5000);
    expect(ps.read()).toMatchObject({ voltageV: 0, currentA: 0 });

    const held = stage();
    held.ps.precharge(400);
    held.clock.advance(4000);
    held.ps.off({ holdVoltage: true });
    held.clock.advance(10_000);
    expect(held.ps.read()).toMatchObject({ voltageV: 400, mode: 'hold' });
  });
});
