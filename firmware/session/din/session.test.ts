import { describe, expect, it } from 'vitest';
import { TimerTable } from '../timers.ts';
import { DIN_PACING, DIN_TIMERS } from './timers.ts';
import { EVCC_ID, FakeEv, gaps, notes, runDin, ScriptedDinSecc, SECC_SESSION_ID, sentAt, siOf, type DinRun } from './test-secc.ts';

/** A vehicle that is full after `n` CurrentDemandReqs, 10 Wh and 1 % per request. */
function fullAfter(secc: ScriptedDinSecc, n: number, ev = new FakeEv()): FakeEv {
  ev.dynamic = () => {
    const k = secc.count('CurrentDemandReq');
    return { chargingComplete: k >= n, energyDeliveredWh: 10 * k, socPercent: 20 + k };
  };
  return ev;
}

const effectAt = (run: DinRun, kind: string, closed: boolean) => run.effects.filter((e) => e.request.kind === kind && (e.request as { closed: boolean }).closed === closed).map((e) => e.at);

/** Every PhysicalValue in a request body carries its Unit. */
function physicalValues(v: unknown, out: Record<string, unknown>[] = []): Record<string, unknown>[] {
  if (Array.isArray(v)) v.forEach((x) => physicalValues(x, out));
  else if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if ('Multiplier' in o && 'Value' in o) out.push(o);
    else Object.values(o).forEach((x) => physicalValues(x, out));
  }
  return out;
}

describe('DIN SPEC 70121: a whole DC session over plain TCP (EIM)', () => {
  const RTT = 5;
  const EFFECT = 10;
  const secc = new ScriptedDinSecc({ rttMs: RTT, authOngoing: 2, cableCheckOngoing: 2, preChargeStepV: 100 });
  const ev = fullAfter(secc, 5);
  const run = runDin({ secc, ev, effectMs: EFFECT });

  it('runs the messages of PROTOCOLS.md §8 in order and ends completed, in order, for the EV being full', () => {
    expect(secc.received.map((r) => r.name)).toEqual([
      'SessionSetupReq', 'ServiceDiscoveryReq', 'ServicePaymentSelectionReq',
      'ContractAuthenticationReq', 'ContractAuthenticationReq', 'ContractAuthenticationReq',
      'ChargeParameterDiscoveryReq', 'CableCheckReq', 'CableCheckReq', 'CableCheckReq',
      'PreChargeReq', 'PreChargeReq', 'PreChargeReq', 'PreChargeReq', 'PowerDeliveryReq',
      'CurrentDemandReq', 'CurrentDemandReq', 'CurrentDemandReq', 'CurrentDemandReq', 'CurrentDemandReq',
      'PowerDeliveryReq', 'WeldingDetectionReq', 'WeldingDetectionReq', 'SessionStopReq',
    ]);
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'DIN_EV_CHARGING_COMPLETE', failure: false } });
    expect(run.result.negotiated).toMatchObject({ namespace: 'urn:din:70121:2012:MsgDef', protocol: 'din' });
    expect(run.s2Closed).toBe(false);
    expect(run.contactorsClosed).toBe(false);
  });

  it('SessionSetupReq carries SessionID zero (eight zero bytes) and the EV MAC; every later request the SECC SessionID', () => {
    const [setup, ...rest] = secc.received;
    expect(setup!.header.SessionID).toBe('0000000000000000');
    expect(setup!.body).toEqual({ EVCCID: EVCC_ID });
    for (const r of rest) expect(r.header.SessionID).toBe(SECC_SESSION_ID);
  });

  it('selects ExternalPayment and the charge service; ContractAuthenticationReq carries no challenge', () => {
    expect(secc.requests('ServicePaymentSelectionReq')[0]!.body).toEqual({ SelectedPaymentOption: 'ExternalPayment', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } });
    for (const r of secc.requests('ContractAuthenticationReq')) expect(r.body).toEqual({});
  });

  it('sends the DC charge parameters of the EV port, every PhysicalValue with its Unit', () => {
    const cpd = secc.requests('ChargeParameterDiscoveryReq')[0]!.body;
    expect(cpd.EVRequestedEnergyTransferType).toBe('DC_extended');
    const p = cpd.DC_EVChargeParameter as Record<string, unknown>;
    expect([siOf(p.EVMaximumCurrentLimit), siOf(p.EVMaximumVoltageLimit), siOf(p.EVMaximumPowerLimit), siOf(p.EVEnergyCapacity), siOf(p.EVEnergyRequest)])
      .toEqual([200, 450, 80_000, 60_000, 36_000]);
    expect([p.FullSOC, p.BulkSOC]).toEqual([100, 80]);
    expect(p.DC_EVStatus).toEqual({ EVReady: 1, EVCabinConditioning: 0, EVRESSConditioning: 0, EVErrorCode: 'NO_ERROR', EVRESSSOC: 20 });
    const all = secc.received.flatMap((r) => physicalValues(r.body));
    expect(all.length).toBeGreaterThan(20);
    for (const v of all) expect(v.Unit).toMatch(/^(V|A|W|Wh|s)$/);
  });

  it('paces every repetition by its interval (virtual clock: the gap is the interval plus the round trip)', () => {
    expect(gaps(sentAt(run, 'ContractAuthenticationReq'))).toEqual([DIN_PACING.ongoingRepeat.ms + RTT, DIN_PACING.ongoingRepeat.ms + RTT]);
    expect(gaps(sentAt(run, 'CableCheckReq'))).toEqual([DIN_PACING.cableCheckRepeat.ms + RTT, DIN_PACING.cableCheckRepeat.ms + RTT]);
    expect(gaps(sentAt(run, 'PreChargeReq'))).toEqual([1, 2, 3].map(() => DIN_PACING.preChargeRepeat.ms + RTT));
    expect(gaps(sentAt(run, 'CurrentDemandReq'))).toEqual([1, 2, 3, 4].map(() => DIN_PACING.currentDemandInterval.ms + RTT));
    expect(gaps(sentAt(run, 'WeldingDetectionReq'))).toEqual([DIN_PACING.weldingDetectionRepeat.ms + RTT]);
    // Everything else follows its response at once.
    const [cpd] = sentAt(run, 'ChargeParameterDiscoveryReq');
    expect(cpd! - sentAt(run, 'ContractAuthenticationReq').at(-1)!).toBe(RTT);
  });

  it('closes S2 before the first CableCheckReq, the contactors after PreCharge and before PowerDeliveryReq(true)', () => {
    const [s2Close] = effectAt(run, 'chargeRequest', true);
    const [cpdSent] = sentAt(run, 'ChargeParameterDiscoveryReq');
    expect(s2Close).toBe(cpdSent! + RTT);
    expect(sentAt(run, 'CableCheckReq')[0]).toBe(s2Close! + EFFECT);
    const [close] = effectAt(run, 'contactors', true);
    expect(close).toBe(sentAt(run, 'PreChargeReq').at(-1)! + RTT);
    const [pdStart, pdStop] = secc.requests('PowerDeliveryReq');
    expect(pdStart!.at).toBe(close! + EFFECT);
    expect(pdStart!.body).toMatchObject({ ReadyToChargeState: 1, DC_EVPowerDeliveryParameter: { ChargingComplete: 0, BulkChargingComplete: 0 } });
    expect(pdStop!.body).toMatchObject({ ReadyToChargeState: 0, DC_EVPowerDeliveryParameter: { ChargingComplete: 1 } });
  });

  it('PreCharge targets the battery voltage at ≤ 2 A and ends within the tolerance', () => {
    for (const r of secc.requests('PreChargeReq')) expect([siOf(r.body.EVTargetVoltage), siOf(r.body.EVTargetCurrent)]).toEqual([350, 1]);
    expect(notes(run).some((m) => m.includes('CableCheck'))).toBe(false);
  });

  it('at the end: S2 opens on PowerDeliveryRes(false), then the contactors, then WeldingDetection until safe, then SessionStop', () => {
    const pdStopAt = secc.requests('PowerDeliveryReq')[1]!.at;
    const [s2Open] = effectAt(run, 'chargeRequest', false);
    const [open] = effectAt(run, 'contactors', false);
    expect(s2Open).toBe(pdStopAt + RTT);
    expect(open).toBe(s2Open! + EFFECT);
    expect(sentAt(run, 'WeldingDetectionReq')[0]).toBe(open! + EFFECT);
    expect(secc.requests('WeldingDetectionReq')[0]!.body).toMatchObject({ DC_EVStatus: { EVReady: 0 } });
    expect(secc.requests('SessionStopReq')[0]!.body).toEqual({});
  });

  it('CurrentDemandReq asks for what the BMS wants within every limit, and sends the EV maxima', () => {
    for (const r of secc.requests('CurrentDemandReq')) {
      expect([siOf(r.body.EVTargetVoltage), siOf(r.body.EVTargetCurrent)]).toEqual([400, 120]);
      expect([siOf(r.body.EVMaximumVoltageLimit), siOf(r.body.EVMaximumCurrentLimit), siOf(r.body.EVMaximumPowerLimit)]).toEqual([450, 200, 80_000]);
    }
    // The vehicle is told what the charger delivers (PreCharge ramp, loop, WeldingDetection decay).
    expect(ev.outputs.map((o) => o.presentVoltageV)).toEqual([100, 200, 300, 350, 400, 400, 400, 400, 400, 300, 30]);
    expect(ev.outputs.filter((o) => o.presentCurrentA > 0)).toHaveLength(5);
  });

  it('summarises the session: din, ExternalPayment, SessionID, EVSEID, EVSE limits, SoC and energy', () => {
    expect(run.result.protocol).toEqual({
      protocol: 'din', payment: 'ExternalPayment', energyTransferMode: 'DC_extended', sessionId: SECC_SESSION_ID, evseId: '0123456789',
      evseLimits: { maxVoltageV: 500, maxCurrentA: 150, maxPowerW: 60_000, minVoltageV: 150, minCurrentA: 0, peakCurrentRippleA: 5 },
      socStart: 20, socEnd: 25, energyWh: 50, presentVoltageV: 30,
      isolation: 'Valid', currentDemandRequests: 5, weldingDetection: 'safe', endedBy: 'DIN_EV_CHARGING_COMPLETE',
    });
  });
});

describe('DIN timers: each V2G_EVCC_Msg_Timeout as the virtual clock measures it', () => {
  const cases: [string, string, number, number?][] = [
    ['SessionSetupReq', DIN_TIMERS.msgDefault.name, 2_000],
    ['ServiceDiscoveryReq', DIN_TIMERS.msgDefault.name, 2_000],
    ['ServicePaymentSelectionReq', DIN_TIMERS.msgDefault.name, 2_000],
    ['ContractAuthenticationReq', DIN_TIMERS.msgDefault.name, 2_000],
    ['ChargeParameterDiscoveryReq', DIN_TIMERS.msgChargeParameterDiscovery.name, 2_000],
    ['CableCheckReq', DIN_TIMERS.msgCableCheck.name, 2_000],
    ['PreChargeReq', DIN_TIMERS.msgPreCharge.name, 2_000],
    ['PowerDeliveryReq', DIN_TIMERS.msgPowerDelivery.name, 2_000, 1],
    ['CurrentDemandReq', DIN_TIMERS.msgCurrentDemand.name, 250],
    ['SessionStopReq', DIN_TIMERS.msgDefault.name, 2_000],
  ];
  it.each(cases)('no answer to %s: DIN_TIMEOUT (%s) after exactly %i ms', (name, timerName, ms, nth) => {
    const secc = new ScriptedDinSecc({ on: { [name]: (_r, n) => (nth === undefined || n === nth ? { silent: true } : undefined) } });
    const ev = fullAfter(secc, 2);
    // SessionStopReq is only reached on a stop: silence there keeps the first reason (the EV is full).
    const run = runDin({ secc, ev });
    const sent = sentAt(run, name).at(-1)!;
    const endedAt = run.events.at(-1)!.at;
    expect(endedAt - sent).toBe(ms);
    expect(run.result.orderly).toBe(false);
    if (name === 'SessionStopReq') expect(run.result.reason.code).toBe('DIN_EV_CHARGING_COMPLETE');
    else expect(run.result.reason).toMatchObject({ code: 'DIN_TIMEOUT', details: { timer: timerName } });
  });

  it('WeldingDetection unanswered: SessionStopReq exactly V2G_EVCC_Msg_Timeout later, in order, the first reason kept', () => {
    const secc = new ScriptedDinSecc({ on: { WeldingDetectionReq: () => ({ silent: true }) } });
    const run = runDin({ secc, ev: fullAfter(secc, 2) });
    expect(sentAt(run, 'SessionStopReq')[0]! - sentAt(run, 'WeldingDetectionReq')[0]!).toBe(DIN_TIMERS.msgWeldingDetection.ms);
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'DIN_EV_CHARGING_COMPLETE' } });
    expect(run.result.protocol).toMatchObject({ weldingDetection: 'unanswered' });
    expect(notes(run, 'warn').some((m) => m.includes('no WeldingDetectionRes'))).toBe(true);
  });

  it('a slow PowerDeliveryRes within the 2 s timeout is fine; beyond it is DIN_TIMEOUT; `powerDelivery` relaxes it', () => {
    const slow = (ms: number) => new ScriptedDinSecc({ on: { PowerDeliveryReq: (r, n, s) => (n === 1 ? { body: s.defaultAnswer(r.name, r.body, n), rttMs: ms } : undefined) } });
    const ok = slow(1_900);
    expect(runDin({ secc: ok, ev: fullAfter(ok, 2) }).result).toMatchObject({ outcome: 'completed', orderly: true });
    const late = slow(2_100);
    expect(runDin({ secc: late, ev: fullAfter(late, 2) }).result.reason).toMatchObject({ code: 'DIN_TIMEOUT', details: { message: 'PowerDeliveryRes' } });
    // One field charger needs 5 s (ccs32clara allows 6 s): the DIN setting, not the engine-wide ISO-2 key.
    const compleo = slow(5_000);
    expect(runDin({ secc: compleo, ev: fullAfter(compleo, 2), module: { settings: { timeouts: { powerDelivery: 6_000 } } } }).result.outcome).toBe('completed');
    const isoKey = slow(5_000);
    expect(runDin({ secc: isoKey, ev: fullAfter(isoKey, 2), timers: new TimerTable({ powerDelivery: 6_000 }) }).result.reason.code).toBe('DIN_TIMEOUT');
  });

  it('pacing settings change the intervals', () => {
    const secc = new ScriptedDinSecc({ authOngoing: 3 });
    const run = runDin({ secc, ev: fullAfter(secc, 3), module: { settings: { pacing: { ongoingRepeat: 2_500, currentDemandInterval: 40 } } } });
    expect(gaps(sentAt(run, 'ContractAuthenticationReq'))).toEqual([2_505, 2_505, 2_505]);
    expect(gaps(sentAt(run, 'CurrentDemandReq'))).toEqual([45, 45]);
  });

  it('the new-session SessionID form is a setting (one zero byte)', () => {
    const secc = new ScriptedDinSecc();
    runDin({ secc, ev: fullAfter(secc, 1), module: { settings: { newSessionId: '00' } } });
    expect(secc.received[0]!.header.SessionID).toBe('00');
  });
});
