import { beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '../../../core/bytes.ts';
import { EvccError } from '../../../core/errors.ts';
import { verify } from '../../exi/xmldsig/index.ts';
import type { SessionEvent } from '../engine.ts';
import { TimerTable } from '../timers.ts';
import { createIso2Module } from './module.ts';
import { parseIso2Settings } from './settings.ts';
import {
  FakeEv, notes, runIso2, ScriptedSecc, SECC_SESSION_ID, sentNames, testCredentials, timeOf,
  type Iso2Run, type ScriptedSeccOptions, type TestCredentials,
} from './test-secc.ts';

const EIM = { evccId: '02e7cc000001', channel: 'tcp', pnc: false } as const;
const DAY_MS = 86_400_000;
const ROOTS = [{ X509IssuerName: 'CN=V2G Root CA A,O=EVCC Test PKI A,C=DE,DC=V2G', X509SerialNumber: 4_660n }];
let cred: TestCredentials;
beforeAll(async () => {
  cred = await testCredentials();
});
const pnc = (over: Record<string, unknown> = {}) => ({ evccId: '02e7cc000001', channel: 'tls' as const, pnc: true, contract: cred.contract, wallClock: new Date(), ...over });

function fullAfter(secc: ScriptedSecc, n: number): FakeEv {
  const ev = new FakeEv();
  ev.dynamic = () => ({ chargingComplete: secc.count('CurrentDemandReq') + secc.count('ChargingStatusReq') >= n });
  return ev;
}
const sentAt = (run: Iso2Run, name: string) => run.events.filter((e) => e.event.type === 'sent' && (e.event as { name: string }).name === name).map((e) => e.at);
const isStopping = (e: SessionEvent) => e.type === 'stopping';

describe('ISO-2 payment selection', () => {
  it('a SECC offering Contract on plain TCP gets ExternalPayment and a WARN, even with PnC allowed', async () => {
    const secc = new ScriptedSecc();
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), module: pnc({ channel: 'tcp' }), signers: cred.signers });
    expect(run.result.outcome).toBe('completed');
    expect(secc.requests('PaymentServiceSelectionReq')[0]!.body.SelectedPaymentOption).toBe('ExternalPayment');
    expect(notes(run, 'warn')).toContain('the SECC offers Contract on a plain-TCP session: the contract is never used without TLS, ExternalPayment instead');
    expect(run.effects.some((e) => e.request.kind === 'sign')).toBe(false);
  });

  it('Contract only when PnC is allowed: a degraded vehicle on TLS pays externally', async () => {
    const secc = new ScriptedSecc();
    await runIso2({ secc, ev: fullAfter(secc, 1), module: pnc({ pnc: false }) });
    expect(secc.requests('PaymentServiceSelectionReq')[0]!.body.SelectedPaymentOption).toBe('ExternalPayment');
  });

  it('a SECC that offers Contract only, where the contract cannot be used: ISO2_NO_PAYMENT_OPTION, SessionStop in order', async () => {
    const secc = new ScriptedSecc({ paymentOptions: ['Contract'] });
    const run = await runIso2({ secc, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_NO_PAYMENT_OPTION', details: { offered: ['Contract'], channel: 'tcp' } } });
    expect(sentNames(run).slice(-2)).toEqual(['ServiceDiscoveryReq', 'SessionStopReq']);
  });

  it('PnC without a contract and without a certificate service: WARN, ExternalPayment', async () => {
    const secc = new ScriptedSecc();
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), module: pnc({ contract: undefined, provisioningCertificate: cred.provisioning.der }) });
    expect(secc.requests('PaymentServiceSelectionReq')[0]!.body.SelectedPaymentOption).toBe('ExternalPayment');
    expect(notes(run, 'warn').some((m) => m.includes('no contract installed'))).toBe(true);
  });

  it('no common energy transfer mode: ISO2_ENERGY_TRANSFER_MODE_UNSUPPORTED', async () => {
    const secc = new ScriptedSecc({ modes: ['AC_single_phase_core'] });
    const run = await runIso2({ secc, module: { ...EIM, settings: { energyTransferModes: ['DC_extended', 'DC_core'] } } });
    expect(run.result).toMatchObject({ orderly: true, reason: { code: 'ISO2_ENERGY_TRANSFER_MODE_UNSUPPORTED', details: { offered: ['AC_single_phase_core'] } } });
  });

  it('the first configured mode the SECC supports is requested', async () => {
    const secc = new ScriptedSecc({ modes: ['AC_three_phase_core', 'DC_core'] });
    await runIso2({ secc, ev: fullAfter(secc, 1), module: { ...EIM, settings: { energyTransferModes: ['DC_extended', 'DC_core', 'AC_three_phase_core'] } } });
    expect(secc.requests('ChargeParameterDiscoveryReq')[0]!.body.RequestedEnergyTransferMode).toBe('DC_core');
  });
});

describe('ISO-2 contract certificates', () => {
  it('CertificateInstallation: ServiceDetail, the certificate service selected, the request signed by the provisioning key, installContract run, the new contract in PaymentDetails', async () => {
    const secc = new ScriptedSecc({ certificateService: true });
    const run = await runIso2({
      secc, ev: fullAfter(secc, 1), signers: cred.signers,
      module: pnc({ contract: undefined, provisioningCertificate: cred.provisioning.der, rootCertificateIds: ROOTS }),
    });
    expect(run.result).toMatchObject({ outcome: 'completed', orderly: true });
    expect(sentNames(run).slice(1, 7)).toEqual(['SessionSetupReq', 'ServiceDiscoveryReq', 'ServiceDetailReq', 'PaymentServiceSelectionReq', 'CertificateInstallationReq', 'PaymentDetailsReq']);
    expect(secc.requests('ServiceDetailReq')[0]!.body).toEqual({ ServiceID: 2 });
    expect(secc.requests('PaymentServiceSelectionReq')[0]!.body).toEqual({ SelectedPaymentOption: 'Contract', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }, { ServiceID: 2, ParameterSetID: 1 }] } });
    const install = secc.requests('CertificateInstallationReq')[0]!;
    expect(install.body).toMatchObject({ Id: 'id1', OEMProvisioningCert: toHex(cred.provisioning.der), ListOfRootCertificateIDs: { RootCertificateID: [{ X509IssuerName: ROOTS[0]!.X509IssuerName, X509SerialNumber: 4_660 }] } });
    expect(verify({ V2G_Message: { Header: install.header, Body: { CertificateInstallationReq: install.body } } } as never, cred.provisioning.der).references).toEqual(['id1']);
    const effect = run.effects.find((e) => e.request.kind === 'installContract')!.request as { operation: string; header: Record<string, unknown>; response: Record<string, unknown> };
    expect(effect.operation).toBe('installation');
    expect(effect.header).toEqual({ SessionID: SECC_SESSION_ID });
    expect(effect.response).toMatchObject({ eMAID: { Id: 'id4', CONTENT: 'DEEVCC000000002' } });
    // The eMAID as installContract verified it; the chain from the verified response (the result has none).
    expect(secc.requests('PaymentDetailsReq')[0]!.body).toEqual({ eMAID: 'DEEVCC000000002', ContractSignatureCertChain: { Certificate: 'abcdef01', SubCertificates: { Certificate: ['abcdef02'] } } });
    expect(run.result.protocol).toMatchObject({ certificateOperation: 'installation', emaid: 'DEEVCC000000002' });
  });

  it('an installContract result that carries the chain is used as is', async () => {
    const secc = new ScriptedSecc({ certificateService: true });
    await runIso2({
      secc, ev: fullAfter(secc, 1), signers: cred.signers,
      module: pnc({ contract: undefined, provisioningCertificate: cred.provisioning.der, rootCertificateIds: ROOTS }),
      installContract: () => ({ emaid: 'DEEVCC000000003', contractKeyId: 'c3', chain: { Certificate: '0badc0de' } }),
    });
    expect(secc.requests('PaymentDetailsReq')[0]!.body).toEqual({ eMAID: 'DEEVCC000000003', ContractSignatureCertChain: { Certificate: '0badc0de' } });
  });

  it('a failed installContract (signature or chain refused) stops before PaymentDetails with its typed code, SessionStop in order', async () => {
    const secc = new ScriptedSecc({ certificateService: true });
    const run = await runIso2({
      secc, signers: cred.signers,
      module: pnc({ contract: undefined, provisioningCertificate: cred.provisioning.der, rootCertificateIds: ROOTS }),
      installContract: () => { throw new EvccError('XMLDSIG_BAD_SIGNATURE', 'CertificateInstallationRes signature does not verify'); },
    });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'XMLDSIG_BAD_SIGNATURE' } });
    expect(secc.count('PaymentDetailsReq')).toBe(0);
    expect(sentNames(run).slice(-2)).toEqual(['CertificateInstallationReq', 'SessionStopReq']);
  });

  it('no installed V2G roots to list: no CertificateInstallation is attempted (ListOfRootCertificateIDs needs one)', async () => {
    const secc = new ScriptedSecc({ certificateService: true });
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), module: pnc({ contract: undefined, provisioningCertificate: cred.provisioning.der }) });
    expect(run.result.outcome).toBe('completed');
    expect(secc.count('CertificateInstallationReq')).toBe(0);
    expect(secc.requests('PaymentServiceSelectionReq')[0]!.body.SelectedPaymentOption).toBe('ExternalPayment');
  });

  it('CertificateUpdate when the contract expires within the renewal window, signed by the contract key', async () => {
    const secc = new ScriptedSecc({ certificateService: true });
    const now = new Date();
    const contract = { ...cred.contract, notAfter: new Date(now.getTime() + 10 * DAY_MS) };
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), signers: cred.signers, module: pnc({ contract, wallClock: now, rootCertificateIds: ROOTS }) });
    expect(run.result.outcome).toBe('completed');
    expect(secc.requests('PaymentServiceSelectionReq')[0]!.body.SelectedServiceList).toEqual({ SelectedService: [{ ServiceID: 1 }, { ServiceID: 2, ParameterSetID: 2 }] });
    const update = secc.requests('CertificateUpdateReq')[0]!;
    expect(update.body).toMatchObject({ Id: 'id1', eMAID: 'DEEVCC000000001', ContractSignatureCertChain: cred.contract.certificateChain });
    expect(verify({ V2G_Message: { Header: update.header, Body: { CertificateUpdateReq: update.body } } } as never, cred.contractCert.der).references).toEqual(['id1']);
    expect(secc.requests('PaymentDetailsReq')[0]!.body.eMAID).toBe('DEEVCC000000002');
    // Outside the window (window 5 days): no update.
    const later = new ScriptedSecc({ certificateService: true });
    await runIso2({ secc: later, ev: fullAfter(later, 1), signers: cred.signers, module: pnc({ contract, wallClock: now, settings: { certificateRenewalDays: 5 } }) });
    expect(later.count('CertificateUpdateReq') + later.count('ServiceDetailReq')).toBe(0);
  });

  it('a PaymentDetailsRes whose GenChallenge is not 16 bytes: ISO2_INVALID_RESPONSE, nothing signed', async () => {
    const secc = new ScriptedSecc({
      on: { PaymentDetailsReq: () => ({ body: { PaymentDetailsRes: { ResponseCode: 'OK', GenChallenge: '0011223344556677', EVSETimeStamp: 1 } }, encode: { ignoreLengthFacets: true } }) },
    });
    const run = await runIso2({ secc, signers: cred.signers, module: pnc() });
    expect(run.result).toMatchObject({ orderly: true, reason: { code: 'ISO2_INVALID_RESPONSE', details: { message: 'PaymentDetailsRes', field: 'GenChallenge' } } });
    expect(run.effects.some((e) => e.request.kind === 'sign')).toBe(false);
    expect(sentNames(run).slice(-1)).toEqual(['SessionStopReq']);
  });
});

describe('ISO-2 SessionSetup, pause and resume', () => {
  it('pause: PowerDelivery(Stop) → WeldingDetection → SessionStop(Pause), ended paused with the SessionID; resume joins it (OK_OldSessionJoined)', async () => {
    const secc = new ScriptedSecc();
    const ev = new FakeEv();
    ev.dynamic = () => ({ pauseRequested: secc.count('CurrentDemandReq') >= 3 });
    const first = await runIso2({ secc, ev, module: EIM });
    expect(first.result).toMatchObject({ outcome: 'paused', orderly: true, protocol: { sessionId: SECC_SESSION_ID, paused: true, endedBy: 'ev-pause' } });
    expect(secc.received.slice(-4).map((r) => r.name)).toEqual(['PowerDeliveryReq', 'WeldingDetectionReq', 'WeldingDetectionReq', 'SessionStopReq']);
    expect(secc.requests('SessionStopReq')[0]!.body).toEqual({ ChargingSession: 'Pause' });

    const again = new ScriptedSecc({ joinable: SECC_SESSION_ID });
    const second = await runIso2({ secc: again, ev: fullAfter(again, 2), module: { ...EIM, resume: { sessionId: String(first.result.protocol!.sessionId) } } });
    expect(again.received[0]!.header.SessionID).toBe(SECC_SESSION_ID);
    expect(second.events.some((e) => e.event.type === 'received' && (e.event as { responseCode?: string }).responseCode === 'OK_OldSessionJoined')).toBe(true);
    expect(second.result).toMatchObject({ outcome: 'completed', protocol: { resumed: true, sessionId: SECC_SESSION_ID } });
    expect(again.requests('SessionStopReq')[0]!.body).toEqual({ ChargingSession: 'Terminate' });
  });

  it('a SECC that does not join the paused session: WARN, the new session goes on with its SessionID', async () => {
    const secc = new ScriptedSecc({ sessionId: 'aabbccdd00112233' });
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), module: { ...EIM, resume: { sessionId: SECC_SESSION_ID } } });
    expect(run.result).toMatchObject({ outcome: 'completed', protocol: { resumed: false, sessionId: 'aabbccdd00112233' } });
    expect(notes(run, 'warn').some((m) => m.includes(`did not join paused session ${SECC_SESSION_ID}`))).toBe(true);
    expect(secc.received.slice(1).every((r) => r.header.SessionID === 'aabbccdd00112233')).toBe(true);
  });

  it('a failure on the way to a pause terminates instead of pausing', async () => {
    const secc = new ScriptedSecc({ on: { WeldingDetectionReq: (_r, _s, def) => ({ WeldingDetectionRes: { ...(def().WeldingDetectionRes as object), ResponseCode: 'FAILED' } }) } });
    const ev = new FakeEv();
    ev.dynamic = () => ({ pauseRequested: secc.count('CurrentDemandReq') >= 2 });
    const run = await runIso2({ secc, ev, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true });
    expect(secc.requests('SessionStopReq')[0]!.body).toEqual({ ChargingSession: 'Terminate' });
  });

  it('an all-zero SessionID from the SECC: ISO2_SESSION_ID_INVALID; another SessionID later: ISO2_SESSION_ID_MISMATCH', async () => {
    const zero = new ScriptedSecc({ on: { SessionSetupReq: (_r, _s, def) => ({ body: def(), sessionId: '0000000000000000' }) } });
    const r1 = await runIso2({ secc: zero, module: EIM });
    expect(r1.result).toMatchObject({ outcome: 'failed', reason: { code: 'ISO2_SESSION_ID_INVALID' } });
    expect(zero.count('ServiceDiscoveryReq')).toBe(0);
    const other = new ScriptedSecc({ on: { ServiceDiscoveryReq: (_r, _s, def) => ({ body: def(), sessionId: '1111111111111111' }) } });
    const r2 = await runIso2({ secc: other, module: EIM });
    expect(r2.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_SESSION_ID_MISMATCH', details: { expected: SECC_SESSION_ID, got: '1111111111111111' } } });
  });

  it('SessionSetupRes handled without a response header (an engine that does not pass env.header) fails typed', () => {
    const m = createIso2Module(EIM);
    const env = { now: 0, ev: new FakeEv(), timers: new TimerTable(), effectResults: {}, note: () => undefined };
    const t = m.steps.sessionSetup!.handle({ ResponseCode: 'OK_NewSessionEstablished', EVSEID: 'E1' }, m.ctx, env);
    expect(t).toMatchObject({ kind: 'stop', reason: { code: 'ISO2_RESPONSE_HEADER_UNAVAILABLE', failure: true } });
    expect(m.steps.sessionSetup!.handle({ ResponseCode: 'OK', EVSEID: 'E1' }, m.ctx, { ...env, header: { SessionID: 'ABCDEF0102030405' } })).toMatchObject({ kind: 'next', step: 'serviceDiscovery' });
    expect(m.expectedSessionId(m.ctx)).toBe('abcdef0102030405');
  });

  it('the engine reports SESSION_SETUP_OK once SessionSetupRes is accepted (the communication-setup budget ends there)', async () => {
    const secc = new ScriptedSecc();
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), module: EIM });
    const cp = run.events.filter((e) => e.event.type === 'checkpoint').map((e) => (e.event as { id: string }).id);
    expect(cp).toEqual(['APPHAND_OK', 'SESSION_SETUP_OK', 'SESSION_COMPLETED']);
  });
});

describe('ISO-2 EVSEProcessing=Ongoing', () => {
  it('paces repetitions: 10 s of Ongoing Authorization is ≤ 11 requests, 1 s after each answer', async () => {
    const secc = new ScriptedSecc({
      on: {
        AuthorizationReq: (_r, s) => {
          const first = s.requests('AuthorizationReq')[0]!.at;
          return { AuthorizationRes: { ResponseCode: 'OK', EVSEProcessing: s.received.at(-1)!.at - first < 10_000 ? 'Ongoing' : 'Finished' } };
        },
      },
    });
    const run = await runIso2({ secc, ev: fullAfter(secc, 1), module: EIM });
    expect(run.result.outcome).toBe('completed');
    const at = sentAt(run, 'AuthorizationReq');
    expect(at.filter((t) => t - at[0]! <= 10_000).length).toBeLessThanOrEqual(11);
    expect(at.slice(1).map((t, i) => t - at[i]!)).toEqual(Array(at.length - 1).fill(1_005));
    expect(at).toHaveLength(11); // 0, 1005, …, 10050: the 11th answer is Finished
  });

  it('Ongoing longer than V2G_EVCC_Ongoing_Timeout (60 s): ISO2_ONGOING_TIMEOUT and an orderly SessionStop', async () => {
    const secc = new ScriptedSecc({ on: { AuthorizationReq: () => ({ AuthorizationRes: { ResponseCode: 'OK', EVSEProcessing: 'Ongoing_WaitingForCustomerInteraction' } }) } });
    const run = await runIso2({ secc, module: EIM });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_ONGOING_TIMEOUT', details: { timer: 'V2G_EVCC_Ongoing_Timeout', limitMs: 60_000 } } });
    const first = sentAt(run, 'AuthorizationReq')[0]!;
    expect(timeOf(run, isStopping)! - first).toBe(60_000 + secc.o.rttMs);
    expect(secc.count('AuthorizationReq')).toBe(1 + Math.ceil(60_000 / 1_005));
    expect(sentNames(run).slice(-1)).toEqual(['SessionStopReq']);
  });

  it('ChargeParameterDiscovery Ongoing repeats the same way, and the settings relax the bound and the pacing', async () => {
    const secc = new ScriptedSecc({ on: { ChargeParameterDiscoveryReq: (_r, _s, def) => ({ ChargeParameterDiscoveryRes: { ...(def().ChargeParameterDiscoveryRes as object), EVSEProcessing: 'Ongoing' } }) } });
    const run = await runIso2({ secc, module: { ...EIM, settings: { timeouts: { ongoing: 90_000 }, pacing: { ongoingRepeat: 2_000 } } } });
    expect(run.result.reason).toMatchObject({ code: 'ISO2_ONGOING_TIMEOUT', details: { limitMs: 90_000 } });
    const at = sentAt(run, 'ChargeParameterDiscoveryReq');
    expect(at[1]! - at[0]!).toBe(2_005);
    expect(timeOf(run, isStopping)! - at[0]!).toBe(90_000 + secc.o.rttMs);
  });
});

describe('ISO-2 timers, through the virtual clock', () => {
  type Case = [request: string, ms: number, secc: ScriptedSeccOptions, module: 'eim' | 'pnc' | 'install' | 'update' | 'ac-pnc'];
  const cases: Case[] = [
    ['SessionSetupReq', 2_000, {}, 'eim'],
    ['ServiceDiscoveryReq', 2_000, {}, 'eim'],
    ['ServiceDetailReq', 5_000, { certificateService: true }, 'install'],
    ['PaymentServiceSelectionReq', 2_000, {}, 'eim'],
    ['CertificateInstallationReq', 5_000, { certificateService: true }, 'install'],
    ['CertificateUpdateReq', 5_000, { certificateService: true }, 'update'],
    ['PaymentDetailsReq', 5_000, {}, 'pnc'],
    ['AuthorizationReq', 2_000, {}, 'eim'],
    ['ChargeParameterDiscoveryReq', 2_000, {}, 'eim'],
    ['CableCheckReq', 2_000, {}, 'eim'],
    ['PreChargeReq', 2_000, {}, 'eim'],
    ['PowerDeliveryReq', 5_000, {}, 'eim'],
    ['CurrentDemandReq', 250, {}, 'eim'],
    ['ChargingStatusReq', 2_000, { modes: ['AC_three_phase_core'] }, 'eim'],
    ['MeteringReceiptReq', 2_000, { modes: ['AC_three_phase_core'], receiptRequired: true }, 'ac-pnc'],
    ['SessionStopReq', 2_000, {}, 'eim'],
  ];
  it.each(cases)('no answer to %s: ISO2_TIMEOUT after %i ms', async (request, ms, seccOptions, kind) => {
    const secc = new ScriptedSecc({ ...seccOptions, on: { [request]: () => 'silence' } });
    const now = new Date();
    const module = kind === 'eim' ? EIM
      : kind === 'install' ? pnc({ contract: undefined, provisioningCertificate: cred.provisioning.der, rootCertificateIds: ROOTS })
        : kind === 'update' ? pnc({ contract: { ...cred.contract, notAfter: new Date(now.getTime() + DAY_MS) }, wallClock: now, rootCertificateIds: ROOTS })
          : pnc();
    const run = await runIso2({ secc, ev: fullAfter(secc, 2), module, signers: cred.signers });
    expect(run.result).toMatchObject({ outcome: 'failed', orderly: false, reason: { code: 'ISO2_TIMEOUT', details: { message: request.replace(/Req$/, 'Res') } } });
    expect(run.endedAt - sentAt(run, request).at(-1)!).toBe(ms);
  });

  it('session.iso2.timeouts relax a message timeout; session.timeouts (the engine table) takes precedence', async () => {
    const silent = () => new ScriptedSecc({ on: { ChargeParameterDiscoveryReq: () => 'silence' } });
    const relaxed = await runIso2({ secc: silent(), module: { ...EIM, settings: { timeouts: { chargeParameterDiscovery: 5_000 } } } });
    expect(relaxed.endedAt - sentAt(relaxed, 'ChargeParameterDiscoveryReq')[0]!).toBe(5_000);
    expect(relaxed.result.reason.details).toMatchObject({ timer: 'V2G_EVCC_Msg_Timeout(ChargeParameterDiscoveryRes)' });
    const both = await runIso2({ secc: silent(), timers: new TimerTable({ chargeParameterDiscovery: 7_000 }), module: { ...EIM, settings: { timeouts: { chargeParameterDiscovery: 5_000 } } } });
    expect(both.endedAt - sentAt(both, 'ChargeParameterDiscoveryReq')[0]!).toBe(7_000);
  });

  it('pacing settings change the loop intervals', async () => {
    const secc = new ScriptedSecc();
    const run = await runIso2({ secc, ev: fullAfter(secc, 3), module: { ...EIM, settings: { pacing: { currentDemandInterval: 200 } } } });
    const at = sentAt(run, 'CurrentDemandReq');
    expect(at.slice(1).map((t, i) => t - at[i]!)).toEqual([205, 205]);
  });
});

describe('ISO-2 settings and options', () => {
  it('defaults are the documented values; out-of-range and unknown keys are CONFIG_INVALID', () => {
    expect(parseIso2Settings({})).toMatchObject({ preChargeToleranceV: 20, preChargeCurrentA: 2, weldingSafeVoltageV: 60, certificateRenewalDays: 30, timeouts: {}, pacing: {} });
    expect(() => parseIso2Settings({ preChargeToleranceV: 100 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => parseIso2Settings({ preChargeCurrentA: 5 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => parseIso2Settings({ timeouts: { ongoingg: 1 } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => parseIso2Settings({ energyTransferModes: [] })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('EVCCID from bytes or hex with separators; anything else is CONFIG_INVALID', () => {
    expect(createIso2Module({ ...EIM, evccId: Uint8Array.of(2, 0xe7, 0xcc, 0, 0, 1) }).ctx.evccId).toBe('02e7cc000001');
    expect(createIso2Module({ ...EIM, evccId: '02-E7-CC-00-00-01' }).ctx.evccId).toBe('02e7cc000001');
    expect(() => createIso2Module({ ...EIM, evccId: '02e7cc' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => createIso2Module({ ...EIM, resume: { sessionId: 'xyz' } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
