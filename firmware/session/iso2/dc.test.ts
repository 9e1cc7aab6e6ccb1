import { beforeAll, describe, expect, it } from 'vitest';
import { verify } from '../../exi/xmldsig/index.ts';
import type { SessionEvent } from '../engine.ts';
import {
  FakeEv, GEN_CHALLENGE, notes, runIso2, ScriptedSecc, SECC_SESSION_ID, sentNames, testCredentials, timeOf,
  type Iso2Run, type TestCredentials,
} from './test-secc.ts';

const EIM = { evccId: '02e7cc000001', channel: 'tcp', pnc: false } as const;
let cred: TestCredentials;
beforeAll(async () => {
  cred = await testCredentials();
});
const pnc = () => ({ evccId: '02:E7:CC:00:00:01', channel: 'tls' as const, pnc: true, contract: cred.contract, wallClock: new Date() });

/** The vehicle is full once the SECC has seen `n` CurrentDemandReq. */
function fullAfter(secc: ScriptedSecc, n: number, ev = new FakeEv()): FakeEv {
  ev.dynamic = () => ({ chargingComplete: secc.count('CurrentDemandReq') >= n });
  return ev;
}

const sentAt = (run: Iso2Run, name: string) => run.events.filter((e) => e.event.type === 'sent' && (e.event as { name: string }).name === name).map((e) => e.at);
const isStopping = (e: SessionEvent) => e.type === 'stopping';
const num = (p: unknown) => { const x = p as { Value: number; Multiplier: number }; return x.Value * 10 ** x.Multiplier; };
const DC_ORDER = ['SessionSetupReq', 'ServiceDiscoveryReq', 'PaymentServiceSelectionReq'];
const DC_TAIL = ['PowerDeliveryReq', 'WeldingDetectionReq', 'WeldingDetectionReq', 'SessionStopReq'];

describe('ISO-2 DC: whole sessions', () => {
  it('DC PnC: every message in order; the SECC verifies the contract-key signature of AuthorizationReq', async () => {
    const secc = new ScriptedSecc({ verifyWith: cred.contractCert.der });
    const run = await runIso2({ secc, ev: fullAfter(secc, 5), module: pnc(), signers: cred.signers });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'SESSION_COMPLETED' } });
    expect(secc.received.map((r) => r.name)).toEqual([
      ...DC_ORDER, 'PaymentDetailsReq', 'AuthorizationReq', 'ChargeParameterDiscoveryReq', 'CableCheckReq', 'PreChargeReq', 'PowerDeliveryReq',
      ...Array(5).fill('CurrentDemandReq'), ...DC_TAIL,
    ]);
    // SessionSetupReq: EVCCID = MAC as hex, SessionID all-zero; every later request carries the SECC's SessionID.
    expect(secc.received[0]).toMatchObject({ header: { SessionID: '0000000000000000' }, body: { EVCCID: '02e7cc000001' } });
    expect(secc.received.slice(1).every((r) => r.header.SessionID === SECC_SESSION_ID)).toBe(true);
    expect(secc.requests('PaymentServiceSelectionReq')[0]!.body).toMatchObject({ SelectedPaymentOption: 'Contract', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } });
    expect(secc.requests('PaymentDetailsReq')[0]!.body).toEqual({ eMAID: 'DEEVCC000000001', ContractSignatureCertChain: cred.contract.certificateChain });
    const auth = secc.requests('AuthorizationReq')[0]!;
    expect(auth.body).toEqual({ Id: 'id1', GenChallenge: GEN_CHALLENGE });
    expect(secc.verified).toEqual([{ message: 'AuthorizationReq', ok: true }]);
    // The same check by hand: the signature verifies with the contract certificate and references the body's Id.
    expect(verify({ V2G_Message: { Header: auth.header, Body: { AuthorizationReq: auth.body } } } as never, cred.contractCert.der).references).toEqual(['id1']);
    expect(cred.signers.contract.signatures).toBeGreaterThan(0);
    expect(run.result.protocol).toMatchObject({
      protocol: 'iso2', payment: 'Contract', energyTransferMode: 'DC_extended', sessionId: SECC_SESSION_ID, evseId: 'DE*TST*E0001',
      evseLimits: { maxVoltageV: 500, maxCurrentA: 150, maxPowerW: 60_000 }, socStartPercent: 20, socEndPercent: 20, emaid: 'DEEVCC000000001',
      endedBy: 'ev-complete', weldingDetection: 'safe', paused: false,
    });
  });

  it('DC EIM: no PaymentDetails, AuthorizationReq without Id/GenChallenge and unsigned; the EV sees the EVSE output', async () => {
    const secc = new ScriptedSecc();
    const ev = fullAfter(secc, 3);
    const run = await runIso2({ secc, ev, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    expect(secc.requests('PaymentServiceSelectionReq')[0]!.body.SelectedPaymentOption).toBe('ExternalPayment');
    expect(secc.count('PaymentDetailsReq')).toBe(0);
    const auth = secc.requests('AuthorizationReq')[0]!;
    expect(auth.body).toEqual({});
    expect(auth.header.Signature).toBeUndefined();
    expect(run.effects.some((e) => e.request.kind === 'sign')).toBe(false);
    // CurrentDemandRes present values go to the vehicle, one report per response.
    expect(ev.reported).toEqual(Array(3).fill({ presentVoltageV: 400, presentCurrentA: 125 }));
    expect(run.result.protocol).toMatchObject({ payment: 'ExternalPayment' });
  });

  it('S2 closes before the first CableCheckReq, the contactors before PowerDeliveryReq(Start), both open after PowerDeliveryRes(Stop)', async () => {
    const secc = new ScriptedSecc();
    const run = await runIso2({ secc, ev: fullAfter(secc, 2), module: EIM });
    const effect = (kind: string, closed: boolean) => run.effects.find((e) => e.request.kind === kind && (e.request as { closed: boolean }).closed === closed)!.at;
    const [pdStart, pdStop] = sentAt(run, 'PowerDeliveryReq');
    expect(effect('chargeRequest', true)).toBeLessThanOrEqual(sentAt(run, 'CableCheckReq')[0]!);
    expect(effect('chargeRequest', true)).toBeGreaterThan(sentAt(run, 'ChargeParameterDiscoveryReq')[0]!);
    // The contactors take 50 ms (virtual): PowerDeliveryReq(Start) waits for them.
    expect(effect('contactors', true)).toBeGreaterThan(sentAt(run, 'PreChargeReq').at(-1)!);
    expect(pdStart! - effect('contactors', true)).toBe(50);
    expect(effect('contactors', false)).toBe(pdStop! + secc.o.rttMs);
    expect(effect('chargeRequest', false)).toBe(pdStop! + secc.o.rttMs);
    expect(sentAt(run, 'WeldingDetectionReq')[0]).toBe(pdStop! + secc.o.rttMs + 50);
    expect(run.effects.filter((e) => e.request.kind === 'contactors')).toHaveLength(2);
  });

  it('paces the CurrentDemand loop (100 ms after each response) and answers within 250 ms or ends with ISO2_TIMEOUT', async () => {
    const secc = new ScriptedSecc();
    const run = await runIso2({ secc, ev: fullAfter(secc, 4), module: EIM });
    const at = sentAt(run, 'CurrentDemandReq');
    expect(at.slice(1).map((t, i) => t - at[i]!)).toEqual([105, 105, 105]);

    const silent = new ScriptedSecc({ on: { CurrentDemandReq: (_r, s) => (s.count('CurrentDemandReq') === 3 ? 'silence' : undefined) } });
    const lost = await runIso2({ secc: silent, module: EIM });
    expect(lost.result).toMatchObject({ outcome: 'failed', orderly: false, reason: { code: 'ISO2_TIMEOUT', details: { message: 'CurrentDemandRes', timer: 'V2G_EVCC_Msg_Timeout(CurrentDemandRes)' } } });
    expect(lost.endedAt - sentAt(lost, 'CurrentDemandReq').at(-1)!).toBe(250);
  });
});

describe('ISO-2 DC: CableCheck and PreCharge', () => {
  it('repeats CableCheckReq every 500 ms while Ongoing / isolation not Valid, and accepts Warning with a WARN', async () => {
    const secc = new ScriptedSecc({
      on: {
        CableCheckReq: (_r, s) => {
          const n = s.count('CableCheckReq');
          if (n <= 2) return { CableCheckRes: { ResponseCode: 'OK', DC_EVSEStatus: s.dcStatus({ code: 'EVSE_IsolationMonitoringActive' }), EVSEProcessing: 'Ongoing' } };
          if (n === 3) return { CableCheckRes: { ResponseCode: 'OK', DC_EVSEStatus: s.dcStatus({ isolation: 'Invalid' }), EVSEProcessing: 'Finished' } };
          return { CableCheckRes: { ResponseCode: 'OK', DC_EVSEStatus: s.dcStatus({ isolation: 'Warning' }), EVSEProcessing: 'Finished' } };
        },
      },
    });
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), module: EIM });
    expect(run.result.outcome).toBe('completed');
    const at = sentAt(run, 'CableCheckReq');
    expect(at).toHaveLength(4);
    expect(at.slice(1).map((t, i) => t - at[i]!)).toEqual([505, 505, 505]);
    expect(notes(run, 'warn').some((m) => m.includes('EVSEIsolationStatus=Warning'))).toBe(true);
    expect(run.effects.filter((e) => e.request.kind === 'chargeRequest' && (e.request as { closed: boolean }).closed)).toHaveLength(1);
  });

  it('CableCheck still Ongoing after V2G_EVCC_CableCheck_Timeout (40 s): ISO2_CABLE_CHECK_TIMEOUT, then SessionStop in order', async () => {
    const secc = new ScriptedSecc({ on: { CableCheckReq: (_r, s) => ({ CableCheckRes: { ResponseCode: 'OK', DC_EVSEStatus: s.dcStatus(), EVSEProcessing: 'Ongoing' } }) } });
    const run = await runIso2({ secc, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_CABLE_CHECK_TIMEOUT', details: { limitMs: 40_000 } } });
    const first = sentAt(run, 'CableCheckReq')[0]!;
    expect(timeOf(run, isStopping)! - first).toBe(40_000 + secc.o.rttMs);
    expect(sentAt(run, 'CableCheckReq').at(-1)! - first).toBe(40_000); // the last request goes out at the bound
    expect(secc.count('CableCheckReq')).toBe(1 + Math.ceil(40_000 / 505));
    // Nothing was energised: no PowerDelivery, straight to SessionStop.
    expect(secc.received.slice(-1)[0]!.name).toBe('SessionStopReq');
    expect(secc.count('PowerDeliveryReq')).toBe(0);
  });

  it('an isolation Fault stops at once (ISO2_ISOLATION_FAULT)', async () => {
    const secc = new ScriptedSecc({ on: { CableCheckReq: (_r, s) => ({ CableCheckRes: { ResponseCode: 'OK', DC_EVSEStatus: s.dcStatus({ isolation: 'Fault' }), EVSEProcessing: 'Finished' } }) } });
    const run = await runIso2({ secc, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_ISOLATION_FAULT' } });
    expect(secc.count('CableCheckReq')).toBe(1);
  });

  it('PreCharge targets the battery voltage at ≤ 2 A, every 100 ms, until the EVSE output is within 20 V', async () => {
    const secc = new ScriptedSecc({ preChargeStepV: 100 }); // 0 → 100 → 200 → 300 → 360
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), module: EIM });
    const reqs = secc.requests('PreChargeReq');
    expect(reqs.map((r) => [num(r.body.EVTargetVoltage), num(r.body.EVTargetCurrent)])).toEqual(Array(4).fill([360, 2]));
    const at = sentAt(run, 'PreChargeReq');
    expect(at.slice(1).map((t, i) => t - at[i]!)).toEqual([105, 105, 105]);
    // 345 V would already be within the default tolerance: a tighter setting waits for 360 V.
    const tight = new ScriptedSecc({ preChargeStepV: 115 }); // 0 → 115 → 230 → 345 → 360
    await runIso2({ secc: tight, ev: fullAfter(tight, 1), module: { ...EIM, settings: { preChargeToleranceV: 10 } } });
    expect(tight.count('PreChargeReq')).toBe(4);
    const loose = new ScriptedSecc({ preChargeStepV: 115 });
    await runIso2({ secc: loose, ev: fullAfter(loose, 1), module: EIM });
    expect(loose.count('PreChargeReq')).toBe(3);
  });

  it('an EVSE output that never reaches the battery voltage: ISO2_PRECHARGE_TIMEOUT after 7 s, contactors never closed', async () => {
    const secc = new ScriptedSecc({ on: { PreChargeReq: (_r, s) => ({ PreChargeRes: { ResponseCode: 'OK', DC_EVSEStatus: s.dcStatus(), EVSEPresentVoltage: { Multiplier: 0, Unit: 'V', Value: 250 } } }) } });
    const run = await runIso2({ secc, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_PRECHARGE_TIMEOUT', details: { limitMs: 7_000, presentVoltageV: 250, targetVoltageV: 360 } } });
    expect(timeOf(run, isStopping)! - sentAt(run, 'PreChargeReq')[0]!).toBe(7_000 + secc.o.rttMs);
    expect(run.effects.some((e) => e.request.kind === 'contactors')).toBe(false);
    expect(sentNames(run).slice(-1)).toEqual(['SessionStopReq']);
  });
});

describe('ISO-2 DC: the charger stops or misbehaves in the loop', () => {
  const inLoop = (n: number, patch: (s: ScriptedSecc, def: Record<string, unknown>) => Record<string, unknown>) => new ScriptedSecc({
    on: { CurrentDemandReq: (_r, s, def) => (s.count('CurrentDemandReq') === n ? { CurrentDemandRes: patch(s, def().CurrentDemandRes as Record<string, unknown>) } : undefined) },
  });

  it('EVSE_EmergencyShutdown: contactors open at once, then PowerDelivery(Stop) → WeldingDetection → SessionStop (ISO2_EVSE_EMERGENCY_SHUTDOWN)', async () => {
    const secc = inLoop(3, (s, d) => ({ ...d, DC_EVSEStatus: s.dcStatus({ code: 'EVSE_EmergencyShutdown' }) }));
    const run = await runIso2({ secc, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_EVSE_EMERGENCY_SHUTDOWN' } });
    const stopAt = timeOf(run, isStopping)!;
    const open = run.effects.find((e) => e.request.kind === 'contactors' && !(e.request as { closed: boolean }).closed)!;
    expect(open.at).toBe(stopAt);
    expect(sentAt(run, 'PowerDeliveryReq')[1]).toBe(stopAt);
    expect(secc.received.slice(-4).map((r) => r.name)).toEqual(['PowerDeliveryReq', 'WeldingDetectionReq', 'WeldingDetectionReq', 'SessionStopReq']);
    expect(secc.requests('PowerDeliveryReq')[1]!.body.ChargeProgress).toBe('Stop');
  });

  it('EVSENotification=StopCharging and EVSE_Shutdown: a normal end in order with typed reasons', async () => {
    const stop = await runIso2({ secc: inLoop(2, (s, d) => ({ ...d, DC_EVSEStatus: s.dcStatus({ notification: 'StopCharging' }) })), module: EIM });
    expect(stop.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'ISO2_EVSE_STOP_CHARGING', failure: false } });
    expect(sentNames(stop).slice(-4)).toEqual(DC_TAIL);
    const shut = await runIso2({ secc: inLoop(2, (s, d) => ({ ...d, DC_EVSEStatus: s.dcStatus({ code: 'EVSE_Shutdown' }) })), module: EIM });
    expect(shut.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'ISO2_EVSE_SHUTDOWN' } });
  });

  it('EVSEPresentVoltage above the EV maximum: ISO2_EVSE_OVERVOLTAGE, contactors opened before PowerDelivery(Stop)', async () => {
    const secc = inLoop(2, (_s, d) => ({ ...d, EVSEPresentVoltage: { Multiplier: -1, Unit: 'V', Value: 4_505 } }));
    const run = await runIso2({ secc, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_EVSE_OVERVOLTAGE', details: { presentVoltageV: 450.5, maxVoltageV: 450 } } });
    const open = run.effects.find((e) => e.request.kind === 'contactors' && !(e.request as { closed: boolean }).closed)!;
    expect(open.at).toBeLessThanOrEqual(sentAt(run, 'PowerDeliveryReq')[1]!);
    expect(secc.count('CurrentDemandReq')).toBe(2);
    expect(sentNames(run).slice(-1)).toEqual(['SessionStopReq']);
  });

  it('a CurrentDemandRes without EVSEPresentVoltage (element ended early) is never acted on: ISO2_INVALID_RESPONSE naming the field', async () => {
    const secc = new ScriptedSecc({
      on: {
        CurrentDemandReq: (_r, s, def) => {
          if (s.count('CurrentDemandReq') !== 2) return undefined;
          // The stream ends CurrentDemandRes right after DC_EVSEStatus (everything from EVSEPresentVoltage on is lost).
          const { ResponseCode, DC_EVSEStatus } = def().CurrentDemandRes as Record<string, unknown>;
          return { body: { CurrentDemandRes: { ResponseCode, DC_EVSEStatus } }, encode: { undeclaredEnd: true } };
        },
      },
    });
    const ev = new FakeEv();
    const run = await runIso2({ secc, ev, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_INVALID_RESPONSE', details: { message: 'CurrentDemandRes', field: 'EVSEPresentVoltage' } } });
    expect(ev.reported).toHaveLength(1);
    expect(sentNames(run).slice(-4)).toEqual(DC_TAIL);
  });

  it('a ChargeParameterDiscoveryRes carrying the abstract EVSEChargeParameter instead of DC_EVSEChargeParameter: ISO2_INVALID_RESPONSE', async () => {
    const secc = new ScriptedSecc({
      on: {
        ChargeParameterDiscoveryReq: (_r, _s, def) => {
          const { DC_EVSEChargeParameter: _dc, ...rest } = def().ChargeParameterDiscoveryRes as Record<string, unknown>;
          return { ChargeParameterDiscoveryRes: { ...rest, EVSEChargeParameter: {} } };
        },
      },
    });
    const run = await runIso2({ secc, module: EIM });
    expect(run.result).toMatchObject({ reason: { code: 'ISO2_INVALID_RESPONSE', details: { field: 'DC_EVSEChargeParameter' } }, orderly: true });
    expect(sentNames(run).slice(-2)).toEqual(['ChargeParameterDiscoveryReq', 'SessionStopReq']);
  });
});

describe('ISO-2 DC: WeldingDetection never blocks the SessionStop', () => {
  it('no WeldingDetectionRes: WARN, SessionStop after V2G_EVCC_Msg_Timeout, the session still completes in order', async () => {
    const secc = new ScriptedSecc({ on: { WeldingDetectionReq: () => 'silence' } });
    const run = await runIso2({ secc, ev: fullAfter(secc, 2), module: EIM });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    expect(sentAt(run, 'SessionStopReq')[0]! - sentAt(run, 'WeldingDetectionReq')[0]!).toBe(2_000);
    expect(notes(run, 'warn').some((m) => m.includes('no WeldingDetectionRes'))).toBe(true);
    expect(run.result.protocol).toMatchObject({ weldingDetection: 'unanswered' });
  });

  it('WeldingDetectionRes FAILED: stop in order, SessionStop still sent (ISO2_RESPONSE_FAILED)', async () => {
    const secc = new ScriptedSecc({ on: { WeldingDetectionReq: (_r, _s, def) => ({ WeldingDetectionRes: { ...(def().WeldingDetectionRes as object), ResponseCode: 'FAILED' } }) } });
    const run = await runIso2({ secc, ev: fullAfter(secc, 2), module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_RESPONSE_FAILED', details: { message: 'WeldingDetectionRes', responseCode: 'FAILED' } } });
    expect(sentNames(run).slice(-2)).toEqual(['WeldingDetectionReq', 'SessionStopReq']);
  });

  it('a voltage that never drops: WeldingDetection every 200 ms for 5 s, then a WARN and SessionStop', async () => {
    const secc = new ScriptedSecc({ weldingDropV: 0 });
    const run = await runIso2({ secc, ev: fullAfter(secc, 2), module: EIM });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    const at = sentAt(run, 'WeldingDetectionReq');
    expect(at[1]! - at[0]!).toBe(205);
    expect(at.at(-1)! - at[0]!).toBe(5_000); // the last one at the bound
    expect(sentAt(run, 'SessionStopReq')[0]! - at[0]!).toBe(5_000 + secc.o.rttMs);
    expect(notes(run, 'warn').some((m) => m.includes('still 400.0 V'))).toBe(true);
    expect(run.result.protocol).toMatchObject({ weldingDetection: 'voltage-stays-high' });
  });
});

describe('ISO-2 DC: WeldingDetection during a typed stop (engine limit)', () => {
  // The engine consults onTimeout on the stop path too: a silent WeldingDetection after StopCharging still ends
  // with SessionStop.
  it('StopCharging, then no WeldingDetectionRes: SessionStop is still sent', async () => {
    const secc = new ScriptedSecc({
      on: {
        CurrentDemandReq: (_r, s, def) => (s.count('CurrentDemandReq') === 2 ? { CurrentDemandRes: { ...(def().CurrentDemandRes as object), DC_EVSEStatus: s.dcStatus({ notification: 'StopCharging' }) } } : undefined),
        WeldingDetectionReq: () => 'silence',
      },
    });
    const run = await runIso2({ secc, module: EIM });
    expect(sentNames(run).slice(-1)).toEqual(['SessionStopReq']);
    expect(run.result).toMatchObject({ orderly: true, reason: { code: 'ISO2_EVSE_STOP_CHARGING' } });
  });
});

describe('ISO-2 DC: renegotiation, operator stop', () => {
  it('EVSENotification=ReNegotiation: PowerDelivery(Renegotiate) → ChargeParameterDiscovery → PowerDelivery(Start), no CableCheck/PreCharge, new limits respected', async () => {
    let renegotiated = false;
    const secc = new ScriptedSecc({
      on: {
        CurrentDemandReq: (_r, s, def) => (s.count('CurrentDemandReq') === 2 && !renegotiated ? { CurrentDemandRes: { ...(def().CurrentDemandRes as object), DC_EVSEStatus: s.dcStatus({ notification: 'ReNegotiation' }) } } : undefined),
        ChargeParameterDiscoveryReq: (_r, s, def) => {
          if (s.count('ChargeParameterDiscoveryReq') === 1) return undefined;
          renegotiated = true;
          s.o.dc.maxCurrentA = 80;
          return def();
        },
      },
    });
    const run = await runIso2({ secc, ev: fullAfter(secc, 5), module: EIM });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    const names = secc.received.map((r) => r.name);
    expect(names.filter((n) => n === 'CableCheckReq' || n === 'PreChargeReq')).toEqual(['CableCheckReq', 'PreChargeReq']);
    const i = names.indexOf('CurrentDemandReq') + 2;
    expect(names.slice(i, i + 4)).toEqual(['PowerDeliveryReq', 'ChargeParameterDiscoveryReq', 'PowerDeliveryReq', 'CurrentDemandReq']);
    expect(secc.requests('PowerDeliveryReq').map((r) => r.body.ChargeProgress)).toEqual(['Start', 'Renegotiate', 'Start', 'Stop']);
    const targets = secc.requests('CurrentDemandReq').map((r) => num(r.body.EVTargetCurrent));
    expect(targets).toEqual([125, 125, 80, 80, 80]);
    // Contactors stay closed during renegotiation: closed once, opened once.
    expect(run.effects.filter((e) => e.request.kind === 'contactors').map((e) => (e.request as { closed: boolean }).closed)).toEqual([true, false]);
    expect(run.result.protocol).toMatchObject({ renegotiations: 1 });
  });

  it('an operator stop in the loop goes PowerDelivery(Stop) → WeldingDetection → SessionStop', async () => {
    const secc = new ScriptedSecc();
    const run = await runIso2({ secc, module: EIM, stopAt: 1_000 });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'SESSION_STOP_REQUESTED' } });
    expect(secc.received.slice(-4).map((r) => r.name)).toEqual(DC_TAIL);
  });
});

describe('ISO-2 DC: request encoding', () => {
  it('CurrentDemandReq carries the EV status, limits and completion flags', async () => {
    const secc = new ScriptedSecc();
    const ev = fullAfter(secc, 2);
    ev.base = { ...ev.base, remainingTimeToFullSocS: 1_800, socPercent: 42.4 };
    await runIso2({ secc, ev, module: EIM });
    const last = secc.requests('CurrentDemandReq').at(-1)!;
    expect(last.body).toMatchObject({ DC_EVStatus: { EVReady: 1, EVErrorCode: 'NO_ERROR', EVRESSSOC: 42 }, ChargingComplete: 0, BulkChargingComplete: 0 });
    expect(num(last.body.EVMaximumVoltageLimit)).toBe(450);
    expect(num(last.body.EVMaximumCurrentLimit)).toBe(200);
    expect(num(last.body.EVMaximumPowerLimit)).toBe(80_000);
    expect(num(last.body.RemainingTimeToFullSoC)).toBe(1_800);
    expect(secc.requests('PowerDeliveryReq')[1]!.body.DC_EVPowerDeliveryParameter).toMatchObject({ ChargingComplete: 1 });
    const cpd = secc.requests('ChargeParameterDiscoveryReq')[0]!.body;
    expect(cpd).toMatchObject({ RequestedEnergyTransferMode: 'DC_extended', DC_EVChargeParameter: { FullSOC: 100, BulkSOC: 80, DC_EVStatus: { EVRESSSOC: 42 } } });
    expect(num((cpd.DC_EVChargeParameter as Record<string, unknown>).EVEnergyRequest)).toBe(36_000);
    expect(cpd.MaxEntriesSAScheduleTuple).toBeUndefined();
  });
});
