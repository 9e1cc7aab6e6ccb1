import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { createIso2Handler, type Iso2Secc } from './iso2.ts';
import { loadScenario, parseScenario, type ScenarioInput } from './scenario.ts';
import { SessionMemory } from './session.ts';
import { counterRandom, physical, TestEv, value } from './test-support.ts';
import type { Iso2 } from '../../firmware/exi/index.ts';

const WALL = Date.UTC(2025, 0, 15, 12, 0, 0);
const dcStatus = { EVReady: 1, EVErrorCode: 'NO_ERROR', EVRESSSOC: 30 };
const dcChargeParameter = {
  DC_EVStatus: dcStatus,
  EVMaximumCurrentLimit: physical(200, 'A'),
  EVMaximumPowerLimit: physical(8000, 'W', 1),
  EVMaximumVoltageLimit: physical(430, 'V'),
};
const currentDemand = (voltage: number, current: number) => ({
  CurrentDemandReq: {
    DC_EVStatus: dcStatus, EVTargetCurrent: physical(current, 'A'), EVMaximumVoltageLimit: physical(430, 'V'),
    EVMaximumCurrentLimit: physical(200, 'A'), ChargingComplete: 0, EVTargetVoltage: physical(voltage, 'V'),
  },
});

function setup(scenario: ScenarioInput | string, o: { tls?: boolean; memory?: SessionMemory; randomStart?: number } = {}) {
  const clock = new VirtualClock(1_000);
  const s = typeof scenario === 'string' ? loadScenario(scenario) : parseScenario(scenario, 'test');
  const secc = createIso2Handler({ scenario: s, clock, tls: o.tls ?? false, random: counterRandom(o.randomStart), wallClock: () => WALL, ...(o.memory ? { memory: o.memory } : {}) });
  return { clock, secc, ev: new TestEv<Iso2.V2G_MessageElement>('iso2', secc, clock) };
}

/** SessionSetup … PaymentServiceSelection(ExternalPayment). */
async function eimUpToAuthorization(ev: TestEv<Iso2.V2G_MessageElement>): Promise<void> {
  const setup = await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } });
  expect(setup.res.ResponseCode).toBe('OK_NewSessionEstablished');
  ev.sessionId = setup.header!.SessionID;
  await ev.send({ ServiceDiscoveryReq: {} });
  const pss = await ev.send({ PaymentServiceSelectionReq: { SelectedPaymentOption: 'ExternalPayment', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } } });
  expect(pss.res.ResponseCode).toBe('OK');
}

describe('ISO 15118-2 SECC handler: DC with external payment (EIM)', () => {
  it('runs a whole session in standard order: Ongoing phases, PreCharge ramp, CurrentDemand loop, welding voltage drop', async () => {
    const { ev, secc, clock } = setup({ description: 'dc eim', transport: 'tcp', ongoing: { Authorization: 3000, CableCheck: 1000 } });

    const setupRes = await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } });
    expect(setupRes.res).toMatchObject({ ResponseCode: 'OK_NewSessionEstablished', EVSEID: 'DE*SIM*E0001*1', EVSETimeStamp: WALL / 1000 });
    expect(setupRes.header!.SessionID).toMatch(/^[0-9a-f]{16}$/);
    expect(setupRes.header!.SessionID).not.toBe('0000000000000000');
    ev.sessionId = setupRes.header!.SessionID;

    const sd = await ev.send({ ServiceDiscoveryReq: {} });
    // Plain TCP: no Contract (PnC requires TLS), no certificate service.
    expect(sd.res.PaymentOptionList).toEqual({ PaymentOption: ['ExternalPayment'] });
    expect(sd.res.ChargeService).toMatchObject({ ServiceID: 1, ServiceCategory: 'EVCharging', SupportedEnergyTransferMode: { EnergyTransferMode: ['DC_extended'] } });
    expect(sd.res.ServiceList).toBeUndefined();

    expect((await ev.send({ ServiceDetailReq: { ServiceID: 1 } })).res.ResponseCode).toBe('OK');
    expect((await ev.send({ PaymentServiceSelectionReq: { SelectedPaymentOption: 'ExternalPayment', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } } })).res.ResponseCode).toBe('OK');

    // Authorization Ongoing for 3 s after the first request; the EV repeats once a second.
    const auth: string[] = [];
    for (let i = 0; i < 4; i++) auth.push(String((await ev.send({ AuthorizationReq: {} }, { afterMs: i ? 1000 : 0 })).res.EVSEProcessing));
    expect(auth).toEqual(['Ongoing', 'Ongoing', 'Ongoing', 'Finished']);
    expect(secc.requests.answeredWith('AuthorizationReq', 'Ongoing')).toBe(3);

    const cpd = await ev.send({ ChargeParameterDiscoveryReq: { RequestedEnergyTransferMode: 'DC_extended', DC_EVChargeParameter: dcChargeParameter } });
    expect(cpd.res).toMatchObject({ ResponseCode: 'OK', EVSEProcessing: 'Finished' });
    const evseParameter = cpd.res.DC_EVSEChargeParameter as Iso2.DC_EVSEChargeParameterType;
    expect([value(evseParameter.EVSEMaximumVoltageLimit), value(evseParameter.EVSEMaximumCurrentLimit), value(evseParameter.EVSEMaximumPowerLimit)]).toEqual([500, 200, 100_000]);
    expect(value(evseParameter.EVSEPeakCurrentRipple)).toBe(5);
    const tuples = (cpd.res.SAScheduleList as Iso2.SAScheduleListType).SAScheduleTuple;
    expect(tuples.map((t) => [t.SAScheduleTupleID, value(t.PMaxSchedule.PMaxScheduleEntry[0]!.PMax)])).toEqual([[1, 100_000]]);

    const cc1 = await ev.send({ CableCheckReq: { DC_EVStatus: dcStatus } });
    expect(cc1.res).toMatchObject({ EVSEProcessing: 'Ongoing', DC_EVSEStatus: { EVSEIsolationStatus: 'Invalid', EVSEStatusCode: 'EVSE_IsolationMonitoringActive' } });
    expect((await ev.send({ CableCheckReq: { DC_EVStatus: dcStatus } }, { afterMs: 500 })).res.EVSEProcessing).toBe('Ongoing');
    const cc3 = await ev.send({ CableCheckReq: { DC_EVStatus: dcStatus } }, { afterMs: 500 });
    expect(cc3.res).toMatchObject({ EVSEProcessing: 'Finished', DC_EVSEStatus: { EVSEIsolationStatus: 'Valid', EVSEStatusCode: 'EVSE_Ready' } });

    // PreCharge: 400 V/s towards the EV's 380 V.
    const pre = { PreChargeReq: { DC_EVStatus: dcStatus, EVTargetVoltage: physical(380, 'V'), EVTargetCurrent: physical(2, 'A') } };
    const preVoltages: number[] = [];
    for (let i = 0; i < 3; i++) preVoltages.push(value((await ev.send(pre, { afterMs: i ? 500 : 0 })).res.EVSEPresentVoltage));
    expect(preVoltages).toEqual([0, 200, 380]);

    const start = await ev.send({ PowerDeliveryReq: { ChargeProgress: 'Start', SAScheduleTupleID: 1, DC_EVPowerDeliveryParameter: { DC_EVStatus: dcStatus, ChargingComplete: 0 } } });
    expect(start.res).toMatchObject({ ResponseCode: 'OK', DC_EVSEStatus: { EVSEStatusCode: 'EVSE_Ready' } });

    // CurrentDemand every 100 ms: the current ramps at 200 A/s to the 125 A asked for.
    const currents: number[] = [];
    let last: Record<string, unknown> = {};
    for (let i = 0; i < 10; i++) {
      last = (await ev.send(currentDemand(400, 125), { afterMs: 100 })).res;
      currents.push(value(last.EVSEPresentCurrent));
    }
    // The ramp starts at the first request (the answer to it reports the present, still 0 A).
    expect(currents).toEqual([0, 20, 40, 60, 80, 100, 120, 125, 125, 125]);
    expect(value(last.EVSEPresentVoltage)).toBe(400);
    expect(last).toMatchObject({ EVSECurrentLimitAchieved: 0, EVSEVoltageLimitAchieved: 0, EVSEPowerLimitAchieved: 0, EVSEID: 'DE*SIM*E0001*1', SAScheduleTupleID: 1 });
    expect(last.ReceiptRequired).toBeUndefined(); // EIM: no receipt
    expect((last.MeterInfo as Iso2.MeterInfoType).MeterReading).toBeGreaterThan(0);

    // Asking more than the EVSE can give: clamped, and the limit flags say so.
    // 450 V × 200 A (the current limit) stays under the 100 kW power limit.
    const capped = (await ev.send(currentDemand(450, 300), { afterMs: 100 })).res;
    expect(capped).toMatchObject({ EVSECurrentLimitAchieved: 1, EVSEPowerLimitAchieved: 0, EVSEVoltageLimitAchieved: 0 });

    expect((await ev.send({ PowerDeliveryReq: { ChargeProgress: 'Stop', SAScheduleTupleID: 1, DC_EVPowerDeliveryParameter: { DC_EVStatus: dcStatus, ChargingComplete: 1 } } })).res.ResponseCode).toBe('OK');
    const weld = [];
    for (let i = 0; i < 3; i++) weld.push(value((await ev.send({ WeldingDetectionReq: { DC_EVStatus: dcStatus } }, { afterMs: 400 })).res.EVSEPresentVoltage));
    expect(weld[0]).toBeLessThan(410);
    expect(weld[1]).toBeLessThan(weld[0]!);
    expect(weld[2]).toBeLessThan(weld[1]!);

    const stop = await ev.send({ SessionStopReq: { ChargingSession: 'Terminate' } });
    expect(stop.res.ResponseCode).toBe('OK');
    expect(stop.header!.SessionID).toBe(ev.sessionId);
    expect(secc.requests.counts()).toMatchObject({ AuthorizationReq: 4, CableCheckReq: 3, PreChargeReq: 3, CurrentDemandReq: 11, PowerDeliveryReq: 2, WeldingDetectionReq: 3 });
    expect(clock.now()).toBeGreaterThan(1_000);
  });

  it('a request with another SessionID gets FAILED_UnknownSession and the connection closes', async () => {
    const { ev } = setup({ description: 'x', transport: 'tcp' });
    await eimUpToAuthorization(ev);
    const bad = await ev.send({ AuthorizationReq: {} }, { header: { SessionID: '0102030405060799' } });
    expect(bad.res).toMatchObject({ ResponseCode: 'FAILED_UnknownSession', EVSEProcessing: 'Finished' });
    expect(bad.header!.SessionID).toBe(ev.sessionId); // the SECC's own session
    expect(bad.reply.after).toBe('close');
  });

  it('a request out of order gets FAILED_SequenceError (schema-valid response of that type)', async () => {
    const { ev } = setup({ description: 'x', transport: 'tcp' });
    const s = await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } });
    ev.sessionId = s.header!.SessionID;
    const early = await ev.send(currentDemand(400, 100));
    expect(early.reply.responseName).toBe('CurrentDemandRes');
    expect(early.res.ResponseCode).toBe('FAILED_SequenceError');
    expect(early.reply.after).toBe('close');
    // Once failed, the session accepts nothing more.
    expect((await ev.send({ ServiceDiscoveryReq: {} })).res.ResponseCode).toBe('FAILED_SequenceError');
  });

  it('checks the selections: unknown payment option, no charge service, wrong energy transfer mode', async () => {
    for (const [body, code] of [
      [{ SelectedPaymentOption: 'Contract', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } }, 'FAILED_PaymentSelectionInvalid'], // Contract is not offered on TCP
      [{ SelectedPaymentOption: 'ExternalPayment', SelectedServiceList: { SelectedService: [{ ServiceID: 2 }] } }, 'FAILED_NoChargeServiceSelected'],
    ] as const) {
      const { ev } = setup({ description: 'x', transport: 'tcp' });
      ev.sessionId = (await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } })).header!.SessionID;
      await ev.send({ ServiceDiscoveryReq: {} });
      expect((await ev.send({ PaymentServiceSelectionReq: body })).res.ResponseCode).toBe(code);
    }
    const { ev } = setup({ description: 'x', transport: 'tcp' });
    await eimUpToAuthorization(ev);
    await ev.send({ AuthorizationReq: {} });
    const cpd = await ev.send({ ChargeParameterDiscoveryReq: { RequestedEnergyTransferMode: 'AC_three_phase_core', AC_EVChargeParameter: { EAmount: physical(20, 'Wh', 3), EVMaxVoltage: physical(400, 'V'), EVMaxCurrent: physical(16, 'A'), EVMinCurrent: physical(6, 'A') } } });
    expect(cpd.res.ResponseCode).toBe('FAILED_WrongEnergyTransferMode');
  });

  it('SessionStop(Pause) is remembered: the resumed session gets OK_OldSessionJoined with the same ID', async () => {
    const memory = new SessionMemory();
    const first = setup({ description: 'x', transport: 'tcp' }, { memory });
    await eimUpToAuthorization(first.ev);
    expect((await first.ev.send({ SessionStopReq: { ChargingSession: 'Pause' } })).res.ResponseCode).toBe('OK');
    const paused = first.ev.sessionId;

    const second = setup({ description: 'x', transport: 'tcp' }, { memory });
    second.ev.sessionId = paused;
    const resumed = await second.ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } });
    expect(resumed.res.ResponseCode).toBe('OK_OldSessionJoined');
    expect(resumed.header!.SessionID).toBe(paused);

    // A SessionID that was never paused (or already resumed) starts a new session.
    const third = setup({ description: 'x', transport: 'tcp' }, { memory, randomStart: 100 });
    third.ev.sessionId = paused;
    const fresh = await third.ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } });
    expect(fresh.res.ResponseCode).toBe('OK_NewSessionEstablished');
    expect(fresh.header!.SessionID).not.toBe(paused);
  });
});

describe('ISO 15118-2 SECC handler: scenario behaviours', () => {
  async function toLoop(ev: TestEv<Iso2.V2G_MessageElement>): Promise<void> {
    await eimUpToAuthorization(ev);
    await ev.send({ AuthorizationReq: {} });
    await ev.send({ ChargeParameterDiscoveryReq: { RequestedEnergyTransferMode: 'DC_extended', DC_EVChargeParameter: dcChargeParameter } });
    await ev.send({ CableCheckReq: { DC_EVStatus: dcStatus } }, { afterMs: 0 });
    await ev.send({ CableCheckReq: { DC_EVStatus: dcStatus } }, { afterMs: 1000 });
    await ev.send({ PreChargeReq: { DC_EVStatus: dcStatus, EVTargetVoltage: physical(380, 'V'), EVTargetCurrent: physical(2, 'A') } });
    await ev.send({ PreChargeReq: { DC_EVStatus: dcStatus, EVTargetVoltage: physical(380, 'V'), EVTargetCurrent: physical(2, 'A') } }, { afterMs: 1000 });
    expect((await ev.send({ PowerDeliveryReq: { ChargeProgress: 'Start', SAScheduleTupleID: 1 } })).res.ResponseCode).toBe('OK');
  }

  it('renegotiation: EVSENotification=ReNegotiation in the loop, then ChargeParameterDiscovery → PowerDelivery(Start) without a new CableCheck', async () => {
    const { ev } = setup('renegotiation');
    await toLoop(ev);
    const notes: string[] = [];
    for (let i = 0; i < 4; i++) notes.push(((await ev.send(currentDemand(400, 100), { afterMs: 100 })).res.DC_EVSEStatus as Iso2.DC_EVSEStatusType).EVSENotification);
    expect(notes.indexOf('ReNegotiation')).toBeGreaterThan(0);
    expect((await ev.send({ PowerDeliveryReq: { ChargeProgress: 'Renegotiate', SAScheduleTupleID: 1 } })).res.ResponseCode).toBe('OK');
    expect((await ev.send({ ChargeParameterDiscoveryReq: { RequestedEnergyTransferMode: 'DC_extended', DC_EVChargeParameter: dcChargeParameter } })).res.ResponseCode).toBe('OK');
    expect((await ev.send({ PowerDeliveryReq: { ChargeProgress: 'Start', SAScheduleTupleID: 1 } })).res.ResponseCode).toBe('OK');
    const after = await ev.send(currentDemand(400, 100), { afterMs: 100 });
    expect((after.res.DC_EVSEStatus as Iso2.DC_EVSEStatusType).EVSENotification).toBe('None');
  });

  it('emergency-shutdown, evse-stop-charging, overvoltage and tcp-reset-in-loop act in the loop as declared', async () => {
    const shutdown = setup('emergency-shutdown');
    await toLoop(shutdown.ev);
    const codes: string[] = [];
    for (let i = 0; i < 6; i++) codes.push(((await shutdown.ev.send(currentDemand(400, 100), { afterMs: 100 })).res.DC_EVSEStatus as Iso2.DC_EVSEStatusType).EVSEStatusCode);
    expect(codes).toContain('EVSE_EmergencyShutdown');
    expect(codes.at(-1)).toBe('EVSE_EmergencyShutdown');

    const stop = setup('evse-stop-charging');
    await toLoop(stop.ev);
    const notes: string[] = [];
    for (let i = 0; i < 6; i++) notes.push(((await stop.ev.send(currentDemand(400, 100), { afterMs: 100 })).res.DC_EVSEStatus as Iso2.DC_EVSEStatusType).EVSENotification);
    expect(notes.at(-1)).toBe('StopCharging');

    const over = setup('overvoltage');
    await toLoop(over.ev);
    const volts: number[] = [];
    for (let i = 0; i < 6; i++) volts.push(value((await over.ev.send(currentDemand(400, 100), { afterMs: 100 })).res.EVSEPresentVoltage));
    expect(Math.max(...volts)).toBeGreaterThan(430); // the EV's EVMaximumVoltageLimit

    const reset = setup('tcp-reset-in-loop');
    await toLoop(reset.ev);
    const afters: (string | undefined)[] = [];
    for (let i = 0; i < 12; i++) {
      const x = await reset.ev.send(currentDemand(400, 100), { afterMs: 100 });
      afters.push(x.reply.after);
      if (x.reply.after) break;
    }
    expect(afters.at(-1)).toBe('reset');
    expect(reset.secc.requests.records.at(-1)).toMatchObject({ name: 'CurrentDemandReq', answered: false });
  });

  it('welding-never-answered stays silent; welding-failed answers FAILED; welding-voltage-stays-high holds the voltage', async () => {
    const silent = setup('welding-never-answered');
    await toLoop(silent.ev);
    await silent.ev.send(currentDemand(400, 100), { afterMs: 100 });
    await silent.ev.send({ PowerDeliveryReq: { ChargeProgress: 'Stop', SAScheduleTupleID: 1 } });
    const w = await silent.ev.send({ WeldingDetectionReq: { DC_EVStatus: dcStatus } });
    expect(w.reply.response).toBeUndefined();
    expect(w.reply.after).toBeUndefined();

    const failed = setup('welding-failed');
    await toLoop(failed.ev);
    await failed.ev.send({ PowerDeliveryReq: { ChargeProgress: 'Stop', SAScheduleTupleID: 1 } });
    expect((await failed.ev.send({ WeldingDetectionReq: { DC_EVStatus: dcStatus } })).res.ResponseCode).toBe('FAILED');

    const high = setup('welding-voltage-stays-high');
    await toLoop(high.ev);
    for (let i = 0; i < 3; i++) await high.ev.send(currentDemand(400, 100), { afterMs: 100 });
    await high.ev.send({ PowerDeliveryReq: { ChargeProgress: 'Stop', SAScheduleTupleID: 1 } });
    const v1 = value((await high.ev.send({ WeldingDetectionReq: { DC_EVStatus: dcStatus } }, { afterMs: 500 })).res.EVSEPresentVoltage);
    const v2 = value((await high.ev.send({ WeldingDetectionReq: { DC_EVStatus: dcStatus } }, { afterMs: 2000 })).res.EVSEPresentVoltage);
    expect(v1).toBeGreaterThan(350);
    expect(v2).toBe(v1);
  });

  it('slow-chargeparameterdiscovery delays the answer by 1.5 s; ongoing-forever never finishes Authorization', async () => {
    const slow = setup('slow-chargeparameterdiscovery');
    await eimUpToAuthorization(slow.ev);
    await slow.ev.send({ AuthorizationReq: {} });
    const cpd = await slow.ev.send({ ChargeParameterDiscoveryReq: { RequestedEnergyTransferMode: 'DC_extended', DC_EVChargeParameter: dcChargeParameter } });
    expect(cpd.reply.delayMs).toBe(1500);
    expect(cpd.res.ResponseCode).toBe('OK');

    const forever = setup('ongoing-forever');
    await eimUpToAuthorization(forever.ev);
    for (let i = 0; i < 5; i++) expect((await forever.ev.send({ AuthorizationReq: {} }, { afterMs: 60_000 })).res.EVSEProcessing).toBe('Ongoing');
  });

  it('wrong-sessionid: responses from ServiceDiscoveryRes on carry a SessionID other than the one SessionSetupRes gave', async () => {
    const { ev } = setup('wrong-sessionid');
    const s = await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } });
    ev.sessionId = s.header!.SessionID;
    const sd = await ev.send({ ServiceDiscoveryReq: {} });
    expect(sd.header!.SessionID).not.toBe(ev.sessionId);
    expect(sd.res.ResponseCode).toBe('OK');
  });

  it('CertificateInstallation has a hook; without one it answers FAILED_NoCertificateAvailable (schema-valid)', async () => {
    const { ev } = setup({ description: 'x', transport: 'tls12' }, { tls: true });
    ev.sessionId = (await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } })).header!.SessionID;
    const sd = await ev.send({ ServiceDiscoveryReq: {} });
    expect(sd.res.PaymentOptionList).toEqual({ PaymentOption: ['Contract', 'ExternalPayment'] });
    expect((sd.res.ServiceList as Iso2.ServiceListType).Service[0]).toMatchObject({ ServiceID: 2, ServiceCategory: 'ContractCertificate' });
    const detail = await ev.send({ ServiceDetailReq: { ServiceID: 2 } });
    expect((detail.res.ServiceParameterList as Iso2.ServiceParameterListType).ParameterSet.map((p) => p.Parameter[0]!.stringValue)).toEqual(['Installation', 'Update']);
    await ev.send({ PaymentServiceSelectionReq: { SelectedPaymentOption: 'Contract', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }, { ServiceID: 2, ParameterSetID: 1 }] } } });
    const ci = await ev.send({
      CertificateInstallationReq: { Id: 'id1', OEMProvisioningCert: '3082', ListOfRootCertificateIDs: { RootCertificateID: [{ X509IssuerName: 'CN=V2G Root CA A', X509SerialNumber: 1 }] } },
    });
    expect(ci.res.ResponseCode).toBe('FAILED_NoCertificateAvailable');
  });
});

export type { Iso2Secc };
