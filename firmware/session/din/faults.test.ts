import { describe, expect, it } from 'vitest';
import { DIN_PACING, DIN_TIMERS } from './timers.ts';
import { evseStatus, FakeEv, gaps, notes, runDin, ScriptedDinSecc, sentAt, siOf, truncateFrom, type DinRun, type SeccRequest } from './test-secc.ts';

function fullAfter(secc: ScriptedDinSecc, n: number, ev = new FakeEv()): FakeEv {
  ev.dynamic = () => ({ chargingComplete: secc.count('CurrentDemandReq') >= n });
  return ev;
}
const names = (secc: ScriptedDinSecc) => secc.received.map((r) => r.name);
const tail = (secc: ScriptedDinSecc, n: number) => names(secc).slice(-n);
const effectsOf = (run: DinRun) => run.effects.map((e) => `${e.request.kind}:${(e.request as { closed?: boolean }).closed}`);
/** The default answer with a change to its body element. */
const patched = (patch: (body: Record<string, unknown>) => void) => (r: SeccRequest, n: number, s: ScriptedDinSecc) => {
  const answer = s.defaultAnswer(r.name, r.body, n);
  patch(Object.values(answer)[0] as Record<string, unknown>);
  return { body: answer };
};
const ORDERLY_END = ['PowerDeliveryReq', 'WeldingDetectionReq', 'WeldingDetectionReq', 'SessionStopReq'];

describe('DIN: EVSEProcessing=Ongoing is paced and bounded', () => {
  it('ContractAuthentication Ongoing: one request per second (plus the round trip), 10 in the first 10 s', () => {
    const secc = new ScriptedDinSecc({ authOngoing: 15 });
    const run = runDin({ secc, ev: fullAfter(secc, 1) });
    const ca = sentAt(run, 'ContractAuthenticationReq');
    expect(ca).toHaveLength(16);
    const first = ca[0]!;
    expect(ca.filter((t) => t < first + 10_000)).toHaveLength(10);
    expect(new Set(gaps(ca))).toEqual(new Set([DIN_PACING.ongoingRepeat.ms + secc.o.rttMs]));
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    expect(notes(run, 'info').filter((m) => m.includes('waiting for the charger to authorise'))).toHaveLength(1);
  });

  it('Ongoing forever: DIN_ONGOING_TIMEOUT when V2G_EVCC_Ongoing_Timeout has run out, then SessionStop in order', () => {
    const secc = new ScriptedDinSecc({ authOngoing: Infinity });
    const run = runDin({ secc, ev: fullAfter(secc, 1) });
    const ca = sentAt(run, 'ContractAuthenticationReq');
    const first = ca[0]!;
    // Paced 1 s apart; the last request goes out at the bound at the latest; its Ongoing answer ends the series.
    expect(ca.at(-1)! - first).toBeLessThanOrEqual(DIN_TIMERS.ongoing.ms);
    expect(ca.at(-1)! - first).toBeGreaterThan(DIN_TIMERS.ongoing.ms - DIN_PACING.ongoingRepeat.ms - secc.o.rttMs);
    expect(ca).toHaveLength(61);
    expect(run.result).toMatchObject({
      outcome: 'failed', orderly: true,
      reason: { code: 'DIN_ONGOING_TIMEOUT', failure: true, details: { message: 'ContractAuthenticationRes', timer: 'V2G_EVCC_Ongoing_Timeout', limitMs: 60_000, requests: 61 } },
    });
    expect(tail(secc, 2)).toEqual(['ContractAuthenticationReq', 'SessionStopReq']);
    expect(run.effects).toEqual([]);
  });

  it('the Ongoing bound is a setting (slow RFID authorisation: 120 s)', () => {
    const secc = new ScriptedDinSecc({ authOngoing: 100 });
    const run = runDin({ secc, ev: fullAfter(secc, 1), module: { settings: { timeouts: { ongoing: 120_000 } } } });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    expect(secc.count('ContractAuthenticationReq')).toBe(101);
  });

  it('ChargeParameterDiscovery Ongoing forever: the same bound', () => {
    const secc = new ScriptedDinSecc({ cpdOngoing: Infinity });
    const run = runDin({ secc, ev: fullAfter(secc, 1) });
    expect(run.result.reason).toMatchObject({ code: 'DIN_ONGOING_TIMEOUT', details: { message: 'ChargeParameterDiscoveryRes' } });
    expect(tail(secc, 1)).toEqual(['SessionStopReq']);
  });

  it('V2G_EVCC_ReadyToCharge_Timeout counts from plug-in: 150 s after it, Ongoing or not, the session stops', () => {
    const secc = new ScriptedDinSecc({ authOngoing: Infinity });
    const run = runDin({ secc, ev: fullAfter(secc, 1), module: { plugInAt: -120_000, settings: { timeouts: { ongoing: 100_000 } } } });
    expect(run.result.reason).toMatchObject({ code: 'DIN_READY_TO_CHARGE_TIMEOUT', details: { limitMs: 150_000 } });
    expect(sentAt(run, 'ContractAuthenticationReq').at(-1)!).toBeGreaterThanOrEqual(29_000);
    expect(sentAt(run, 'ContractAuthenticationReq').at(-1)!).toBeLessThan(31_000);
  });
});

describe('DIN: CableCheck and PreCharge are bounded', () => {
  it('CableCheck Ongoing forever: DIN_CABLE_CHECK_TIMEOUT after V2G_EVCC_CableCheck_Timeout, S2 opened before SessionStopReq', () => {
    const secc = new ScriptedDinSecc({ cableCheckOngoing: Infinity });
    const run = runDin({ secc, ev: fullAfter(secc, 1) });
    const cc = sentAt(run, 'CableCheckReq');
    expect(cc.at(-1)! - cc[0]!).toBeLessThanOrEqual(DIN_TIMERS.cableCheck.ms);
    expect(cc.length).toBeGreaterThan(70);
    expect(cc.length).toBeLessThanOrEqual(DIN_TIMERS.cableCheck.ms / DIN_PACING.cableCheckRepeat.ms + 1);
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'DIN_CABLE_CHECK_TIMEOUT', details: { isolation: 'Invalid' } } });
    expect(tail(secc, 2)).toEqual(['CableCheckReq', 'SessionStopReq']);
    expect(effectsOf(run)).toEqual(['chargeRequest:true', 'chargeRequest:false']);
    expect(run.effects[1]!.at).toBeLessThan(sentAt(run, 'SessionStopReq')[0]!);
  });

  it('a Finished CableCheck whose isolation is still Invalid is repeated; Fault stops at once (DIN_ISOLATION_FAULT)', () => {
    const invalid = new ScriptedDinSecc({ cableCheckOngoing: 0, on: { CableCheckReq: patched((b) => { (b.DC_EVSEStatus as Record<string, unknown>).EVSEIsolationStatus = 'Invalid'; }) } });
    expect(runDin({ secc: invalid, ev: fullAfter(invalid, 1) }).result.reason.code).toBe('DIN_CABLE_CHECK_TIMEOUT');
    const fault = new ScriptedDinSecc({ cableCheckOngoing: 1, isolation: 'Fault' });
    const run = runDin({ secc: fault, ev: fullAfter(fault, 1) });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'DIN_ISOLATION_FAULT' } });
    expect(fault.count('CableCheckReq')).toBe(2);
    expect(fault.count('PreChargeReq')).toBe(0);
  });

  it('CableCheck without EVSEIsolationStatus (optional in DIN): Finished is taken as the result', () => {
    const secc = new ScriptedDinSecc({ cableCheckOngoing: 0, isolation: undefined });
    const run = runDin({ secc, ev: fullAfter(secc, 1) });
    expect(run.result.outcome).toBe('completed');
    expect(notes(run, 'info').some((m) => m.includes('without EVSEIsolationStatus'))).toBe(true);
  });

  it('PreCharge that never converges: DIN_PRECHARGE_TIMEOUT after V2G_EVCC_PreCharge_Timeout; contactors never closed', () => {
    const secc = new ScriptedDinSecc({ preChargeStepV: 5 });
    const run = runDin({ secc, ev: fullAfter(secc, 1) });
    const pc = sentAt(run, 'PreChargeReq');
    expect(pc.at(-1)! - pc[0]!).toBeLessThanOrEqual(DIN_TIMERS.preCharge.ms);
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'DIN_PRECHARGE_TIMEOUT', details: { batteryVoltageV: 350, toleranceV: 10 } } });
    expect(effectsOf(run)).toEqual(['chargeRequest:true', 'chargeRequest:false']);
    expect(tail(secc, 1)).toEqual(['SessionStopReq']);
  });

  it('the PreCharge bound and tolerance are settings', () => {
    const secc = new ScriptedDinSecc({ preChargeStepV: 5 });
    const run = runDin({ secc, ev: fullAfter(secc, 1), module: { settings: { timeouts: { preChargeTotal: 20_000 }, preChargeToleranceV: 20 } } });
    expect(run.result.outcome).toBe('completed');
    // 5 V per request from 0 V to within 20 V of 350 V.
    expect(secc.count('PreChargeReq')).toBe(66);
  });
});

describe('DIN: the charge loop stops in order with typed reasons', () => {
  it('EVSE_EmergencyShutdown in CurrentDemandRes: DIN_EVSE_EMERGENCY_SHUTDOWN, PowerDelivery(false), WeldingDetection, SessionStop', () => {
    const secc = new ScriptedDinSecc({ on: { CurrentDemandReq: (r, n, s) => (n === 3 ? patched((b) => { b.DC_EVSEStatus = evseStatus({ code: 'EVSE_EmergencyShutdown' }); })(r, n, s) : undefined) } });
    const run = runDin({ secc, ev: fullAfter(secc, 100) });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'DIN_EVSE_EMERGENCY_SHUTDOWN', failure: true } });
    expect(secc.count('CurrentDemandReq')).toBe(3);
    expect(tail(secc, 4)).toEqual(ORDERLY_END);
    expect(secc.requests('PowerDeliveryReq')[1]!.body.ReadyToChargeState).toBe(0);
    expect(run.s2Closed || run.contactorsClosed).toBe(false);
  });

  it('EVSENotification=StopCharging: a normal end (DIN_EVSE_STOP_CHARGING, completed)', () => {
    const secc = new ScriptedDinSecc({ on: { CurrentDemandReq: (r, n, s) => (n === 2 ? patched((b) => { b.DC_EVSEStatus = evseStatus({ notification: 'StopCharging' }); })(r, n, s) : undefined) } });
    const run = runDin({ secc, ev: fullAfter(secc, 100) });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'DIN_EVSE_STOP_CHARGING', failure: false } });
    expect(tail(secc, 4)).toEqual(ORDERLY_END);
  });

  it('EVSE_Shutdown (stop button at the charger) is a normal end; EVSE_Malfunction a failure', () => {
    const at = (code: string) => new ScriptedDinSecc({ on: { CurrentDemandReq: (r, n, s) => (n === 2 ? patched((b) => { b.DC_EVSEStatus = evseStatus({ code }); })(r, n, s) : undefined) } });
    const shutdown = at('EVSE_Shutdown');
    expect(runDin({ secc: shutdown, ev: fullAfter(shutdown, 100) }).result).toMatchObject({ outcome: 'completed', reason: { code: 'DIN_EVSE_SHUTDOWN' } });
    const malfunction = at('EVSE_Malfunction');
    expect(runDin({ secc: malfunction, ev: fullAfter(malfunction, 100) }).result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'DIN_EVSE_MALFUNCTION' } });
  });

  it('present voltage above the EV maximum: DIN_EVSE_OVERVOLTAGE (loop and PreCharge); the margin is a setting', () => {
    const over = (msg: string) => new ScriptedDinSecc({ on: { [msg]: (r, n, s) => (n === 2 ? patched((b) => { b.EVSEPresentVoltage = { Multiplier: 0, Unit: 'V', Value: 455 }; })(r, n, s) : undefined) } });
    const loop = over('CurrentDemandReq');
    const run = runDin({ secc: loop, ev: fullAfter(loop, 100) });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'DIN_EVSE_OVERVOLTAGE', details: { presentVoltageV: 455, evMaxVoltageV: 450 } } });
    expect(tail(loop, 4)).toEqual(ORDERLY_END);
    const pre = over('PreChargeReq');
    const r2 = runDin({ secc: pre, ev: fullAfter(pre, 100) });
    expect(r2.result.reason).toMatchObject({ code: 'DIN_EVSE_OVERVOLTAGE', details: { message: 'PreChargeRes' } });
    expect(tail(pre, 1)).toEqual(['SessionStopReq']);
    const margin = over('CurrentDemandReq');
    expect(runDin({ secc: margin, ev: fullAfter(margin, 4), module: { settings: { overvoltageMarginV: 10 } } }).result.outcome).toBe('completed');
  });

  it('the vehicle asks to stop (or to pause: DIN has none): DIN_EV_STOP_REQUESTED, a normal end; an EV error: DIN_EV_ERROR', () => {
    for (const [field, extra] of [['stopRequested', {}], ['pauseRequested', { pauseRequested: true }]] as const) {
      const secc = new ScriptedDinSecc();
      const ev = new FakeEv();
      ev.dynamic = () => ({ [field]: secc.count('CurrentDemandReq') >= 2 });
      const run = runDin({ secc, ev });
      expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'DIN_EV_STOP_REQUESTED', ...(Object.keys(extra).length ? { details: extra } : {}) } });
      expect(tail(secc, 4)).toEqual(ORDERLY_END);
    }
    const secc = new ScriptedDinSecc();
    const ev = new FakeEv();
    ev.dynamic = () => ({ errorCode: secc.count('CurrentDemandReq') >= 2 ? 'FAILED_RESSTemperatureInhibit' : 'NO_ERROR' });
    expect(runDin({ secc, ev }).result.reason).toMatchObject({ code: 'DIN_EV_ERROR', details: { evErrorCode: 'FAILED_RESSTemperatureInhibit' } });
  });

  it('a stop request from the service: SESSION_STOP_REQUESTED through PowerDelivery(false), WeldingDetection, SessionStop', () => {
    const secc = new ScriptedDinSecc();
    const run = runDin({ secc, ev: fullAfter(secc, 1_000), inject: [{ at: 4_000, input: { kind: 'stop', now: 0 } }] });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'SESSION_STOP_REQUESTED' } });
    expect(tail(secc, 4)).toEqual(ORDERLY_END);
  });

  it('TCP reset in the loop: SESSION_CHANNEL_CLOSED, not in order, no further request', () => {
    const secc = new ScriptedDinSecc({ on: { CurrentDemandReq: (_r, n) => (n === 3 ? { close: true, afterMs: 20 } : undefined) } });
    const run = runDin({ secc, ev: fullAfter(secc, 100) });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: false, reason: { code: 'SESSION_CHANNEL_CLOSED' } });
    expect(tail(secc, 1)).toEqual(['CurrentDemandReq']);
    expect(run.events.at(-1)!.at - sentAt(run, 'CurrentDemandReq').at(-1)!).toBe(20);
  });

  it('the charger lowers its maxima during the loop (derating): the next request respects them', () => {
    const secc = new ScriptedDinSecc({ on: { CurrentDemandReq: (r, n, s) => (n >= 2 ? patched((b) => { b.EVSEMaximumCurrentLimit = { Multiplier: 0, Unit: 'A', Value: 80 }; })(r, n, s) : undefined) } });
    runDin({ secc, ev: fullAfter(secc, 4) });
    expect(secc.requests('CurrentDemandReq').map((r) => siOf(r.body.EVTargetCurrent))).toEqual([120, 120, 80, 80]);
  });
});

describe('DIN: WeldingDetection never blocks SessionStop', () => {
  it('WeldingDetectionRes FAILED: still SessionStop (in order), DIN_RESPONSE_FAILED, the EV-side end in the summary', () => {
    const secc = new ScriptedDinSecc({ on: { WeldingDetectionReq: patched((b) => { b.ResponseCode = 'FAILED'; }) } });
    const run = runDin({ secc, ev: fullAfter(secc, 2) });
    expect(tail(secc, 2)).toEqual(['WeldingDetectionReq', 'SessionStopReq']);
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'DIN_RESPONSE_FAILED', details: { message: 'WeldingDetectionRes', responseCode: 'FAILED' } } });
    expect(run.result.protocol).toMatchObject({ endedBy: 'DIN_EV_CHARGING_COMPLETE' });
  });

  it('a present voltage that never drops: SessionStop after the WeldingDetection bound, warned', () => {
    const secc = new ScriptedDinSecc({ weldingVoltages: [400] });
    const run = runDin({ secc, ev: fullAfter(secc, 2) });
    const wd = sentAt(run, 'WeldingDetectionReq');
    expect(wd.at(-1)! - wd[0]!).toBeLessThanOrEqual(DIN_PACING.weldingDetectionTotal.ms);
    expect(wd.length).toBeGreaterThan(20);
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'DIN_EV_CHARGING_COMPLETE' } });
    expect(run.result.protocol).toMatchObject({ weldingDetection: 'voltage-stays-high' });
    expect(notes(run, 'warn').some((m) => m.includes('welded contactor'))).toBe(true);
  });
});

describe('DIN: responses are checked before the state relies on them', () => {
  it('CurrentDemandRes without EVSEPresentVoltage: DIN_INVALID_RESPONSE naming the field, never acted on, stop in order', () => {
    const secc = new ScriptedDinSecc({
      on: { CurrentDemandReq: (r, n, s) => (n === 2 ? { ...patched((b) => truncateFrom(b, 'EVSEPresentVoltage'))(r, n, s), encode: { undeclaredEnd: true } } : undefined) },
    });
    const ev = fullAfter(secc, 100);
    const run = runDin({ secc, ev });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'DIN_INVALID_RESPONSE', details: { message: 'CurrentDemandRes', field: 'EVSEPresentVoltage' } } });
    expect(ev.outputs.filter((o) => o.presentCurrentA > 0)).toHaveLength(1);
    expect(tail(secc, 4)).toEqual(ORDERLY_END);
  });

  it('ChargeParameterDiscoveryRes Finished without the EVSE maximum voltage: DIN_INVALID_RESPONSE, S2 never closed', () => {
    const secc = new ScriptedDinSecc({
      on: { ChargeParameterDiscoveryReq: (r, n, s) => ({ ...patched((b) => truncateFrom(b.DC_EVSEChargeParameter as Record<string, unknown>, 'EVSEMaximumVoltageLimit'))(r, n, s), encode: { undeclaredEnd: true } }) },
    });
    const run = runDin({ secc, ev: fullAfter(secc, 1) });
    expect(run.result.reason).toMatchObject({ code: 'DIN_INVALID_RESPONSE', details: { field: 'DC_EVSEChargeParameter.EVSEMaximumVoltageLimit' } });
    expect(run.effects).toEqual([]);
  });

  it('a Unit that contradicts the field is refused (strictUnits), naming `<field>.Unit`', () => {
    const secc = new ScriptedDinSecc({ on: { PreChargeReq: patched((b) => { (b.EVSEPresentVoltage as Record<string, unknown>).Unit = 'A'; }) } });
    expect(runDin({ secc, ev: fullAfter(secc, 1) }).result.reason).toMatchObject({ code: 'DIN_INVALID_RESPONSE', details: { field: 'EVSEPresentVoltage.Unit' } });
  });

  it('DIN values without Unit are accepted; ours still carry it', () => {
    const secc = new ScriptedDinSecc({ unitless: true });
    const run = runDin({ secc, ev: fullAfter(secc, 3) });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    expect(run.result.protocol).toMatchObject({ evseLimits: { maxVoltageV: 500, maxCurrentA: 150, maxPowerW: 60_000 } });
    for (const r of secc.requests('CurrentDemandReq')) expect((r.body.EVTargetVoltage as { Unit?: string }).Unit).toBe('V');
  });

  it('a SECC that lists no ExternalPayment: warned, ExternalPayment selected anyway (DIN has no other)', () => {
    const secc = new ScriptedDinSecc({ paymentOptions: ['Contract'] });
    const run = runDin({ secc, ev: fullAfter(secc, 1) });
    expect(run.result.outcome).toBe('completed');
    expect(secc.requests('ServicePaymentSelectionReq')[0]!.body.SelectedPaymentOption).toBe('ExternalPayment');
    expect(notes(run, 'warn').some((m) => m.includes('selecting ExternalPayment anyway'))).toBe(true);
  });

  it('SessionSetupRes FAILED: DIN_RESPONSE_FAILED, no SessionStop (no session exists)', () => {
    const secc = new ScriptedDinSecc({ on: { SessionSetupReq: patched((b) => { b.ResponseCode = 'FAILED'; }) } });
    const run = runDin({ secc });
    expect(run.result).toMatchObject({ outcome: 'failed', reason: { code: 'DIN_RESPONSE_FAILED' } });
    expect(names(secc)).toEqual(['SessionSetupReq']);
  });
});
