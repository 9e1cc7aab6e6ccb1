import { beforeAll, describe, expect, it } from 'vitest';
import { FakeEv, notes, runIso2, ScriptedSecc, SECC_SESSION_ID, sentNames, testCredentials, type Iso2Run, type TestCredentials } from './test-secc.ts';

const AC = ['AC_three_phase_core'] as const;
const EIM = { evccId: '02e7cc000001', channel: 'tcp', pnc: false } as const;
let cred: TestCredentials;
beforeAll(async () => {
  cred = await testCredentials();
});
const pnc = () => ({ evccId: '02e7cc000001', channel: 'tls' as const, pnc: true, contract: cred.contract, wallClock: new Date() });

function fullAfter(secc: ScriptedSecc, n: number): FakeEv {
  const ev = new FakeEv();
  ev.dynamic = () => ({ chargingComplete: secc.count('ChargingStatusReq') >= n });
  return ev;
}
const sentAt = (run: Iso2Run, name: string) => run.events.filter((e) => e.event.type === 'sent' && (e.event as { name: string }).name === name).map((e) => e.at);
const num = (p: unknown) => { const x = p as { Value: number; Multiplier: number }; return x.Value * 10 ** x.Multiplier; };

describe('ISO-2 AC', () => {
  it('AC PnC with MeteringReceipt: each receipt signed by the contract key over the MeterInfo of the ChargingStatusRes before it', async () => {
    const secc = new ScriptedSecc({ modes: [...AC], receiptRequired: true, verifyWith: cred.contractCert.der });
    const run = await runIso2({ secc, ev: fullAfter(secc, 3), module: { ...pnc(), settings: { energyTransferModes: ['DC_extended', 'AC_three_phase_core'] } }, signers: cred.signers });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    expect(secc.received.map((r) => r.name)).toEqual([
      'SessionSetupReq', 'ServiceDiscoveryReq', 'PaymentServiceSelectionReq', 'PaymentDetailsReq', 'AuthorizationReq', 'ChargeParameterDiscoveryReq', 'PowerDeliveryReq',
      'ChargingStatusReq', 'MeteringReceiptReq', 'ChargingStatusReq', 'MeteringReceiptReq', 'ChargingStatusReq', 'PowerDeliveryReq', 'SessionStopReq',
    ]);
    const receipts = secc.requests('MeteringReceiptReq');
    expect(receipts[0]!.body).toMatchObject({ Id: 'id1', SessionID: SECC_SESSION_ID, SAScheduleTupleID: 1, MeterInfo: { MeterID: 'METER-1', MeterReading: 10_100 } });
    expect(receipts[1]!.body).toMatchObject({ MeterInfo: { MeterReading: 10_200 } });
    expect(secc.verified).toEqual([
      { message: 'AuthorizationReq', ok: true }, { message: 'MeteringReceiptReq', ok: true }, { message: 'MeteringReceiptReq', ok: true },
    ]);
    // The third ChargingStatusRes also asks for one, but the vehicle is full: PowerDelivery(Stop) comes first.
    expect(run.result.protocol).toMatchObject({ payment: 'Contract', energyTransferMode: 'AC_three_phase_core', meteringReceipts: 2, meterEnergyWh: 200, evseLimits: { nominalVoltageV: 230, maxCurrentA: 32 } });
  });

  it('AC EIM: the charge parameters, S2 with the first PowerDeliveryReq(Start), open on PowerDeliveryRes(Stop); a receipt request is logged and skipped', async () => {
    const secc = new ScriptedSecc({ modes: ['AC_single_phase_core'], receiptRequired: true });
    const run = await runIso2({ secc, ev: fullAfter(secc, 3), module: EIM });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    expect(secc.count('MeteringReceiptReq')).toBe(0);
    expect(secc.count('CableCheckReq') + secc.count('PreChargeReq') + secc.count('WeldingDetectionReq')).toBe(0);
    expect(notes(run, 'info').filter((m) => m.includes('EIM has no contract key'))).toHaveLength(1);
    const cpd = secc.requests('ChargeParameterDiscoveryReq')[0]!.body;
    expect(cpd.RequestedEnergyTransferMode).toBe('AC_single_phase_core');
    const acp = cpd.AC_EVChargeParameter as Record<string, unknown>;
    expect([num(acp.EAmount), num(acp.EVMaxVoltage), num(acp.EVMaxCurrent), num(acp.EVMinCurrent)]).toEqual([36_000, 450, 16, 6]);
    const [start, stop] = secc.requests('PowerDeliveryReq');
    expect(start!.body).toMatchObject({ ChargeProgress: 'Start', SAScheduleTupleID: 1 });
    expect(start!.body.DC_EVPowerDeliveryParameter).toBeUndefined();
    // Profile: the schedule's PMax capped at what the vehicle takes on one phase (230 V × 16 A).
    expect((start!.body.ChargingProfile as { ProfileEntry: Record<string, unknown>[] }).ProfileEntry.map((e) => [e.ChargingProfileEntryStart, num(e.ChargingProfileEntryMaxPower), e.ChargingProfileEntryMaxNumberOfPhasesInUse])).toEqual([[0, 3_680, 1]]);
    expect(stop!.body.ChargeProgress).toBe('Stop');
    const s2 = run.effects.filter((e) => e.request.kind === 'chargeRequest');
    // S2 closes just before the first PowerDeliveryReq(Start) (with the vehicle's inlet relay, whose actuation the
    // request waits for), and opens on PowerDeliveryRes(Stop).
    expect(s2.map((e) => (e.request as { closed: boolean }).closed)).toEqual([true, false]);
    expect(s2[0]!.at).toBeLessThanOrEqual(sentAt(run, 'PowerDeliveryReq')[0]!);
    expect(s2[1]!.at).toBe(sentAt(run, 'PowerDeliveryReq')[1]! + secc.o.rttMs);
    const relay = run.effects.filter((e) => e.request.kind === 'contactors').map((e) => (e.request as { closed: boolean }).closed);
    expect(relay[0]).toBe(true);
    expect(relay.at(-1)).toBe(false);
    const cs = sentAt(run, 'ChargingStatusReq');
    expect(cs.slice(1).map((t, i) => t - cs[i]!)).toEqual([1_005, 1_005]);
  });

  it('AC renegotiation: PowerDelivery(Renegotiate) → ChargeParameterDiscovery → PowerDelivery(Start) → ChargingStatus', async () => {
    const secc = new ScriptedSecc({
      modes: [...AC],
      on: { ChargingStatusReq: (_r, s, def) => (s.count('ChargingStatusReq') === 2 ? { ChargingStatusRes: { ...(def().ChargingStatusRes as object), AC_EVSEStatus: s.acStatus({ notification: 'ReNegotiation' }) } } : undefined) },
    });
    const run = await runIso2({ secc, ev: fullAfter(secc, 4), module: EIM });
    expect(run.result.outcome).toBe('completed');
    expect(secc.requests('PowerDeliveryReq').map((r) => r.body.ChargeProgress)).toEqual(['Start', 'Renegotiate', 'Start', 'Stop']);
    expect(secc.count('ChargeParameterDiscoveryReq')).toBe(2);
    expect(run.effects.filter((e) => e.request.kind === 'chargeRequest').map((e) => (e.request as { closed: boolean }).closed)).toEqual([true, false]);
  });

  it('RCD=1 and StopCharging in ChargingStatusRes stop in order with typed reasons', async () => {
    const rcd = new ScriptedSecc({ modes: [...AC], on: { ChargingStatusReq: (_r, s, def) => ({ ChargingStatusRes: { ...(def().ChargingStatusRes as object), AC_EVSEStatus: s.acStatus({ rcd: 1 }) } }) } });
    const r1 = await runIso2({ secc: rcd, module: EIM });
    expect(r1.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_EVSE_RCD' } });
    expect(sentNames(r1).slice(-3)).toEqual(['ChargingStatusReq', 'PowerDeliveryReq', 'SessionStopReq']);
    const stop = new ScriptedSecc({ modes: [...AC], on: { ChargingStatusReq: (_r, s, def) => ({ ChargingStatusRes: { ...(def().ChargingStatusRes as object), AC_EVSEStatus: s.acStatus({ notification: 'StopCharging' }) } }) } });
    const r2 = await runIso2({ secc: stop, module: EIM });
    expect(r2.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'ISO2_EVSE_STOP_CHARGING' } });
  });

  it('an AC session whose ChargeParameterDiscoveryRes lacks AC_EVSEChargeParameter.EVSEMaxCurrent: ISO2_INVALID_RESPONSE naming it', async () => {
    const secc = new ScriptedSecc({
      modes: [...AC],
      on: {
        ChargeParameterDiscoveryReq: (_r, s, def) => {
          const res = def().ChargeParameterDiscoveryRes as Record<string, unknown>;
          const { AC_EVSEChargeParameter: acp, ...rest } = res;
          const { EVSEMaxCurrent: _drop, ...acRest } = acp as Record<string, unknown>;
          return { body: { ChargeParameterDiscoveryRes: { ...rest, AC_EVSEChargeParameter: acRest } }, encode: { undeclaredEnd: true } };
        },
      },
    });
    const run = await runIso2({ secc, module: EIM });
    expect(run.result.reason).toMatchObject({ code: 'ISO2_INVALID_RESPONSE', details: { field: 'AC_EVSEChargeParameter.EVSEMaxCurrent' } });
  });
});
