import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EvLimits } from '../../../hal/ev/types.ts';
import { dcTargets } from './dc.ts';
import { FakeEv, runIso2, ScriptedSecc, TEST_EV_LIMITS } from './test-secc.ts';
import { pvAtMost } from './values.ts';

type Pv = { Value: number; Multiplier: number };
/** `pv` ≤ `bound`, decided in the integer domain of the value (no float noise of Value × 10^Multiplier). */
const atMost = (pv: unknown, bound: number) => {
  const p = pv as Pv;
  return p.Value <= bound * 10 ** -p.Multiplier + 1e-6;
};
const si = (pv: unknown) => { const p = pv as Pv; return p.Value * 10 ** p.Multiplier; };

describe('PhysicalValue for limits and targets', () => {
  it('pvAtMost never exceeds the value and loses less than one step of its multiplier', () => {
    fc.assert(fc.property(fc.double({ min: 0, max: 3_000_000, noNaN: true }), (v) => {
      const p = pvAtMost(v, 'W');
      expect(atMost(p, v)).toBe(true);
      expect(p.Value).toBeLessThanOrEqual(32_767);
      expect(v - si(p)).toBeLessThan(10 ** p.Multiplier * (1 + 1e-9));
    }), { numRuns: 2_000 });
    expect(pvAtMost(123.456, 'A')).toEqual({ Multiplier: -2, Unit: 'A', Value: 12_345 });
    expect(pvAtMost(0.3, 'A')).toEqual({ Multiplier: -3, Unit: 'A', Value: 300 });
    expect(pvAtMost(-5, 'A').Value).toBe(0);
  });
});

const evLimits = fc.record({
  maxVoltageV: fc.double({ min: 200, max: 1_000, noNaN: true }),
  maxCurrentA: fc.double({ min: 1, max: 500, noNaN: true }),
  maxPowerW: fc.double({ min: 1_000, max: 350_000, noNaN: true }),
});
// What the SECC sends is what the EV knows: representable values (1 decimal).
const evseLimits = fc.record({
  maxVoltageV: fc.integer({ min: 2_000, max: 10_000 }).map((v) => v / 10),
  maxCurrentA: fc.integer({ min: 10, max: 5_000 }).map((v) => v / 10),
  maxPowerW: fc.integer({ min: 100, max: 35_000 }).map((v) => v * 10),
});
const target = fc.record({ targetVoltageV: fc.double({ min: 0, max: 1_200, noNaN: true }), targetCurrentA: fc.double({ min: 0, max: 800, noNaN: true }) });

describe('the EV never requests more than its limits nor the EVSE maxima', () => {
  it('dcTargets (pure): within every limit, for any input', () => {
    fc.assert(fc.property(evLimits, fc.option(evseLimits, { nil: undefined }), target, (l, e, t) => {
      const r = dcTargets({ ...TEST_EV_LIMITS, ...l }, t, e);
      expect(r.voltageV).toBeLessThanOrEqual(Math.min(l.maxVoltageV, e?.maxVoltageV ?? Infinity));
      expect(r.currentA).toBeLessThanOrEqual(Math.min(l.maxCurrentA, e?.maxCurrentA ?? Infinity));
      expect(r.currentA * r.voltageV).toBeLessThanOrEqual(Math.min(l.maxPowerW, e?.maxPowerW ?? Infinity) * (1 + 1e-12));
      expect(r.voltageV).toBeGreaterThanOrEqual(0);
      expect(r.currentA).toBeGreaterThanOrEqual(0);
    }), { numRuns: 2_000 });
  });

  it('across a whole CurrentDemand loop, with the EVSE lowering or raising its maxima on the way (encoded requests as the SECC decodes them)', async () => {
    await fc.assert(fc.asyncProperty(
      evLimits, evseLimits, fc.array(target, { minLength: 2, maxLength: 8 }), fc.array(fc.option(evseLimits, { nil: undefined }), { minLength: 8, maxLength: 8 }),
      async (l, initial, targets, updates) => {
        const limits: EvLimits = { ...TEST_EV_LIMITS, ...l };
        const inForce = [{ ...initial }];
        const secc = new ScriptedSecc({
          dc: { ...initial, minVoltageV: 0, minCurrentA: 0 },
          on: {
            CurrentDemandReq: (_r, s, def) => {
              const u = updates[s.count('CurrentDemandReq') - 1];
              if (u) s.o.dc = { ...s.o.dc, ...u };
              inForce.push({ maxVoltageV: s.o.dc.maxVoltageV, maxCurrentA: s.o.dc.maxCurrentA, maxPowerW: s.o.dc.maxPowerW });
              return def();
            },
          },
        });
        const ev = new FakeEv(limits, { ...new FakeEv().base, batteryVoltageV: Math.min(360, l.maxVoltageV, initial.maxVoltageV) });
        ev.dynamic = () => {
          const k = secc.count('CurrentDemandReq');
          return { ...(targets[Math.min(k, targets.length - 1)]!), chargingComplete: k >= targets.length };
        };
        const run = await runIso2({ secc, ev, module: { evccId: '02e7cc000001', channel: 'tcp', pnc: false } });
        expect(run.result.outcome).toBe('completed');
        const reqs = secc.requests('CurrentDemandReq');
        expect(reqs).toHaveLength(targets.length);
        reqs.forEach((r, j) => {
          const e = inForce[j]!;
          expect(atMost(r.body.EVTargetVoltage, Math.min(l.maxVoltageV, e.maxVoltageV))).toBe(true);
          expect(atMost(r.body.EVTargetCurrent, Math.min(l.maxCurrentA, e.maxCurrentA))).toBe(true);
          expect(si(r.body.EVTargetCurrent) * si(r.body.EVTargetVoltage)).toBeLessThanOrEqual(Math.min(l.maxPowerW, e.maxPowerW) * (1 + 1e-9));
          expect(atMost(r.body.EVMaximumCurrentLimit, l.maxCurrentA)).toBe(true);
          expect(atMost(r.body.EVMaximumVoltageLimit, l.maxVoltageV)).toBe(true);
          expect(atMost(r.body.EVMaximumPowerLimit, l.maxPowerW)).toBe(true);
        });
        for (const p of secc.requests('PreChargeReq')) {
          expect(atMost(p.body.EVTargetVoltage, Math.min(l.maxVoltageV, initial.maxVoltageV))).toBe(true);
          expect(atMost(p.body.EVTargetCurrent, 2)).toBe(true);
        }
      },
    ), { numRuns: 60 });
  });
});
