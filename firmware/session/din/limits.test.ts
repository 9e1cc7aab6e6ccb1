import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isEvccError } from '../../../core/errors.ts';
import { checkChargeParameterDiscoveryRes, checkCurrentDemandRes, checkServiceDiscoveryRes } from './checks.ts';
import { createDinCtx } from './context.ts';
import { parseDinSettings } from './settings.ts';
import { FakeEv, runDin, ScriptedDinSecc, siOf } from './test-secc.ts';
import { pvAtMost } from './values.ts';

/** a ≤ b, allowing for the floating-point product Value × 10^Multiplier (400.5 is 4005 × 0.1 = 400.50000000000006). */
const atMost = (a: number, b: number) => a <= b * (1 + 1e-9) + 1e-9;
const pv = (v: number, unit: string) => {
  for (let m = -3; m <= 3; m++) {
    const x = Math.round(v / 10 ** m);
    if (Math.abs(x) <= 32_767) return { Multiplier: m, Unit: unit, Value: x };
  }
  throw new Error('range');
};

describe('DIN: never a request above the EV limits or the EVSE maxima (property)', () => {
  const maxima = fc.record({ maxV: fc.double({ min: 150, max: 1_000, noNaN: true }), maxA: fc.double({ min: 5, max: 500, noNaN: true }), maxW: fc.double({ min: 3_000, max: 400_000, noNaN: true }) });
  it('PreChargeReq and every CurrentDemandReq stay within min(EV, EVSE) voltage, current and power, whatever the BMS asks for', () => {
    fc.assert(fc.property(
      fc.record({
        evMaxV: fc.double({ min: 200, max: 1_000, noNaN: true }),
        evMaxA: fc.double({ min: 10, max: 600, noNaN: true }),
        evMaxW: fc.double({ min: 5_000, max: 350_000, noNaN: true }),
        targetV: fc.double({ min: -50, max: 1_200, noNaN: true }),
        targetA: fc.double({ min: -50, max: 800, noNaN: true }),
        battery: fc.double({ min: 0, max: 1, noNaN: true }),
        cpd: maxima,
        loop: fc.array(maxima, { minLength: 3, maxLength: 6 }),
      }),
      (g) => {
        // The battery sits within both voltage ranges so that PreCharge converges and the loop runs.
        const batteryV = 150 + g.battery * (Math.min(g.evMaxV, g.cpd.maxV) - 150);
        const learned: { maxV: number; maxA: number; maxW: number }[] = [];
        const answerMaxima = (b: Record<string, unknown>, m: { maxV: number; maxA: number; maxW: number }) => {
          b.EVSEMaximumVoltageLimit = pv(m.maxV, 'V');
          b.EVSEMaximumCurrentLimit = pv(m.maxA, 'A');
          b.EVSEMaximumPowerLimit = pv(m.maxW, 'W');
          learned.push({ maxV: siOf(b.EVSEMaximumVoltageLimit), maxA: siOf(b.EVSEMaximumCurrentLimit), maxW: siOf(b.EVSEMaximumPowerLimit) });
        };
        const secc = new ScriptedDinSecc({
          preChargeStepV: 2_000, evse: { maxV: 1_000, maxA: 500, maxW: 400_000, minV: 150, minA: 0, rippleA: 5 },
          on: {
            ChargeParameterDiscoveryReq: (r, n, s) => {
              const a = s.defaultAnswer(r.name, r.body, n);
              answerMaxima((a.ChargeParameterDiscoveryRes as Record<string, Record<string, unknown>>).DC_EVSEChargeParameter!, g.cpd);
              return { body: a };
            },
            CurrentDemandReq: (r, n, s) => {
              const a = s.defaultAnswer(r.name, r.body, n);
              const res = a.CurrentDemandRes as Record<string, unknown>;
              // Present voltage as a charger would deliver it: never above what was asked.
              res.EVSEPresentVoltage = pv(Math.min(siOf(r.body.EVTargetVoltage), g.loop[n - 1]?.maxV ?? Infinity), 'V');
              answerMaxima(res, g.loop[Math.min(n, g.loop.length) - 1]!);
              return { body: a };
            },
          },
        });
        const ev = new FakeEv({ maxVoltageV: g.evMaxV, maxCurrentA: g.evMaxA, maxPowerW: g.evMaxW });
        ev.base = { ...ev.base, batteryVoltageV: batteryV, targetVoltageV: g.targetV, targetCurrentA: g.targetA };
        ev.dynamic = () => ({ chargingComplete: secc.count('CurrentDemandReq') >= g.loop.length });
        const run = runDin({ secc, ev, module: { settings: { preChargeToleranceV: 50 } } });
        expect(run.result.outcome).toBe('completed');
        for (const r of secc.requests('PreChargeReq')) {
          const v = siOf(r.body.EVTargetVoltage);
          expect(atMost(v, Math.min(g.evMaxV, learned[0]!.maxV))).toBe(true);
          expect(atMost(siOf(r.body.EVTargetCurrent), 2)).toBe(true);
        }
        const cds = secc.requests('CurrentDemandReq');
        expect(cds).toHaveLength(g.loop.length);
        cds.forEach((r, i) => {
          const evse = learned[i]!; // CPD's maxima for the first request, then the previous CurrentDemandRes's
          const v = siOf(r.body.EVTargetVoltage);
          const a = siOf(r.body.EVTargetCurrent);
          expect(v).toBeGreaterThanOrEqual(0);
          expect(a).toBeGreaterThanOrEqual(0);
          expect(atMost(v, g.evMaxV) && atMost(v, evse.maxV)).toBe(true);
          expect(atMost(a, g.evMaxA) && atMost(a, evse.maxA)).toBe(true);
          expect(atMost(v * a, g.evMaxW) && atMost(v * a, evse.maxW)).toBe(true);
          expect(atMost(siOf(r.body.EVMaximumVoltageLimit), g.evMaxV) && atMost(siOf(r.body.EVMaximumCurrentLimit), g.evMaxA) && atMost(siOf(r.body.EVMaximumPowerLimit), g.evMaxW)).toBe(true);
        });
      },
    ), { numRuns: 150 });
  });

  it('pvAtMost rounds down, never up, and sends the Unit', () => {
    expect(pvAtMost(400.5, 'V')).toEqual({ Multiplier: -1, Unit: 'V', Value: 4005 });
    expect(pvAtMost(32_766.6, 'W')).toEqual({ Multiplier: 0, Unit: 'W', Value: 32_766 }); // toPhysical rounds to 32 767
    expect(pvAtMost(-3, 'A')).toEqual({ Multiplier: -3, Unit: 'A', Value: 0 });
    fc.assert(fc.property(fc.double({ min: 0, max: 3e7, noNaN: true }), (v) => {
      const p = pvAtMost(v, 'W');
      expect(Math.abs(p.Value)).toBeLessThanOrEqual(32_767);
      expect(atMost(p.Value * 10 ** p.Multiplier, v)).toBe(true);
      // …and loses at most one step of the chosen multiplier.
      expect(v - p.Value * 10 ** p.Multiplier).toBeLessThanOrEqual(10 ** p.Multiplier * (1 + 1e-9));
    }));
  });
});

describe('DIN checks and settings', () => {
  const ctx = createDinCtx({ evccId: '02:e7:cc:00:00:01' });
  const status = { EVSEStatusCode: 'EVSE_Ready', NotificationMaxDelay: 0, EVSENotification: 'None' };
  const cp = () => ({
    DC_EVSEStatus: { ...status }, EVSEMaximumCurrentLimit: { Multiplier: 0, Value: 200 }, EVSEMaximumVoltageLimit: { Multiplier: 0, Value: 500 },
    EVSEMinimumCurrentLimit: { Multiplier: 0, Value: 0 }, EVSEMinimumVoltageLimit: { Multiplier: 0, Value: 150 }, EVSEPeakCurrentRipple: { Multiplier: 0, Value: 5 },
  });

  it('names the first missing or invalid field, accepts values without Unit', () => {
    expect(checkChargeParameterDiscoveryRes({ ResponseCode: 'OK', EVSEProcessing: 'Finished', DC_EVSEChargeParameter: cp() }, ctx)).toBeUndefined();
    expect(checkChargeParameterDiscoveryRes({ ResponseCode: 'OK', EVSEProcessing: 'Ongoing' }, ctx)).toBeUndefined();
    expect(checkChargeParameterDiscoveryRes({ ResponseCode: 'OK' }, ctx)).toBe('EVSEProcessing');
    const noRipple = cp() as Record<string, unknown>;
    delete noRipple.EVSEPeakCurrentRipple;
    expect(checkChargeParameterDiscoveryRes({ EVSEProcessing: 'Finished', DC_EVSEChargeParameter: noRipple }, ctx)).toBe('DC_EVSEChargeParameter.EVSEPeakCurrentRipple');
    expect(checkChargeParameterDiscoveryRes({ EVSEProcessing: 'Finished', DC_EVSEChargeParameter: { ...cp(), DC_EVSEStatus: { EVSENotification: 'None' } } }, ctx)).toBe('DC_EVSEChargeParameter.DC_EVSEStatus.EVSEStatusCode');
    expect(checkChargeParameterDiscoveryRes({ EVSEProcessing: 'Finished', DC_EVSEChargeParameter: { ...cp(), EVSEMaximumPowerLimit: { Multiplier: 3, Unit: 'VA', Value: 50 } } }, ctx)).toBeUndefined();
    expect(checkCurrentDemandRes({ DC_EVSEStatus: status, EVSEPresentVoltage: { Multiplier: 0, Value: 400 } }, ctx)).toBe('EVSEPresentCurrent');
    expect(checkCurrentDemandRes({ DC_EVSEStatus: status, EVSEPresentVoltage: { Multiplier: 0, Value: 400 }, EVSEPresentCurrent: { Multiplier: 9, Value: 1 } }, ctx)).toBe('EVSEPresentCurrent.Multiplier');
    expect(checkServiceDiscoveryRes({ PaymentOptions: { PaymentOption: [] }, ChargeService: {} })).toBe('PaymentOptions.PaymentOption');
    const lax = createDinCtx({ evccId: '02e7cc000001', settings: { strictUnits: false } });
    expect(checkCurrentDemandRes({ DC_EVSEStatus: status, EVSEPresentVoltage: { Multiplier: 0, Unit: 'A', Value: 400 }, EVSEPresentCurrent: { Multiplier: 0, Value: 1 } }, lax)).toBeUndefined();
    expect(checkCurrentDemandRes({ DC_EVSEStatus: status, EVSEPresentVoltage: { Multiplier: 0, Unit: 'A', Value: 400 }, EVSEPresentCurrent: { Multiplier: 0, Value: 1 } }, ctx)).toBe('EVSEPresentVoltage.Unit');
  });

  it('session.din: defaults, unknown keys and out-of-range values refused as CONFIG_INVALID naming the key', () => {
    const d = parseDinSettings({});
    expect(d).toMatchObject({ newSessionId: '0000000000000000', energyTransferType: 'DC_extended', preChargeToleranceV: 10, weldingSafeVoltageV: 60, timeouts: {}, pacing: {} });
    const bad = (raw: unknown) => { try { parseDinSettings(raw); return undefined; } catch (e) { return isEvccError(e, 'CONFIG_INVALID') ? e.message : String(e); } };
    expect(bad({ timeouts: { powerDelivry: 5_000 } })).toMatch(/session\.din\.timeouts/);
    expect(bad({ preChargeCurrentA: 5 })).toMatch(/session\.din\.preChargeCurrentA/);
    expect(bad({ newSessionId: '01' })).toMatch(/session\.din\.newSessionId/);
    expect(bad({ surprise: 1 })).toMatch(/session\.din/);
    expect(() => createDinCtx({ evccId: '02e7cc0000' })).toThrow(/6-byte MAC/);
  });
});
