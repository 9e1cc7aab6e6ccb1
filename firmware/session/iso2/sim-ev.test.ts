import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../../hal/clock/virtual.ts';
import { SimEv } from '../../../hal/ev/sim.ts';
import { runIso2, ScriptedSecc } from './test-secc.ts';

describe('ISO-2 DC with the SimEv battery model', () => {
  it('charges from 20 % to the 80 % target: the battery fills from the reported EVSE output, the BMS tapers, the session completes', async () => {
    const clock = new VirtualClock();
    const ev = new SimEv({ clock }, { initialSocPercent: 20, targetSocPercent: 80, capacityWh: 60_000, timeScale: 600 });
    ev.beginSession();
    const secc = new ScriptedSecc({ dc: { maxVoltageV: 500, maxCurrentA: 150, maxPowerW: 60_000, minVoltageV: 150, minCurrentA: 0 } });
    const run = await runIso2({ secc, ev, clock, module: { evccId: '02e7cc000001', channel: 'tcp', pnc: false } });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, protocol: { endedBy: 'ev-complete', socStartPercent: 20 } });
    const p = run.result.protocol!;
    expect(p.socEndPercent as number).toBeGreaterThanOrEqual(80);
    // 60 % of 60 kWh went in (a little more: the last 100 ms of the loop run on).
    expect(p.energyWh as number).toBeGreaterThan(35_500);
    expect(p.energyWh as number).toBeLessThan(37_500);
    const targets = secc.requests('CurrentDemandReq').map((r) => { const x = r.body.EVTargetCurrent as { Value: number; Multiplier: number }; return x.Value * 10 ** x.Multiplier; });
    expect(Math.max(...targets)).toBeLessThanOrEqual(150);
    expect(targets.at(-1)!).toBeLessThan(targets[0]!); // the taper towards the target
    expect(ev.status().contactorsClosed).toBe(false);
    expect(clock.pending).toBe(0);
  });
});
