import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { createLogger, forSubsystem } from '../../core/logger.ts';
import { VirtualClock } from '../clock/virtual.ts';
import { parseSimEvOptions, SimEv, type SimEvOptionsInput } from './sim.ts';

function simEv(options: SimEvOptionsInput = {}) {
  const clock = new VirtualClock();
  const lines: { msg: string; sub?: string }[] = [];
  const root = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  const ev = new SimEv({ clock, log: forSubsystem(root, 'EV') }, options);
  return { clock, ev, lines };
}

async function closeContactors(ev: SimEv, clock: VirtualClock): Promise<void> {
  const closing = ev.setContactors(true);
  clock.advance(1000);
  await closing;
}

/** A DC charger in current control: delivers what the vehicle asks, at the battery's voltage, every `periodMs`. */
function chargeUntilComplete(ev: SimEv, clock: VirtualClock, periodMs = 50, maxSteps = 100_000): number {
  let steps = 0;
  for (let s = ev.status(); !s.chargingComplete && steps < maxSteps; s = ev.status(), steps++) {
    ev.reportEvseOutput({ presentVoltageV: s.batteryVoltageV, presentCurrentA: s.targetCurrentA });
    clock.advance(periodMs);
  }
  return steps;
}

describe('SimEv', () => {
  it('charges 20 → 80 % at a time scale in clock seconds, delivering 60 % of its capacity', async () => {
    const { ev, clock, lines } = simEv({ capacityWh: 60_000, initialSocPercent: 20, targetSocPercent: 80, timeScale: 600 });
    ev.beginSession();
    await closeContactors(ev, clock);
    const first = ev.status();
    expect(first.energyRequestWh).toBeCloseTo(36_000, 6);
    expect(first.chargingComplete).toBe(false);
    const start = clock.now();

    chargeUntilComplete(ev, clock);

    const end = ev.status();
    expect(end.chargingComplete).toBe(true);
    expect(end.bulkChargingComplete).toBe(true);
    expect(end.targetCurrentA).toBe(0);
    expect(end.energyRequestWh).toBe(0);
    // Overshoot is at most one loop period at the taper's end current (20 A · 398 V · 30 s ≈ 66 Wh).
    expect(end.energyDeliveredWh).toBeGreaterThanOrEqual(36_000);
    expect(end.energyDeliveredWh).toBeLessThan(36_000 + 0.005 * 60_000);
    expect(end.socPercent).toBeGreaterThanOrEqual(80);
    // Half an hour of charging (200 A, then the taper) passes in a few clock seconds, as the estimate said.
    const elapsedS = (clock.now() - start) / 1000;
    expect(elapsedS).toBeLessThan(10);
    expect(elapsedS).toBeGreaterThan(first.remainingTimeToFullSocS! * 0.95);
    expect(elapsedS).toBeLessThan(first.remainingTimeToFullSocS! * 1.05);
    expect(lines.map((l) => l.msg)).toEqual([
      'session begins at SoC 20.0 % (target 80 %, 36.0 kWh to go, time scale 600)',
      'contactors closed',
      'bulk SoC 70 % reached',
      `target SoC 80 % reached (${end.socPercent.toFixed(1)} %): charging complete, ${(end.energyDeliveredWh / 1000).toFixed(2)} kWh delivered`,
    ]);
    expect(lines.every((l) => l.sub === 'EV')).toBe(true);
  });

  it('integrates presentVoltage × presentCurrent × dt × timeScale, lazily up to the clock', async () => {
    const { ev, clock } = simEv({ capacityWh: 100_000, initialSocPercent: 20, timeScale: 3600, contactorDelayMs: 0 });
    await ev.setContactors(true);
    ev.reportEvseOutput({ presentVoltageV: 400, presentCurrentA: 100 });
    clock.advance(1000); // one clock second = one hour at 40 kW
    const s = ev.status();
    expect(s.energyDeliveredWh).toBeCloseTo(40_000, 6);
    expect(s.socPercent).toBeCloseTo(60, 9);
    ev.reportEvseOutput({ presentVoltageV: 400, presentCurrentA: -50 }); // discharge counts against the session
    clock.advance(500);
    expect(ev.status().energyDeliveredWh).toBeCloseTo(30_000, 6);
  });

  it('holds full current until the taper, then lowers it towards the target, and stops at the target', () => {
    const at = (soc: number) => simEv({ initialSocPercent: soc, maxCurrentA: 200, maxPowerW: 1_000_000, targetSocPercent: 80, taperWindowPercent: 10, taperEndCurrentPercent: 10 }).ev.status();
    expect(at(20).targetCurrentA).toBe(200);
    expect(at(70).targetCurrentA).toBe(200);
    expect(at(75).targetCurrentA).toBeCloseTo(110, 9);
    expect(at(79.99).targetCurrentA).toBeCloseTo(20, 0);
    expect(at(80)).toMatchObject({ targetCurrentA: 0, chargingComplete: true });
    const currents = Array.from({ length: 21 }, (_, i) => at(60 + i).targetCurrentA);
    for (let i = 1; i < currents.length; i++) expect(currents[i]!).toBeLessThanOrEqual(currents[i - 1]!);
    expect(currents[15]!).toBeLessThan(currents[10]!);
    expect(at(72).bulkChargingComplete).toBe(true); // bulk SoC defaults to where the taper begins
    expect(at(69).bulkChargingComplete).toBe(false);
  });

  it('caps the current at the power limit and targets a voltage just above the battery', () => {
    const { ev } = simEv({ initialSocPercent: 50, maxCurrentA: 300, maxPowerW: 50_000, targetVoltageHeadroomV: 5 });
    const s = ev.status();
    expect(s.batteryVoltageV).toBeCloseTo(383, 9);
    expect(s.targetVoltageV).toBeCloseTo(388, 9);
    expect(s.targetVoltageV * s.targetCurrentA).toBeCloseTo(50_000, 6);
    const nearMax = simEv({ initialSocPercent: 75, maxVoltageV: 398, targetSocPercent: 80 }).ev.status();
    expect(nearMax.targetVoltageV).toBe(398);
  });

  it('never targets beyond its limits, whatever the limits, SoC and delivered output', () => {
    fc.assert(
      fc.property(
        fc.record({
          nominal: fc.constantFrom(400, 800),
          headroomRatio: fc.double({ min: 1.03, max: 1.3, noNaN: true }),
          maxCurrentA: fc.double({ min: 1, max: 600, noNaN: true }),
          maxPowerW: fc.double({ min: 1000, max: 400_000, noNaN: true }),
          capacityWh: fc.double({ min: 1000, max: 150_000, noNaN: true }),
          initialSocPercent: fc.double({ min: 0, max: 100, noNaN: true }),
          targetSocPercent: fc.double({ min: 0, max: 100, noNaN: true }),
          taperWindowPercent: fc.double({ min: 0, max: 100, noNaN: true }),
          taperEndCurrentPercent: fc.double({ min: 1, max: 100, noNaN: true }),
          timeScale: fc.double({ min: 1, max: 10_000, noNaN: true }),
        }),
        fc.array(fc.record({ v: fc.double({ min: 0, max: 1000, noNaN: true }), i: fc.double({ min: -100, max: 600, noNaN: true }), ms: fc.integer({ min: 0, max: 5000 }) }), { maxLength: 8 }),
        (g, outputs) => {
          const clock = new VirtualClock();
          const maxVoltageV = g.nominal * g.headroomRatio;
          const { nominal, headroomRatio: _, ...options } = g;
          const ev = new SimEv({ clock }, { ...options, nominalVoltageV: nominal, maxVoltageV, contactorDelayMs: 0 });
          void ev.setContactors(true);
          const check = () => {
            const s = ev.status();
            expect(s.targetVoltageV).toBeLessThanOrEqual(maxVoltageV);
            expect(s.targetVoltageV).toBeGreaterThanOrEqual(Math.min(s.batteryVoltageV, maxVoltageV));
            expect(s.targetCurrentA).toBeGreaterThanOrEqual(0);
            expect(s.targetCurrentA).toBeLessThanOrEqual(g.maxCurrentA * (1 + 1e-12));
            expect(s.targetVoltageV * s.targetCurrentA).toBeLessThanOrEqual(g.maxPowerW * (1 + 1e-9));
            expect(s.socPercent).toBeGreaterThanOrEqual(0);
            expect(s.socPercent).toBeLessThanOrEqual(100);
            expect(s.energyRequestWh).toBeGreaterThanOrEqual(0);
            expect(s.remainingTimeToFullSocS).toBeGreaterThanOrEqual(0);
            expect(Number.isFinite(s.remainingTimeToFullSocS)).toBe(true);
            if (s.chargingComplete) expect(s.targetCurrentA).toBe(0);
          };
          check();
          for (const o of outputs) {
            ev.reportEvseOutput({ presentVoltageV: o.v, presentCurrentA: o.i });
            clock.advance(o.ms);
            check();
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('moves its contactors after the actuation delay; no energy flows while they are open', async () => {
    const { ev, clock } = simEv({ contactorDelayMs: 120, timeScale: 3600, capacityWh: 100_000 });
    ev.reportEvseOutput({ presentVoltageV: 400, presentCurrentA: 100 });
    let closedReported = false;
    const closing = ev.setContactors(true).then(() => void (closedReported = true));
    clock.advance(119);
    await Promise.resolve();
    expect(ev.status().contactorsClosed).toBe(false);
    expect(closedReported).toBe(false);
    expect(ev.status().energyDeliveredWh).toBe(0);
    clock.advance(1);
    await closing;
    expect(ev.status().contactorsClosed).toBe(true);
    clock.advance(1000);
    expect(ev.status().energyDeliveredWh).toBeCloseTo(40_000, 6);
    const opening = ev.setContactors(false);
    clock.advance(60);
    expect(ev.status().contactorsClosed).toBe(true); // still moving: current still flows
    clock.advance(60);
    await opening;
    clock.advance(1000);
    expect(ev.status()).toMatchObject({ contactorsClosed: false });
    expect(ev.status().energyDeliveredWh).toBeCloseTo(40_000 + 40_000 * 0.12, 6);
    expect(clock.pending).toBe(0);
  });

  it('rejects a contactor command superseded before it completed, and every command after close()', async () => {
    const { ev, clock } = simEv({ contactorDelayMs: 100 });
    const closing = ev.setContactors(true);
    clock.advance(50);
    const reopened = ev.setContactors(false);
    await expect(closing).rejects.toMatchObject({ code: 'ABORTED' });
    await reopened; // already open: resolves at once
    expect(clock.pending).toBe(0);
    const again = ev.setContactors(true);
    await ev.close();
    await expect(again).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(ev.setContactors(true)).rejects.toMatchObject({ code: 'ABORTED' });
    expect(clock.pending).toBe(0);
  });

  it('raises stop and pause on the bench, asks for no current meanwhile, and clears them for a new session', () => {
    const { ev, lines } = simEv({ initialSocPercent: 40 });
    const asked = ev.status().targetCurrentA;
    expect(asked).toBeGreaterThan(0);
    ev.requestPause();
    expect(ev.status()).toMatchObject({ pauseRequested: true, stopRequested: false, targetCurrentA: 0 });
    ev.resume();
    expect(ev.status()).toMatchObject({ pauseRequested: false, targetCurrentA: asked });
    ev.requestStop();
    expect(ev.status()).toMatchObject({ stopRequested: true, targetCurrentA: 0 });
    ev.requestPause();
    ev.beginSession();
    expect(ev.status()).toMatchObject({ stopRequested: false, pauseRequested: false, targetCurrentA: asked, energyDeliveredWh: 0 });
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['driver requests stop', 'driver requests pause', 'driver resumes']));
  });

  it('reports an injected error as not ready, across sessions, until cleared', () => {
    const { ev } = simEv();
    ev.injectError('FAILED_RESSTemperatureInhibit');
    expect(ev.status()).toMatchObject({ ready: false, errorCode: 'FAILED_RESSTemperatureInhibit', targetCurrentA: 0 });
    ev.beginSession();
    expect(ev.status().errorCode).toBe('FAILED_RESSTemperatureInhibit');
    ev.injectError('NO_ERROR');
    expect(ev.status().ready).toBe(true);
    expect(ev.status().targetCurrentA).toBeGreaterThan(0);
  });

  it('resets the session energy at beginSession but keeps the battery where it is', async () => {
    const { ev, clock } = simEv({ timeScale: 600, contactorDelayMs: 0 });
    await ev.setContactors(true);
    ev.beginSession();
    ev.reportEvseOutput({ presentVoltageV: 380, presentCurrentA: 200 });
    clock.advance(1000);
    const soc = ev.status().socPercent;
    expect(ev.status().energyDeliveredWh).toBeGreaterThan(0);
    ev.beginSession();
    clock.advance(1000); // the held output is cleared with the session
    expect(ev.status()).toMatchObject({ energyDeliveredWh: 0, socPercent: soc });
  });

  it('estimates the remaining times in clock seconds, counting down while charging', async () => {
    const { ev, clock } = simEv({ initialSocPercent: 20, timeScale: 600 });
    await closeContactors(ev, clock);
    const before = ev.status();
    expect(before.remainingTimeToBulkSocS!).toBeLessThan(before.remainingTimeToFullSocS!);
    // 20 → 70 % at 200 A (the power limit is not reached below 400 V): 30 kWh at ~76 kW is ~1400 s, 2.3 clock seconds.
    expect(before.remainingTimeToBulkSocS!).toBeGreaterThan(2);
    expect(before.remainingTimeToBulkSocS!).toBeLessThan(2.6);
    ev.reportEvseOutput({ presentVoltageV: before.batteryVoltageV, presentCurrentA: before.targetCurrentA });
    clock.advance(500);
    expect(ev.status().remainingTimeToFullSocS!).toBeLessThan(before.remainingTimeToFullSocS!);
    expect(simEv({ initialSocPercent: 75 }).ev.status().remainingTimeToBulkSocS).toBe(0);
  });

  it('exposes its limits, with the AC ones apart from the DC ones', () => {
    const { ev } = simEv({ maxVoltageV: 450, maxCurrentA: 250, maxPowerW: 100_000, acMinCurrentA: 6, acMaxCurrentA: 32, capacityWh: 77_000, targetSocPercent: 90, bulkSocPercent: 75 });
    expect(ev.limits).toEqual({ maxVoltageV: 450, maxCurrentA: 250, minCurrentA: 6, acMaxCurrentA: 32, maxPowerW: 100_000, energyCapacityWh: 77_000, fullSocPercent: 90, bulkSocPercent: 75 });
    expect(ev.name).toBe('sim-ev');
  });

  it('follows the configured open-circuit voltage: scaled by the nominal voltage, or a curve of its own', () => {
    const pack800 = simEv({ nominalVoltageV: 800, maxVoltageV: 850, initialSocPercent: 0 }).ev.status();
    expect(pack800.batteryVoltageV).toBeCloseTo(660, 9);
    const linear = simEv({ ocvCurve: [{ socPercent: 0, voltageV: 300 }, { socPercent: 100, voltageV: 400 }], initialSocPercent: 25 }).ev.status();
    expect(linear.batteryVoltageV).toBeCloseTo(325, 9);
  });

  it('refuses bad options with CONFIG_INVALID naming each issue', () => {
    const bad: [unknown, string][] = [
      [{ capacityWh: -1 }, 'capacityWh'],
      [{ initialSocPercent: 120 }, 'initialSocPercent'],
      [{ bulkSocPercent: 90, targetSocPercent: 80 }, 'bulkSocPercent'],
      [{ acMinCurrentA: 20, acMaxCurrentA: 16 }, 'acMinCurrentA'],
      [{ maxVoltageV: 390 }, 'maxVoltageV'],
      [{ nominalVoltageV: 800 }, 'maxVoltageV'],
      [{ ocvCurve: [{ socPercent: 0, voltageV: 300 }, { socPercent: 90, voltageV: 400 }] }, 'ocvCurve'],
      [{ ocvCurve: [{ socPercent: 0, voltageV: 400 }, { socPercent: 100, voltageV: 300 }] }, 'ocvCurve'],
      [{ ocvCurve: [{ socPercent: 0, voltageV: 300 }, { socPercent: 100, voltageV: 400 }], nominalVoltageV: 400 }, 'nominalVoltageV'],
      [{ taperEndCurrentPercent: 0 }, 'taperEndCurrentPercent'],
      [{ timeScale: 0 }, 'timeScale'],
      [{ capacityWH: 1000 }, 'options'],
    ];
    for (const [options, path] of bad) {
      let err: unknown;
      try {
        parseSimEvOptions(options);
      } catch (e) {
        err = e;
      }
      expect(isEvccError(err, 'CONFIG_INVALID'), JSON.stringify(options)).toBe(true);
      expect((err as { details: { issues: string[] } }).details.issues.some((i) => i.startsWith(path)), JSON.stringify(options)).toBe(true);
    }
    expect(() => new SimEv({ clock: new VirtualClock() }, { maxVoltageV: 390 })).toThrowError(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(parseSimEvOptions(undefined)).toMatchObject({ capacityWh: 60_000, initialSocPercent: 20, targetSocPercent: 80, timeScale: 1 });
  });
});
