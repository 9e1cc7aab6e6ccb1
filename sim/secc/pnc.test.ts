import { beforeAll, describe, expect, it } from 'vitest';
import { createHash, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import type { Iso2 } from '../../firmware/exi/index.ts';
import { sign } from '../../firmware/exi/xmldsig/index.ts';
import { generateTestPki, type TestPki } from '../../firmware/pki/generate.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { createIso2Handler } from './iso2.ts';
import { loadScenario } from './scenario.ts';
import { counterRandom, physical, softwareSigner, TestEv, value } from './test-support.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await generateTestPki();
});

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function setup(name: string, o: { roots?: Uint8Array[]; wall?: number } = {}) {
  const clock = new VirtualClock(0);
  const secc = createIso2Handler({
    scenario: loadScenario(name), clock, tls: true, random: counterRandom(), contractRoots: o.roots ?? [pki.mo.root.der],
    wallClock: () => o.wall ?? Date.now(),
  });
  return { secc, ev: new TestEv<Iso2.V2G_MessageElement>('iso2', secc, clock) };
}

/** SessionSetup … PaymentDetails with the MO contract chain; returns the GenChallenge. */
async function upToAuthorization(ev: TestEv<Iso2.V2G_MessageElement>): Promise<{ challenge: string; code: string }> {
  ev.sessionId = (await ev.send({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } })).header!.SessionID;
  const sd = await ev.send({ ServiceDiscoveryReq: {} });
  expect((sd.res.PaymentOptionList as Iso2.PaymentOptionListType).PaymentOption).toContain('Contract');
  expect((await ev.send({ PaymentServiceSelectionReq: { SelectedPaymentOption: 'Contract', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } } })).res.ResponseCode).toBe('OK');
  const pd = await ev.send({
    PaymentDetailsReq: {
      eMAID: 'DEEVCC000000001',
      ContractSignatureCertChain: { Certificate: hex(pki.mo.contract.der), SubCertificates: { Certificate: [hex(pki.mo.sub2.der), hex(pki.mo.sub1.der)] } },
    },
  });
  expect(String(pd.res.GenChallenge)).toMatch(/^[0-9a-f]{32}$/); // 16 bytes
  return { challenge: String(pd.res.GenChallenge), code: String(pd.res.ResponseCode) };
}

async function signedAuthorization(ev: TestEv<Iso2.V2G_MessageElement>, challenge: string, keyPem: string) {
  const body = { AuthorizationReq: { Id: 'id1', GenChallenge: challenge } };
  const Signature = await sign([body], softwareSigner(keyPem));
  return ev.send(body, { header: { Signature } });
}

describe('ISO 15118-2 SECC handler: Plug & Charge', () => {
  it('the software signer produces signatures node:crypto verifies (the test tool itself is sound)', async () => {
    const digest = createHash('sha256').update('evcc').digest();
    const sig = await softwareSigner(pki.mo.contract.keyPem).sign(digest);
    expect(cryptoVerify('sha256', Buffer.from('evcc'), { key: new X509Certificate(pki.mo.contract.pem).publicKey, dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
  });

  it('verifies the AuthorizationReq signature with the contract certificate of PaymentDetailsReq', async () => {
    const { ev } = setup('normal-dc-pnc');
    const { challenge, code } = await upToAuthorization(ev);
    expect(code).toBe('OK');
    const auth = await signedAuthorization(ev, challenge, pki.mo.contract.keyPem);
    expect(auth.res).toMatchObject({ ResponseCode: 'OK', EVSEProcessing: 'Finished' });
  });

  it('a signature by another key is FAILED_SignatureError; an unsigned request too', async () => {
    const a = setup('normal-dc-pnc');
    const { challenge } = await upToAuthorization(a.ev);
    expect((await signedAuthorization(a.ev, challenge, pki.oem.vehicle.keyPem)).res.ResponseCode).toBe('FAILED_SignatureError');

    const b = setup('normal-dc-pnc');
    const c = await upToAuthorization(b.ev);
    expect((await b.ev.send({ AuthorizationReq: { Id: 'id1', GenChallenge: c.challenge } })).res.ResponseCode).toBe('FAILED_SignatureError');
  });

  it('a valid signature over another GenChallenge is FAILED_ChallengeInvalid', async () => {
    const { ev } = setup('normal-dc-pnc');
    await upToAuthorization(ev);
    expect((await signedAuthorization(ev, '00112233445566778899aabbccddeeff', pki.mo.contract.keyPem)).res.ResponseCode).toBe('FAILED_ChallengeInvalid');
  });

  it('a contract chain that does not reach the given MO root is FAILED_CertChainError; an expired one FAILED_CertificateExpired', async () => {
    const foreign = setup('normal-dc-pnc', { roots: [pki.a.root.der] });
    expect((await upToAuthorization(foreign.ev)).code).toBe('FAILED_CertChainError');
    const late = setup('normal-dc-pnc', { wall: Date.now() + 20 * 365 * 86_400_000 });
    expect((await upToAuthorization(late.ev)).code).toBe('FAILED_CertificateExpired');
  });

  it('failed-signature answers FAILED_SignatureError even to a good signature', async () => {
    const { ev } = setup('failed-signature');
    const { challenge } = await upToAuthorization(ev);
    expect((await signedAuthorization(ev, challenge, pki.mo.contract.keyPem)).res.ResponseCode).toBe('FAILED_SignatureError');
  });

  it('AC with ReceiptRequired: MeteringReceiptReq signed with the contract key is verified; a tampered reading is refused', async () => {
    for (const tamper of [false, true]) {
      const { ev, secc } = setup('normal-ac-pnc');
      const { challenge } = await upToAuthorization(ev);
      expect((await signedAuthorization(ev, challenge, pki.mo.contract.keyPem)).res.EVSEProcessing).toBe('Finished');
      const cpd = await ev.send({
        ChargeParameterDiscoveryReq: {
          RequestedEnergyTransferMode: 'AC_three_phase_core',
          AC_EVChargeParameter: { EAmount: physical(20, 'Wh', 3), EVMaxVoltage: physical(400, 'V'), EVMaxCurrent: physical(16, 'A'), EVMinCurrent: physical(6, 'A') },
        },
      });
      const acParameter = cpd.res.AC_EVSEChargeParameter as Iso2.AC_EVSEChargeParameterType;
      expect([value(acParameter.EVSEMaxCurrent), value(acParameter.EVSENominalVoltage), acParameter.AC_EVSEStatus.EVSENotification]).toEqual([32, 230, 'None']);
      expect((await ev.send({ PowerDeliveryReq: { ChargeProgress: 'Start', SAScheduleTupleID: 1 } })).res).toMatchObject({ ResponseCode: 'OK', AC_EVSEStatus: { RCD: 0 } });

      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await ev.send({ ChargingStatusReq: {} }, { afterMs: 1000 })).res);
      expect(statuses.map((s) => s.ReceiptRequired)).toEqual([0, 0, 1]);
      const meter = statuses[2]!.MeterInfo as Iso2.MeterInfoType;
      // 3 × 16 A at 230 V for 2 s since PowerDelivery(Start).
      expect(Number(meter.MeterReading)).toBe(Math.round((230 * 16 * 3 * 3) / 3600));

      const receipt = { MeteringReceiptReq: { Id: 'id2', SessionID: ev.sessionId, SAScheduleTupleID: 1, MeterInfo: tamper ? { ...meter, MeterReading: Number(meter.MeterReading) + 100 } : meter } };
      const Signature = await sign([receipt], softwareSigner(pki.mo.contract.keyPem));
      const mr = await ev.send(receipt, { header: { Signature } });
      expect(mr.res.ResponseCode).toBe(tamper ? 'FAILED_MeteringSignatureNotValid' : 'OK');
      if (tamper) continue;
      expect(mr.res.AC_EVSEStatus).toBeDefined();
      expect((await ev.send({ ChargingStatusReq: {} }, { afterMs: 1000 })).res.ReceiptRequired).toBe(0);
      expect((await ev.send({ PowerDeliveryReq: { ChargeProgress: 'Stop', SAScheduleTupleID: 1 } })).res.ResponseCode).toBe('OK');
      expect((await ev.send({ SessionStopReq: { ChargingSession: 'Terminate' } })).res.ResponseCode).toBe('OK');
      expect(secc.requests.count('MeteringReceiptReq')).toBe(1);
    }
  });
});
