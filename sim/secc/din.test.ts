import { describe, expect, it } from 'vitest';
import type { Din } from '../../firmware/exi/index.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { createDinHandler } from './din.ts';
import { loadScenario, parseScenario, type ScenarioInput } from './scenario.ts';
import { counterRandom, physical, TestEv, value } from './test-support.ts';

const dcStatus = { EVReady: 1, EVErrorCode: 'NO_ERROR', EVRESSSOC: 40 };
const currentDemand = (voltage: number, current: number) => ({
  CurrentDemandReq: { DC_EVStatus: dcStatus, EVTargetCurrent: physical(current, 'A'), EVMaximumVoltageLimit: physical(430, 'V'), ChargingComplete: 0, EVTargetVoltage: physical(voltage, 'V') },
});

function setup(scenario: ScenarioInput | string) {
  const clock = new VirtualClock(0);
  const s = typeof scenario === 'string' ? loadScenario(scenario) : parseScenario(scenario, 'test');
  const secc = createDinHandler({ scenario: s, clock, tls: false, random: counterRandom(), wallClock: () => 1_700_000_000_000 });
  return { clock, secc, ev: new TestEv<Din.V2G_MessageElement>('din', secc, clock) };
}

describe('DIN SPEC 70121 SECC handler', () => {
  it('runs a whole DC session: ContractAuthentication Ongoing for N s, CableCheck, PreCharge, loop, welding, stop', async () => {
    const { ev, secc } = setup({ description: 'din', transport: 'tcp', protocols: { supported: ['din'] }, ongoing: { ContractAuthentication: 2000 } });
    const s = await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } });
    expect(s.res.ResponseCode).toBe('OK_NewSessionEstablished');
    expect(Buffer.from(String(s.res.EVSEID), 'hex').toString()).toBe('DE*SIM*E0001*1');
    ev.sessionId = s.header!.SessionID;

    const sd = await ev.send({ ServiceDiscoveryReq: {} });
    expect(sd.res).toMatchObject({ ResponseCode: 'OK', PaymentOptions: { PaymentOption: ['ExternalPayment'] }, ChargeService: { EnergyTransferType: 'DC_extended' } });
    expect((await ev.send({ ServicePaymentSelectionReq: { SelectedPaymentOption: 'ExternalPayment', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } } })).res.ResponseCode).toBe('OK');

    const auth: string[] = [];
    for (let i = 0; i < 5; i++) auth.push(String((await ev.send({ ContractAuthenticationReq: {} }, { afterMs: i ? 500 : 0 })).res.EVSEProcessing));
    expect(auth).toEqual(['Ongoing', 'Ongoing', 'Ongoing', 'Ongoing', 'Finished']);
    expect(secc.requests.answeredWith('ContractAuthenticationReq', 'Ongoing')).toBe(4);

    const cpd = await ev.send({
      ChargeParameterDiscoveryReq: {
        EVRequestedEnergyTransferType: 'DC_extended',
        DC_EVChargeParameter: { DC_EVStatus: dcStatus, EVMaximumCurrentLimit: physical(200, 'A'), EVMaximumVoltageLimit: physical(430, 'V') },
      },
    });
    expect(cpd.res).toMatchObject({ ResponseCode: 'OK', EVSEProcessing: 'Finished' });
    const tuple = (cpd.res.SAScheduleList as Din.SAScheduleListType).SAScheduleTuple[0]!;
    expect(tuple.PMaxSchedule.PMaxScheduleEntry[0]!.PMax).toBe(32_767); // int16: 100 kW does not fit
    expect(value((cpd.res.DC_EVSEChargeParameter as Din.DC_EVSEChargeParameterType).EVSEMaximumVoltageLimit)).toBe(500);

    expect((await ev.send({ CableCheckReq: { DC_EVStatus: dcStatus } })).res.EVSEProcessing).toBe('Ongoing');
    const cc = await ev.send({ CableCheckReq: { DC_EVStatus: dcStatus } }, { afterMs: 1000 });
    expect(cc.res).toMatchObject({ EVSEProcessing: 'Finished', DC_EVSEStatus: { EVSEIsolationStatus: 'Valid', EVSEStatusCode: 'EVSE_Ready' } });

    const pre = { PreChargeReq: { DC_EVStatus: dcStatus, EVTargetVoltage: physical(360, 'V'), EVTargetCurrent: physical(2, 'A') } };
    await ev.send(pre);
    expect(value((await ev.send(pre, { afterMs: 1000 })).res.EVSEPresentVoltage)).toBe(360);

    expect((await ev.send({ PowerDeliveryReq: { ReadyToChargeState: 1, DC_EVPowerDeliveryParameter: { DC_EVStatus: dcStatus, ChargingComplete: 0 } } })).res.ResponseCode).toBe('OK');
    let last: Record<string, unknown> = {};
    for (let i = 0; i < 8; i++) last = (await ev.send(currentDemand(370, 100), { afterMs: 100 })).res;
    expect(value(last.EVSEPresentCurrent)).toBe(100);
    expect(value(last.EVSEPresentVoltage)).toBe(370);

    expect((await ev.send({ PowerDeliveryReq: { ReadyToChargeState: 0 } })).res.ResponseCode).toBe('OK');
    const w1 = value((await ev.send({ WeldingDetectionReq: { DC_EVStatus: dcStatus } }, { afterMs: 200 })).res.EVSEPresentVoltage);
    const w2 = value((await ev.send({ WeldingDetectionReq: { DC_EVStatus: dcStatus } }, { afterMs: 200 })).res.EVSEPresentVoltage);
    expect(w2).toBeLessThan(w1);
    expect((await ev.send({ SessionStopReq: {} })).res.ResponseCode).toBe('OK');
    expect(secc.requests.names().filter((n, i, all) => all.indexOf(n) === i)).toEqual([
      'SessionSetupReq', 'ServiceDiscoveryReq', 'ServicePaymentSelectionReq', 'ContractAuthenticationReq', 'ChargeParameterDiscoveryReq',
      'CableCheckReq', 'PreChargeReq', 'PowerDeliveryReq', 'CurrentDemandReq', 'WeldingDetectionReq', 'SessionStopReq',
    ]);
  });

  it('refuses Contract (no PnC in DIN), a wrong SessionID and requests out of order', async () => {
    const a = setup('din-only');
    a.ev.sessionId = (await a.ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } })).header!.SessionID;
    await a.ev.send({ ServiceDiscoveryReq: {} });
    expect((await a.ev.send({ ServicePaymentSelectionReq: { SelectedPaymentOption: 'Contract', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } } })).res.ResponseCode).toBe('FAILED_PaymentSelectionInvalid');

    const b = setup('din-only');
    b.ev.sessionId = (await b.ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } })).header!.SessionID;
    const wrong = await b.ev.send({ ServiceDiscoveryReq: {} }, { header: { SessionID: 'aabbccddeeff0011' } });
    expect(wrong.res.ResponseCode).toBe('FAILED_UnknownSession');
    expect(wrong.reply.after).toBe('close');

    const c = setup('din-only');
    c.ev.sessionId = (await c.ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } })).header!.SessionID;
    const early = await c.ev.send({ CableCheckReq: { DC_EVStatus: dcStatus } });
    expect(early.res).toMatchObject({ ResponseCode: 'FAILED_SequenceError', EVSEProcessing: 'Finished' });
  });

  it('ongoing-forever never finishes ContractAuthentication', async () => {
    const { ev } = setup('ongoing-forever');
    ev.sessionId = (await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } })).header!.SessionID;
    await ev.send({ ServiceDiscoveryReq: {} });
    await ev.send({ ServicePaymentSelectionReq: { SelectedPaymentOption: 'ExternalPayment', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } } });
    for (let i = 0; i < 4; i++) expect((await ev.send({ ContractAuthenticationReq: {} }, { afterMs: 30_000 })).res.EVSEProcessing).toBe('Ongoing');
  });
});
