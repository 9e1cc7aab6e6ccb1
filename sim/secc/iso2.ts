/**
 * ISO 15118-2 SECC (charger side), sans-I/O: `handle(V2G_Message, now)` answers one request per call.
 *
 * Message order (PROTOCOLS.md §6), enforced with FAILED_SequenceError:
 *   SessionSetup → ServiceDiscovery → [ServiceDetail]* → PaymentServiceSelection →
 *   Contract: [CertificateInstallation | CertificateUpdate] → PaymentDetails → Authorization* (signed) |
 *   ExternalPayment: Authorization* → ChargeParameterDiscovery* →
 *   DC: CableCheck* → PreCharge* → PowerDelivery(Start) → CurrentDemand* [MeteringReceipt] → PowerDelivery(Stop) →
 *       WeldingDetection* → SessionStop
 *   AC: PowerDelivery(Start) → ChargingStatus* [MeteringReceipt] → PowerDelivery(Stop) → SessionStop
 *   PowerDelivery(Renegotiate) in the loop → ChargeParameterDiscovery → PowerDelivery(Start) → loop.
 * (* = repeated while EVSEProcessing=Ongoing, or the loop.) SessionStopReq is accepted at any point after
 * SessionSetup, so an EV that gives up early can still stop in order. Every request after SessionSetup must carry the
 * session's SessionID (FAILED_UnknownSession otherwise). After a FAILED response the SECC closes the connection
 * (scenario `faults.afterFailed`).
 *
 * Plug & Charge: PaymentDetailsReq's contract chain is validated to the anchors the SECC is given (MO / V2G roots);
 * AuthorizationReq must carry a header signature by the contract key over the AuthorizationReq (by its Id) and the
 * GenChallenge of PaymentDetailsRes; MeteringReceiptReq is verified the same way.
 */
import { X509Certificate } from 'node:crypto';
import { isEvccError } from '../../core/errors.ts';
import type { Iso2 } from '../../firmware/exi/index.ts';
import { verify } from '../../firmware/exi/xmldsig/index.ts';
import { validateChain } from '../../firmware/pki/validate.ts';
import type { PowerReading, PowerStage } from './power-stage.ts';
import { paymentOptionsOf, stillOngoing, type EnergyTransferMode, type Scenario } from './scenario.ts';
import {
  defaultRandom, fmt, fromHex, hex, isZeroSessionId, newSessionId, num, powerStageFor, pv, SeccSessionBase,
  SessionMemory, since, type CertificateServiceHook, type SeccAnswer, type SeccHandlerOptions,
} from './session.ts';

type Message = Iso2.V2G_MessageElement;
type ResponseCode = Iso2.AuthorizationResType['ResponseCode'];
type PaymentOption = 'Contract' | 'ExternalPayment';
type Notification = Iso2.DC_EVSEStatusType['EVSENotification'];
/** A response body: every ISO-2 response carries a ResponseCode. */
type ResBody = { ResponseCode: ResponseCode } & Record<string, unknown>;

interface StepResult {
  body: ResBody;
  /** Header signature of the response (CertificateInstallationRes / CertificateUpdateRes from the CPS hook). */
  signature?: Iso2.SignatureType;
  encodeOptions?: { ignoreLengthFacets?: boolean };
}

const LOOP_REQUESTS = new Set(['CurrentDemandReq', 'ChargingStatusReq']);
const CHARGE_SERVICE_ID = 1;
const CERTIFICATE_SERVICE_ID = 2;
const METER_ID = 'SIM-METER-1';

export class Iso2Secc extends SeccSessionBase<Message> {
  readonly protocol = 'iso2' as const;
  protected readonly loopRequests: ReadonlySet<string> = LOOP_REQUESTS;
  protected readonly noSessionId = '0000000000000000';
  private readonly stage: PowerStage;
  private readonly memory: SessionMemory;
  private readonly wall: () => number;
  private readonly paymentOptions: PaymentOption[];
  private readonly contractRoots: readonly Uint8Array[];
  private readonly certificateService: CertificateServiceHook | undefined;

  private payment: PaymentOption | undefined;
  private contract: { cert: X509Certificate; emaid: string } | undefined;
  private genChallenge: string | undefined;
  private authorizationVerified = false;
  private readonly phaseStart: Partial<Record<'Authorization' | 'ChargeParameterDiscovery' | 'CableCheck', number>> = {};
  private energyMode: EnergyTransferMode | undefined;
  private tuples: { id: number; pMaxW: number }[] = [];
  private selectedTuple = 1;
  private cableCheckRunning = false;
  private cableCheckDone = false;
  private renegotiated = false;
  private emergency = false;
  private evMaxVoltageV: number | undefined;
  private evMaxCurrentA: number | undefined;
  private receiptMeterInfo: Iso2.MeterInfoType | undefined;
  private acEnergyWh = 0;
  private acLastAt: number | undefined;
  private acCharging = false;

  constructor(o: SeccHandlerOptions) {
    super(o.scenario, o.random ?? defaultRandom);
    this.stage = o.powerStage ?? powerStageFor(o.scenario, o.clock);
    this.memory = o.memory ?? new SessionMemory();
    this.wall = o.wallClock ?? Date.now;
    this.paymentOptions = paymentOptionsOf(o.scenario, o.tls);
    this.contractRoots = o.contractRoots ?? [];
    this.certificateService = o.certificateService;
  }

  protected minimalBody(responseName: string, code: string, content: unknown): SeccAnswer['body'] {
    return this.minimal(responseName, code as ResponseCode, content) as SeccAnswer['body'];
  }

  protected async answer(name: string, content: unknown, msg: Message, now: number): Promise<SeccAnswer> {
    return (await this.step(name, content, msg, now)) as unknown as SeccAnswer;
  }

  protected forcedCode(code: string): string {
    return code;
  }

  protected summarizeRequest(name: string, content: unknown, msg: Message): string {
    return summarizeRequest(name, content, msg);
  }

  protected summarizeResponse(responseName: string, body: SeccAnswer['body']): string {
    return summarizeResponse(responseName, body as unknown as ResBody);
  }

  private async step(name: string, content: unknown, msg: Message, now: number): Promise<StepResult> {
    switch (name) {
      case 'SessionSetupReq': return { body: this.sessionSetup(msg) };
      case 'ServiceDiscoveryReq': return { body: this.serviceDiscovery(content as Iso2.ServiceDiscoveryReqType) };
      case 'ServiceDetailReq': return { body: this.serviceDetail(content as Iso2.ServiceDetailReqType) };
      case 'PaymentServiceSelectionReq': return { body: this.paymentServiceSelection(content as Iso2.PaymentServiceSelectionReqType) };
      case 'CertificateInstallationReq': return this.certificate('installation', content, now);
      case 'CertificateUpdateReq': return this.certificate('update', content, now);
      case 'PaymentDetailsReq': return { body: this.paymentDetails(content as Iso2.PaymentDetailsReqType) };
      case 'AuthorizationReq': return { body: this.authorization(content as Iso2.AuthorizationReqType, msg, now) };
      case 'ChargeParameterDiscoveryReq': return { body: this.chargeParameterDiscovery(content as Iso2.ChargeParameterDiscoveryReqType, now) };
      case 'CableCheckReq': return { body: this.cableCheck(now) };
      case 'PreChargeReq': return { body: this.preCharge(content as Iso2.PreChargeReqType) };
      case 'PowerDeliveryReq': return { body: this.powerDelivery(content as Iso2.PowerDeliveryReqType, now) };
      case 'CurrentDemandReq': return { body: this.currentDemand(content as Iso2.CurrentDemandReqType) };
      case 'ChargingStatusReq': return { body: this.chargingStatus(now) };
      case 'MeteringReceiptReq': return { body: this.meteringReceipt(content as Iso2.MeteringReceiptReqType, msg) };
      case 'WeldingDetectionReq': return { body: this.weldingDetection() };
      case 'SessionStopReq': return { body: this.sessionStop(content as Iso2.SessionStopReqType) };
      default: return { body: this.minimal(name.replace(/Req$/, 'Res'), 'FAILED_SequenceError', content) };
    }
  }

  // ---- the exchanges --------------------------------------------------------------------------------------------

  private sessionSetup(msg: Message): ResBody {
    const evSessionId = msg.Header?.SessionID ?? '';
    let code: ResponseCode = 'OK_NewSessionEstablished';
    if (!isZeroSessionId(evSessionId) && this.memory.resume(evSessionId, 'iso2')) {
      this.sid = evSessionId.toLowerCase();
      code = 'OK_OldSessionJoined';
    } else {
      this.sid = newSessionId(this.random);
    }
    this.expected = new Set(['ServiceDiscoveryReq']);
    return { ResponseCode: code, EVSEID: this.scenario.charger.evseId, EVSETimeStamp: this.timestamp() };
  }

  private serviceDiscovery(req: Iso2.ServiceDiscoveryReqType | undefined): ResBody {
    const c = this.scenario.charger;
    const certificate = this.paymentOptions.includes('Contract') && c.certificateService
      && (req?.ServiceCategory === undefined || req.ServiceCategory === 'ContractCertificate');
    this.expected = new Set(['ServiceDetailReq', 'PaymentServiceSelectionReq']);
    return {
      ResponseCode: 'OK',
      PaymentOptionList: { PaymentOption: this.paymentOptions },
      ChargeService: {
        ServiceID: CHARGE_SERVICE_ID, ServiceName: 'AC_DC_Charging', ServiceCategory: 'EVCharging', FreeService: c.freeService ? 1 : 0,
        SupportedEnergyTransferMode: { EnergyTransferMode: c.energyTransferModes },
      },
      ...(certificate ? { ServiceList: { Service: [{ ServiceID: CERTIFICATE_SERVICE_ID, ServiceName: 'Certificate', ServiceCategory: 'ContractCertificate', FreeService: 1 }] } } : {}),
    };
  }

  private serviceDetail(req: Iso2.ServiceDetailReqType): ResBody {
    if (req.ServiceID === CHARGE_SERVICE_ID) return { ResponseCode: 'OK', ServiceID: CHARGE_SERVICE_ID };
    if (req.ServiceID === CERTIFICATE_SERVICE_ID && this.certificateOffered()) {
      return {
        ResponseCode: 'OK',
        ServiceID: CERTIFICATE_SERVICE_ID,
        ServiceParameterList: {
          ParameterSet: [
            { ParameterSetID: 1, Parameter: [{ Name: 'Service', stringValue: 'Installation' }] },
            { ParameterSetID: 2, Parameter: [{ Name: 'Service', stringValue: 'Update' }] },
          ],
        },
      };
    }
    return { ResponseCode: 'FAILED_ServiceIDInvalid', ServiceID: req.ServiceID };
  }

  private paymentServiceSelection(req: Iso2.PaymentServiceSelectionReqType): ResBody {
    if (!this.paymentOptions.includes(req.SelectedPaymentOption)) return { ResponseCode: 'FAILED_PaymentSelectionInvalid' };
    const ids = (req.SelectedServiceList?.SelectedService ?? []).map((s) => s.ServiceID);
    if (!ids.includes(CHARGE_SERVICE_ID)) return { ResponseCode: 'FAILED_NoChargeServiceSelected' };
    const known = new Set([CHARGE_SERVICE_ID, ...(this.certificateOffered() ? [CERTIFICATE_SERVICE_ID] : [])]);
    if (ids.some((id) => !known.has(id))) return { ResponseCode: 'FAILED_ServiceSelectionInvalid' };
    this.payment = req.SelectedPaymentOption;
    this.expected = this.payment === 'Contract'
      ? new Set(['PaymentDetailsReq', 'CertificateInstallationReq', 'CertificateUpdateReq'])
      : new Set(['AuthorizationReq']);
    return { ResponseCode: 'OK' };
  }

  /** The CPS / MO side is a hook (another module builds it); without one: FAILED_NoCertificateAvailable. */
  private async certificate(kind: 'installation' | 'update', req: unknown, now: number): Promise<StepResult> {
    this.expected = new Set(['PaymentDetailsReq']);
    const hook = kind === 'installation' ? this.certificateService?.installation : this.certificateService?.update;
    const resName = kind === 'installation' ? 'CertificateInstallationRes' : 'CertificateUpdateRes';
    if (!hook) return { body: this.minimal(resName, 'FAILED_NoCertificateAvailable', req) };
    const answer = await hook.call(this.certificateService, req, { sessionId: this.sid!, now });
    return {
      body: answer.body as ResBody, ...(answer.signature ? { signature: answer.signature as Iso2.SignatureType } : {}),
      ...(answer.encodeOptions ? { encodeOptions: answer.encodeOptions } : {}),
    };
  }

  private paymentDetails(req: Iso2.PaymentDetailsReqType): ResBody {
    this.genChallenge = hex(this.random(16));
    this.expected = new Set(['AuthorizationReq']);
    const body = (code: ResponseCode): ResBody => ({ ResponseCode: code, GenChallenge: this.genChallenge!, EVSETimeStamp: this.timestamp() });
    const chain = req.ContractSignatureCertChain;
    if (!chain?.Certificate) return body('FAILED_CertChainError');
    const ders = [chain.Certificate, ...(chain.SubCertificates?.Certificate ?? [])].map(fromHex);
    try {
      validateChain(ders, { anchors: this.contractRoots, now: new Date(this.wall()), purpose: 'contract' });
      this.contract = { cert: new X509Certificate(Buffer.from(ders[0]!)), emaid: req.eMAID };
    } catch (err) {
      return body(isEvccError(err, 'PKI_CERT_EXPIRED') ? 'FAILED_CertificateExpired' : 'FAILED_CertChainError');
    }
    return body('OK');
  }

  private authorization(req: Iso2.AuthorizationReqType, msg: Message, now: number): ResBody {
    const res = (code: ResponseCode, processing: Iso2.AuthorizationResType['EVSEProcessing'] = 'Finished'): ResBody => ({ ResponseCode: code, EVSEProcessing: processing });
    if (this.payment === 'Contract' && (msg.Header?.Signature || !this.authorizationVerified)) {
      if (!this.contract || !msg.Header?.Signature || !req?.Id) return res('FAILED_SignatureError');
      try {
        const { references } = verify({ V2G_Message: msg }, this.contract.cert);
        if (!references.includes(req.Id)) return res('FAILED_SignatureError');
      } catch {
        return res('FAILED_SignatureError');
      }
      if (req.GenChallenge?.toLowerCase() !== this.genChallenge) return res('FAILED_ChallengeInvalid');
      this.authorizationVerified = true;
    }
    this.phaseStart.Authorization ??= now;
    if (stillOngoing(this.scenario.ongoing.Authorization, since(this.phaseStart.Authorization, now))) {
      this.expected = new Set(['AuthorizationReq']);
      return res('OK', 'Ongoing');
    }
    this.expected = new Set(['ChargeParameterDiscoveryReq']);
    return res('OK', 'Finished');
  }

  private chargeParameterDiscovery(req: Iso2.ChargeParameterDiscoveryReqType, now: number): ResBody {
    const mode = req.RequestedEnergyTransferMode;
    if (!this.scenario.charger.energyTransferModes.includes(mode)) return this.cpdBody('FAILED_WrongEnergyTransferMode', 'Finished');
    const dc = mode.startsWith('DC_');
    if (dc ? !req.DC_EVChargeParameter : !req.AC_EVChargeParameter) return this.cpdBody('FAILED_WrongChargeParameter', 'Finished', mode);
    this.energyMode = mode;
    if (dc) {
      this.evMaxVoltageV = num(req.DC_EVChargeParameter!.EVMaximumVoltageLimit);
      this.evMaxCurrentA = num(req.DC_EVChargeParameter!.EVMaximumCurrentLimit);
    } else {
      this.evMaxVoltageV = num(req.AC_EVChargeParameter!.EVMaxVoltage);
      this.evMaxCurrentA = num(req.AC_EVChargeParameter!.EVMaxCurrent);
    }
    this.phaseStart.ChargeParameterDiscovery ??= now;
    if (stillOngoing(this.scenario.ongoing.ChargeParameterDiscovery, since(this.phaseStart.ChargeParameterDiscovery, now))) {
      this.expected = new Set(['ChargeParameterDiscoveryReq']);
      return this.cpdBody('OK', 'Ongoing', mode);
    }
    this.tuples = this.scheduleTuples(dc);
    this.expected = new Set(dc && !this.cableCheckDone ? ['CableCheckReq'] : ['PowerDeliveryReq']);
    return this.cpdBody('OK', 'Finished', mode, true);
  }

  private cableCheck(now: number): ResBody {
    this.phaseStart.CableCheck ??= now;
    this.cableCheckRunning = stillOngoing(this.scenario.ongoing.CableCheck, since(this.phaseStart.CableCheck, now));
    if (this.cableCheckRunning) {
      this.expected = new Set(['CableCheckReq']);
      return { ResponseCode: 'OK', DC_EVSEStatus: this.dcStatus(), EVSEProcessing: 'Ongoing' };
    }
    this.cableCheckDone = true;
    this.expected = new Set(['PreChargeReq']);
    return { ResponseCode: 'OK', DC_EVSEStatus: this.dcStatus(), EVSEProcessing: 'Finished' };
  }

  private preCharge(req: Iso2.PreChargeReqType): ResBody {
    const reading = this.stage.precharge(num(req.EVTargetVoltage) ?? 0);
    this.expected = new Set(['PreChargeReq', 'PowerDeliveryReq']);
    return { ResponseCode: 'OK', DC_EVSEStatus: this.dcStatus(), EVSEPresentVoltage: pv(reading.voltageV, 'V') };
  }

  private powerDelivery(req: Iso2.PowerDeliveryReqType, now: number): ResBody {
    const dc = this.isDc();
    const res = (code: ResponseCode): ResBody => (dc ? { ResponseCode: code, DC_EVSEStatus: this.dcStatus() } : { ResponseCode: code, AC_EVSEStatus: this.acStatus() });
    const loop = dc ? 'CurrentDemandReq' : 'ChargingStatusReq';
    switch (req.ChargeProgress) {
      case 'Start': {
        const tuple = this.tuples.find((t) => t.id === req.SAScheduleTupleID);
        if (!tuple) return res('FAILED_TariffSelectionInvalid');
        const entries = req.ChargingProfile?.ProfileEntry ?? [];
        if (entries.some((e) => (num(e.ChargingProfileEntryMaxPower) ?? 0) > tuple.pMaxW)) return res('FAILED_ChargingProfileInvalid');
        this.selectedTuple = tuple.id;
        if (!dc) {
          this.acCharging = true;
          this.acLastAt = now;
        }
        this.expected = new Set([loop, 'PowerDeliveryReq']);
        return res('OK');
      }
      case 'Renegotiate':
        if (!this.inLoop()) return res('FAILED_SequenceError');
        this.renegotiated = true;
        this.expected = new Set(['ChargeParameterDiscoveryReq']);
        return res('OK');
      case 'Stop':
      default:
        if (dc) {
          this.stage.off({ holdVoltage: this.scenario.welding.voltageStaysHigh });
        } else {
          this.meterAc(now);
          this.acCharging = false;
        }
        this.expected = new Set(dc ? ['WeldingDetectionReq', 'SessionStopReq'] : ['SessionStopReq']);
        return res('OK');
    }
  }

  private currentDemand(req: Iso2.CurrentDemandReqType): ResBody {
    this.loopCount++;
    const l = this.scenario.loop;
    if (l.emergencyShutdownAt !== undefined && this.loopCount >= l.emergencyShutdownAt) this.emergency = true;
    const evMax = num(req.EVMaximumVoltageLimit);
    if (evMax !== undefined) this.evMaxVoltageV = evMax;
    let reading: PowerReading = this.emergency ? this.stage.off() : this.stage.demand(num(req.EVTargetVoltage) ?? 0, num(req.EVTargetCurrent) ?? 0);
    if (l.overvoltage && this.loopCount >= l.overvoltage.at && this.evMaxVoltageV !== undefined) {
      reading = { ...reading, voltageV: this.evMaxVoltageV + l.overvoltage.aboveEvMaxV };
    }
    const d = this.scenario.charger.dc;
    const receipt = this.receiptAt();
    const meter = this.meterInfo(reading.energyWh, receipt);
    this.expected = new Set(['CurrentDemandReq', 'PowerDeliveryReq', ...(receipt ? ['MeteringReceiptReq'] : [])]);
    return {
      ResponseCode: 'OK',
      DC_EVSEStatus: this.dcStatus(),
      EVSEPresentVoltage: pv(reading.voltageV, 'V'),
      EVSEPresentCurrent: pv(reading.currentA, 'A'),
      EVSECurrentLimitAchieved: reading.currentLimitAchieved ? 1 : 0,
      EVSEVoltageLimitAchieved: reading.voltageLimitAchieved ? 1 : 0,
      EVSEPowerLimitAchieved: reading.powerLimitAchieved ? 1 : 0,
      EVSEMaximumVoltageLimit: pv(d.maxVoltageV, 'V'),
      EVSEMaximumCurrentLimit: pv(d.maxCurrentA, 'A'),
      EVSEMaximumPowerLimit: pv(d.maxPowerW, 'W'),
      EVSEID: this.scenario.charger.evseId,
      SAScheduleTupleID: this.selectedTuple,
      ...(meter ? { MeterInfo: meter } : {}),
      ...(this.payment === 'Contract' ? { ReceiptRequired: receipt ? 1 : 0 } : {}),
    };
  }

  private chargingStatus(now: number): ResBody {
    this.loopCount++;
    this.meterAc(now);
    const receipt = this.receiptAt();
    const meter = this.meterInfo(this.acEnergyWh, receipt);
    this.expected = new Set(['ChargingStatusReq', 'PowerDeliveryReq', ...(receipt ? ['MeteringReceiptReq'] : [])]);
    return {
      ResponseCode: 'OK',
      EVSEID: this.scenario.charger.evseId,
      SAScheduleTupleID: this.selectedTuple,
      EVSEMaxCurrent: pv(this.scenario.charger.ac.maxCurrentA, 'A'),
      ...(meter ? { MeterInfo: meter } : {}),
      ...(this.payment === 'Contract' ? { ReceiptRequired: receipt ? 1 : 0 } : {}),
      AC_EVSEStatus: this.acStatus(),
    };
  }

  private meteringReceipt(req: Iso2.MeteringReceiptReqType, msg: Message): ResBody {
    const dc = this.isDc();
    this.expected = new Set([dc ? 'CurrentDemandReq' : 'ChargingStatusReq', 'PowerDeliveryReq']);
    const res = (code: ResponseCode): ResBody => (dc ? { ResponseCode: code, DC_EVSEStatus: this.dcStatus() } : { ResponseCode: code, AC_EVSEStatus: this.acStatus() });
    if (!this.contract || !msg.Header?.Signature || !req.Id) return res('FAILED_MeteringSignatureNotValid');
    try {
      const { references } = verify({ V2G_Message: msg }, this.contract.cert);
      if (!references.includes(req.Id)) return res('FAILED_MeteringSignatureNotValid');
    } catch {
      return res('FAILED_MeteringSignatureNotValid');
    }
    if (req.SessionID?.toLowerCase() !== this.sid) return res('FAILED_UnknownSession');
    const sent = this.receiptMeterInfo;
    if (sent && (req.MeterInfo?.MeterID !== sent.MeterID || (sent.MeterReading !== undefined && String(req.MeterInfo?.MeterReading) !== String(sent.MeterReading)))) {
      return res('FAILED_MeteringSignatureNotValid');
    }
    return res('OK');
  }

  private weldingDetection(): ResBody {
    const reading = this.stage.read();
    this.expected = new Set(['WeldingDetectionReq', 'SessionStopReq']);
    return { ResponseCode: 'OK', DC_EVSEStatus: this.dcStatus(), EVSEPresentVoltage: pv(reading.voltageV, 'V') };
  }

  private sessionStop(req: Iso2.SessionStopReqType): ResBody {
    if (req?.ChargingSession === 'Pause' && this.sid) this.memory.pause(this.sid, 'iso2');
    if (this.isDc()) this.stage.off({ holdVoltage: this.scenario.welding.voltageStaysHigh });
    this.ended = true;
    this.expected = new Set();
    return { ResponseCode: 'OK' };
  }

  // ---- bodies and status ------------------------------------------------------------------------------------------

  /** A schema-valid response of the given type carrying `code` (sequence / session errors, forced codes). */
  private minimal(responseName: string, code: ResponseCode, req: unknown): ResBody {
    const dc = this.isDc();
    const status = dc ? { DC_EVSEStatus: this.dcStatus() } : { AC_EVSEStatus: this.acStatus() };
    const present = { EVSEPresentVoltage: pv(this.stage.read().voltageV, 'V') };
    switch (responseName) {
      case 'SessionSetupRes': return { ResponseCode: code, EVSEID: this.scenario.charger.evseId, EVSETimeStamp: this.timestamp() };
      case 'ServiceDiscoveryRes': {
        const body = this.serviceDiscovery(undefined);
        return { ...body, ResponseCode: code };
      }
      case 'ServiceDetailRes': return { ResponseCode: code, ServiceID: (req as { ServiceID?: number } | undefined)?.ServiceID ?? CHARGE_SERVICE_ID };
      case 'PaymentDetailsRes': return { ResponseCode: code, GenChallenge: this.genChallenge ?? hex(this.random(16)), EVSETimeStamp: this.timestamp() };
      case 'AuthorizationRes': return { ResponseCode: code, EVSEProcessing: 'Finished' };
      case 'ChargeParameterDiscoveryRes': return this.cpdBody(code, 'Finished');
      case 'CableCheckRes': return { ResponseCode: code, DC_EVSEStatus: this.dcStatus(), EVSEProcessing: 'Finished' };
      case 'PreChargeRes':
      case 'WeldingDetectionRes': return { ResponseCode: code, DC_EVSEStatus: this.dcStatus(), ...present };
      case 'PowerDeliveryRes':
      case 'MeteringReceiptRes': return { ResponseCode: code, ...status };
      case 'CurrentDemandRes': {
        const r = this.stage.read();
        const d = this.scenario.charger.dc;
        return {
          ResponseCode: code, DC_EVSEStatus: this.dcStatus(), EVSEPresentVoltage: pv(r.voltageV, 'V'), EVSEPresentCurrent: pv(r.currentA, 'A'),
          EVSECurrentLimitAchieved: 0, EVSEVoltageLimitAchieved: 0, EVSEPowerLimitAchieved: 0,
          EVSEMaximumVoltageLimit: pv(d.maxVoltageV, 'V'), EVSEMaximumCurrentLimit: pv(d.maxCurrentA, 'A'), EVSEMaximumPowerLimit: pv(d.maxPowerW, 'W'),
          EVSEID: this.scenario.charger.evseId, SAScheduleTupleID: this.selectedTuple,
        };
      }
      case 'ChargingStatusRes': return { ResponseCode: code, EVSEID: this.scenario.charger.evseId, SAScheduleTupleID: this.selectedTuple, AC_EVSEStatus: this.acStatus() };
      case 'CertificateInstallationRes':
      case 'CertificateUpdateRes': return placeholderCertificateRes(code, responseName === 'CertificateUpdateRes');
      default: return { ResponseCode: code }; // PaymentServiceSelectionRes, SessionStopRes
    }
  }

  private cpdBody(code: ResponseCode, processing: 'Finished' | 'Ongoing', mode?: EnergyTransferMode, withSchedule = false): ResBody {
    const c = this.scenario.charger;
    const dc = (mode ?? this.energyMode ?? c.energyTransferModes[0]!).startsWith('DC_');
    const parameter = dc
      ? {
        DC_EVSEChargeParameter: {
          DC_EVSEStatus: this.dcStatus(),
          EVSEMaximumCurrentLimit: pv(c.dc.maxCurrentA, 'A'),
          EVSEMaximumPowerLimit: pv(c.dc.maxPowerW, 'W'),
          EVSEMaximumVoltageLimit: pv(c.dc.maxVoltageV, 'V'),
          EVSEMinimumCurrentLimit: pv(c.dc.minCurrentA, 'A'),
          EVSEMinimumVoltageLimit: pv(c.dc.minVoltageV, 'V'),
          EVSECurrentRegulationTolerance: pv(c.dc.currentRegulationToleranceA, 'A'),
          EVSEPeakCurrentRipple: pv(c.dc.peakCurrentRippleA, 'A'),
        },
      }
      : {
        AC_EVSEChargeParameter: {
          AC_EVSEStatus: this.acStatus(),
          EVSENominalVoltage: pv(c.ac.nominalVoltageV, 'V'),
          EVSEMaxCurrent: pv(c.ac.maxCurrentA, 'A'),
        },
      };
    const schedule = withSchedule
      ? {
        SAScheduleList: {
          SAScheduleTuple: this.tuples.map((t) => ({
            SAScheduleTupleID: t.id,
            PMaxSchedule: { PMaxScheduleEntry: [{ RelativeTimeInterval: { start: 0, duration: 86_400 }, PMax: pv(t.pMaxW, 'W') }] },
          })),
        },
      }
      : {};
    return { ResponseCode: code, EVSEProcessing: processing, ...schedule, ...parameter };
  }

  /** 1–3 tuples: the first at PMax, each further one a quarter lower. */
  private scheduleTuples(dc: boolean): { id: number; pMaxW: number }[] {
    const c = this.scenario.charger;
    const pMax = c.pMaxW ?? (dc ? c.dc.maxPowerW : c.ac.nominalVoltageV * c.ac.maxCurrentA * c.ac.phases);
    return Array.from({ length: c.scheduleTuples }, (_, i) => ({ id: i + 1, pMaxW: Math.round(pMax * (1 - 0.25 * i)) }));
  }

  private dcStatus(): Iso2.DC_EVSEStatusType {
    const isolation = this.cableCheckDone ? 'Valid' : this.cableCheckRunning ? 'Invalid' : undefined;
    const code = this.emergency ? 'EVSE_EmergencyShutdown' : this.cableCheckRunning && !this.cableCheckDone ? 'EVSE_IsolationMonitoringActive' : 'EVSE_Ready';
    return {
      NotificationMaxDelay: this.scenario.charger.notificationMaxDelayS,
      EVSENotification: this.notification(),
      ...(isolation ? { EVSEIsolationStatus: isolation } : {}),
      EVSEStatusCode: code,
    };
  }

  private acStatus(): Iso2.AC_EVSEStatusType {
    return { NotificationMaxDelay: this.scenario.charger.notificationMaxDelayS, EVSENotification: this.notification(), RCD: this.scenario.charger.ac.rcd ? 1 : 0 };
  }

  private notification(): Notification {
    const l = this.scenario.loop;
    if (l.stopChargingAt !== undefined && this.loopCount >= l.stopChargingAt) return 'StopCharging';
    if (l.renegotiationAt !== undefined && !this.renegotiated && this.loopCount >= l.renegotiationAt && this.inLoop()) return 'ReNegotiation';
    return 'None';
  }

  private receiptAt(): boolean {
    return this.payment === 'Contract' && this.scenario.loop.receiptRequiredAt === this.loopCount;
  }

  private meterInfo(energyWh: number, force: boolean): Iso2.MeterInfoType | undefined {
    if (!this.scenario.charger.meterInfo && !force) return undefined;
    const info: Iso2.MeterInfoType = { MeterID: METER_ID, MeterReading: Math.round(energyWh), TMeter: this.timestamp() };
    if (force) this.receiptMeterInfo = info;
    return info;
  }

  private meterAc(now: number): void {
    if (!this.acCharging || this.acLastAt === undefined) return;
    const ac = this.scenario.charger.ac;
    const current = Math.min(ac.maxCurrentA, this.evMaxCurrentA ?? ac.maxCurrentA);
    this.acEnergyWh += (ac.nominalVoltageV * current * ac.phases * Math.max(0, now - this.acLastAt)) / 3_600_000;
    this.acLastAt = now;
  }

  private isDc(): boolean {
    return (this.energyMode ?? this.scenario.charger.energyTransferModes[0]!).startsWith('DC_');
  }

  private inLoop(): boolean {
    return this.expected.has('CurrentDemandReq') || this.expected.has('ChargingStatusReq');
  }

  private certificateOffered(): boolean {
    return this.paymentOptions.includes('Contract') && this.scenario.charger.certificateService;
  }

  private timestamp(): number {
    return Math.floor(this.wall() / 1000);
  }
}

/** The mandatory fields of CertificateInstallation/UpdateRes filled with placeholders, for a FAILED answer. */
function placeholderCertificateRes(code: ResponseCode, update: boolean): ResBody {
  return {
    ResponseCode: code,
    SAProvisioningCertificateChain: { Certificate: '00' },
    ContractSignatureCertChain: { Id: 'id1', Certificate: '00' },
    ContractSignatureEncryptedPrivateKey: { Id: 'id2', CONTENT: '00'.repeat(48) },
    DHpublickey: { Id: 'id3', CONTENT: '04' + '00'.repeat(64) },
    eMAID: { Id: 'id4', CONTENT: 'DE0000000000000' },
    ...(update ? { RetryCounter: 0 } : {}),
  };
}

function summarizeRequest(name: string, content: unknown, msg: Message): string {
  const c: unknown = content ?? {};
  switch (name) {
    case 'SessionSetupReq': return `${name} (EVCCID ${(c as Iso2.SessionSetupReqType).EVCCID}, SessionID ${msg.Header?.SessionID})`;
    case 'PaymentServiceSelectionReq': return `${name} (${(c as Iso2.PaymentServiceSelectionReqType).SelectedPaymentOption})`;
    case 'AuthorizationReq': return `${name} (${msg.Header?.Signature ? 'signed' : 'unsigned'})`;
    case 'ChargeParameterDiscoveryReq': {
      const r = c as Iso2.ChargeParameterDiscoveryReqType;
      const dc = r.DC_EVChargeParameter;
      const ac = r.AC_EVChargeParameter;
      const limits = dc ? `, EV max ${fmt(num(dc.EVMaximumVoltageLimit), 'V')} ${fmt(num(dc.EVMaximumCurrentLimit), 'A')}` : ac ? `, EV max ${fmt(num(ac.EVMaxCurrent), 'A')}` : '';
      return `${name} (${r.RequestedEnergyTransferMode}${limits})`;
    }
    case 'PreChargeReq':
    case 'CurrentDemandReq': {
      const r = c as Iso2.CurrentDemandReqType;
      return `${name} (target ${fmt(num(r.EVTargetVoltage), 'V')} ${fmt(num(r.EVTargetCurrent), 'A')})`;
    }
    case 'PowerDeliveryReq': {
      const r = c as Iso2.PowerDeliveryReqType;
      return `${name} (${r.ChargeProgress}, tuple ${r.SAScheduleTupleID})`;
    }
    case 'SessionStopReq': return `${name} (${(c as Iso2.SessionStopReqType).ChargingSession})`;
    default: return name;
  }
}

function summarizeResponse(name: string, body: ResBody): string {
  const b = body as Record<string, unknown>;
  const parts: string[] = [];
  if (typeof b.EVSEProcessing === 'string') parts.push(b.EVSEProcessing);
  const v = num(b.EVSEPresentVoltage as Iso2.PhysicalValueType | undefined);
  const i = num(b.EVSEPresentCurrent as Iso2.PhysicalValueType | undefined);
  if (v !== undefined) parts.push(i !== undefined ? `present ${fmt(v, 'V')} ${fmt(i, 'A')}` : `present ${fmt(v, 'V')}`);
  const status = (b.DC_EVSEStatus ?? b.AC_EVSEStatus) as { EVSENotification?: string; EVSEStatusCode?: string } | undefined;
  if (status?.EVSENotification && status.EVSENotification !== 'None') parts.push(`notification ${status.EVSENotification}`);
  if (status?.EVSEStatusCode && status.EVSEStatusCode !== 'EVSE_Ready') parts.push(status.EVSEStatusCode);
  if (b.ReceiptRequired === 1) parts.push('receipt required');
  return `${name} ${body.ResponseCode}${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

export function createIso2Handler(o: SeccHandlerOptions): Iso2Secc {
  return new Iso2Secc(o);
}
