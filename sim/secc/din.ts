/**
 * DIN SPEC 70121 SECC (DC only, plain TCP, external payment), sans-I/O: `handle(V2G_Message, now)`.
 *
 * Message order (PROTOCOLS.md §8), enforced with FAILED_SequenceError:
 *   SessionSetup → ServiceDiscovery → ServicePaymentSelection → ContractAuthentication* → ChargeParameterDiscovery* →
 *   CableCheck* → PreCharge* → PowerDelivery(ReadyToChargeState=1) → CurrentDemand* → PowerDelivery(0) →
 *   WeldingDetection* → SessionStop
 * (* = repeated while EVSEProcessing=Ongoing, or the loop.) SessionStopReq is accepted at any point after
 * SessionSetup. No signatures, no contracts; DIN has no session pause, so a non-zero SessionID in SessionSetupReq
 * simply gets a new session.
 */
import type { Din } from '../../firmware/exi/index.ts';
import type { PowerReading, PowerStage } from './power-stage.ts';
import { RESPONSE_CODES, stillOngoing, type Scenario } from './scenario.ts';
import {
  defaultRandom, fmt, hex, newSessionId, num, powerStageFor, pv, SeccSessionBase, since,
  type SeccAnswer, type SeccHandlerOptions,
} from './session.ts';

type Message = Din.V2G_MessageElement;
type ResponseCode = Din.ContractAuthenticationResType['ResponseCode'];
type ResBody = { ResponseCode: ResponseCode } & Record<string, unknown>;

/** DIN's response codes: ISO-only codes forced by a scenario fall back to FAILED. */
const DIN_CODES = new Set<string>(RESPONSE_CODES.filter((c) => !['FAILED_NoChargeServiceSelected', 'FAILED_WrongEnergyTransferMode', 'FAILED_ContactorError', 'FAILED_CertificateNotAllowedAtThisEVSE', 'FAILED_CertificateRevoked'].includes(c)));
const CHARGE_SERVICE_ID = 1;
/** DIN's PMax is a bare int16; the simulator sends watts, capped at its range. */
const DIN_PMAX_MAX = 32_767;

export class DinSecc extends SeccSessionBase<Message> {
  readonly protocol = 'din' as const;
  protected readonly loopRequests: ReadonlySet<string> = new Set(['CurrentDemandReq']);
  protected readonly noSessionId = '00';
  private readonly stage: PowerStage;
  private readonly wall: () => number;
  private readonly phaseStart: Partial<Record<'ContractAuthentication' | 'ChargeParameterDiscovery' | 'CableCheck', number>> = {};
  private tuples: number[] = [];
  private cableCheckRunning = false;
  private cableCheckDone = false;
  private emergency = false;
  private evMaxVoltageV: number | undefined;

  constructor(o: SeccHandlerOptions) {
    super(o.scenario, o.random ?? defaultRandom);
    this.stage = o.powerStage ?? powerStageFor(o.scenario, o.clock);
    this.wall = o.wallClock ?? Date.now;
  }

  protected minimalBody(responseName: string, code: string): SeccAnswer['body'] {
    return this.minimal(responseName, code as ResponseCode) as SeccAnswer['body'];
  }

  protected async answer(name: string, content: unknown, _msg: Message, now: number): Promise<SeccAnswer> {
    return { body: this.step(name, content, now) as SeccAnswer['body'] };
  }

  protected forcedCode(code: string): string {
    return DIN_CODES.has(code) ? code : 'FAILED';
  }

  protected summarizeRequest(name: string, content: unknown, msg: Message): string {
    return summarizeRequest(name, content, msg);
  }

  protected summarizeResponse(responseName: string, body: SeccAnswer['body']): string {
    return summarizeResponse(responseName, body as unknown as ResBody);
  }

  private step(name: string, content: unknown, now: number): ResBody {
    switch (name) {
      case 'SessionSetupReq':
        this.sid = newSessionId(this.random);
        this.expected = new Set(['ServiceDiscoveryReq']);
        return { ResponseCode: 'OK_NewSessionEstablished', EVSEID: this.evseId(), DateTimeNow: Math.floor(this.wall() / 1000) };
      case 'ServiceDiscoveryReq':
        this.expected = new Set(['ServicePaymentSelectionReq']);
        return this.serviceDiscovery('OK');
      case 'ServicePaymentSelectionReq': return this.servicePaymentSelection(content as Din.ServicePaymentSelectionReqType);
      case 'ContractAuthenticationReq': return this.contractAuthentication(now);
      case 'ChargeParameterDiscoveryReq': return this.chargeParameterDiscovery(content as Din.ChargeParameterDiscoveryReqType, now);
      case 'CableCheckReq': return this.cableCheck(now);
      case 'PreChargeReq': {
        const reading = this.stage.precharge(num((content as Din.PreChargeReqType).EVTargetVoltage) ?? 0);
        this.expected = new Set(['PreChargeReq', 'PowerDeliveryReq']);
        return { ResponseCode: 'OK', DC_EVSEStatus: this.dcStatus(), EVSEPresentVoltage: pv(reading.voltageV, 'V') };
      }
      case 'PowerDeliveryReq': return this.powerDelivery(content as Din.PowerDeliveryReqType);
      case 'CurrentDemandReq': return this.currentDemand(content as Din.CurrentDemandReqType);
      case 'WeldingDetectionReq':
        this.expected = new Set(['WeldingDetectionReq', 'SessionStopReq']);
        return { ResponseCode: 'OK', DC_EVSEStatus: this.dcStatus(), EVSEPresentVoltage: pv(this.stage.read().voltageV, 'V') };
      case 'SessionStopReq':
        this.stage.off({ holdVoltage: this.scenario.welding.voltageStaysHigh });
        this.ended = true;
        this.expected = new Set();
        return { ResponseCode: 'OK' };
      default:
        return this.minimal(name.replace(/Req$/, 'Res'), 'FAILED_SequenceError');
    }
  }

  private serviceDiscovery(code: ResponseCode): ResBody {
    return {
      ResponseCode: code,
      PaymentOptions: { PaymentOption: ['ExternalPayment'] },
      ChargeService: {
        ServiceTag: { ServiceID: CHARGE_SERVICE_ID, ServiceCategory: 'EVCharging' },
        FreeService: this.scenario.charger.freeService ? 1 : 0,
        EnergyTransferType: this.dcMode(),
      },
    };
  }

  private servicePaymentSelection(req: Din.ServicePaymentSelectionReqType): ResBody {
    if (req.SelectedPaymentOption !== 'ExternalPayment') return { ResponseCode: 'FAILED_PaymentSelectionInvalid' };
    const ids = (req.SelectedServiceList?.SelectedService ?? []).map((s) => s.ServiceID);
    if (!ids.includes(CHARGE_SERVICE_ID) || ids.some((id) => id !== CHARGE_SERVICE_ID)) return { ResponseCode: 'FAILED_ServiceSelectionInvalid' };
    this.expected = new Set(['ContractAuthenticationReq']);
    return { ResponseCode: 'OK' };
  }

  private contractAuthentication(now: number): ResBody {
    this.phaseStart.ContractAuthentication ??= now;
    if (stillOngoing(this.scenario.ongoing.ContractAuthentication, since(this.phaseStart.ContractAuthentication, now))) {
      this.expected = new Set(['ContractAuthenticationReq']);
      return { ResponseCode: 'OK', EVSEProcessing: 'Ongoing' };
    }
    this.expected = new Set(['ChargeParameterDiscoveryReq']);
    return { ResponseCode: 'OK', EVSEProcessing: 'Finished' };
  }

  private chargeParameterDiscovery(req: Din.ChargeParameterDiscoveryReqType, now: number): ResBody {
    const offered = this.scenario.charger.energyTransferModes as readonly string[];
    if (!req.EVRequestedEnergyTransferType?.startsWith('DC_') || !offered.includes(req.EVRequestedEnergyTransferType)) return this.cpdBody('FAILED_WrongEnergyTransferType', 'Finished');
    if (!req.DC_EVChargeParameter) return this.cpdBody('FAILED_WrongChargeParameter', 'Finished');
    this.evMaxVoltageV = num(req.DC_EVChargeParameter.EVMaximumVoltageLimit);
    this.phaseStart.ChargeParameterDiscovery ??= now;
    if (stillOngoing(this.scenario.ongoing.ChargeParameterDiscovery, since(this.phaseStart.ChargeParameterDiscovery, now))) {
      this.expected = new Set(['ChargeParameterDiscoveryReq']);
      return this.cpdBody('OK', 'Ongoing');
    }
    this.tuples = Array.from({ length: this.scenario.charger.scheduleTuples }, (_, i) => i + 1);
    this.expected = new Set([this.cableCheckDone ? 'PowerDeliveryReq' : 'CableCheckReq']);
    return this.cpdBody('OK', 'Finished', true);
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

  private powerDelivery(req: Din.PowerDeliveryReqType): ResBody {
    if (req.ReadyToChargeState === 1) {
      const tuple = req.ChargingProfile?.SAScheduleTupleID;
      if (tuple !== undefined && !this.tuples.includes(tuple)) return { ResponseCode: 'FAILED_TariffSelectionInvalid', DC_EVSEStatus: this.dcStatus() };
      this.expected = new Set(['CurrentDemandReq', 'PowerDeliveryReq']);
      return { ResponseCode: 'OK', DC_EVSEStatus: this.dcStatus() };
    }
    this.stage.off({ holdVoltage: this.scenario.welding.voltageStaysHigh });
    this.expected = new Set(['WeldingDetectionReq', 'SessionStopReq']);
    return { ResponseCode: 'OK', DC_EVSEStatus: this.dcStatus() };
  }

  private currentDemand(req: Din.CurrentDemandReqType): ResBody {
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
    this.expected = new Set(['CurrentDemandReq', 'PowerDeliveryReq']);
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
    };
  }

  private minimal(responseName: string, code: ResponseCode): ResBody {
    switch (responseName) {
      case 'SessionSetupRes': return { ResponseCode: code, EVSEID: this.evseId() };
      case 'ServiceDiscoveryRes': return this.serviceDiscovery(code);
      case 'ContractAuthenticationRes': return { ResponseCode: code, EVSEProcessing: 'Finished' };
      case 'ChargeParameterDiscoveryRes': return this.cpdBody(code, 'Finished');
      case 'CableCheckRes': return { ResponseCode: code, DC_EVSEStatus: this.dcStatus(), EVSEProcessing: 'Finished' };
      case 'PreChargeRes':
      case 'WeldingDetectionRes': return { ResponseCode: code, DC_EVSEStatus: this.dcStatus(), EVSEPresentVoltage: pv(this.stage.read().voltageV, 'V') };
      case 'PowerDeliveryRes': return { ResponseCode: code, DC_EVSEStatus: this.dcStatus() };
      case 'CurrentDemandRes': {
        const r = this.stage.read();
        return {
          ResponseCode: code, DC_EVSEStatus: this.dcStatus(), EVSEPresentVoltage: pv(r.voltageV, 'V'), EVSEPresentCurrent: pv(r.currentA, 'A'),
          EVSECurrentLimitAchieved: 0, EVSEVoltageLimitAchieved: 0, EVSEPowerLimitAchieved: 0,
        };
      }
      case 'ServiceDetailRes': return { ResponseCode: code, ServiceID: CHARGE_SERVICE_ID };
      case 'PaymentDetailsRes': return { ResponseCode: code, GenChallenge: '00', DateTimeNow: Math.floor(this.wall() / 1000) };
      case 'ChargingStatusRes': return { ResponseCode: code, EVSEID: this.evseId(), SAScheduleTupleID: 1, ReceiptRequired: 0, AC_EVSEStatus: { PowerSwitchClosed: 0, RCD: 0, NotificationMaxDelay: 0, EVSENotification: 'None' } };
      default: return { ResponseCode: code }; // ServicePaymentSelectionRes, SessionStopRes (and requests DIN's SECC does not serve)
    }
  }

  private cpdBody(code: ResponseCode, processing: 'Finished' | 'Ongoing', withSchedule = false): ResBody {
    const d = this.scenario.charger.dc;
    const pMax = Math.min(DIN_PMAX_MAX, Math.round(this.scenario.charger.pMaxW ?? d.maxPowerW));
    return {
      ResponseCode: code,
      EVSEProcessing: processing,
      ...(withSchedule
        ? {
          SAScheduleList: {
            SAScheduleTuple: this.tuples.map((id) => ({
              SAScheduleTupleID: id,
              PMaxSchedule: { PMaxScheduleID: id, PMaxScheduleEntry: [{ RelativeTimeInterval: { start: 0, duration: 86_400 }, PMax: Math.round(pMax * (1 - 0.25 * (id - 1))) }] },
            })),
          },
        }
        : {}),
      DC_EVSEChargeParameter: {
        DC_EVSEStatus: this.dcStatus(),
        EVSEMaximumCurrentLimit: pv(d.maxCurrentA, 'A'),
        EVSEMaximumPowerLimit: pv(d.maxPowerW, 'W'),
        EVSEMaximumVoltageLimit: pv(d.maxVoltageV, 'V'),
        EVSEMinimumCurrentLimit: pv(d.minCurrentA, 'A'),
        EVSEMinimumVoltageLimit: pv(d.minVoltageV, 'V'),
        EVSECurrentRegulationTolerance: pv(d.currentRegulationToleranceA, 'A'),
        EVSEPeakCurrentRipple: pv(d.peakCurrentRippleA, 'A'),
      },
    };
  }

  private dcStatus(): Din.DC_EVSEStatusType {
    const l = this.scenario.loop;
    const isolation = this.cableCheckDone ? 'Valid' : this.cableCheckRunning ? 'Invalid' : undefined;
    return {
      ...(isolation ? { EVSEIsolationStatus: isolation } : {}),
      EVSEStatusCode: this.emergency ? 'EVSE_EmergencyShutdown' : this.cableCheckRunning && !this.cableCheckDone ? 'EVSE_IsolationMonitoringActive' : 'EVSE_Ready',
      NotificationMaxDelay: this.scenario.charger.notificationMaxDelayS,
      EVSENotification: l.stopChargingAt !== undefined && this.loopCount >= l.stopChargingAt ? 'StopCharging' : 'None',
    };
  }

  private dcMode(): Din.ServiceChargeType['EnergyTransferType'] {
    return (this.scenario.charger.energyTransferModes.find((m) => m.startsWith('DC_')) ?? 'DC_extended') as Din.ServiceChargeType['EnergyTransferType'];
  }

  /** DIN's EVSEID is hexBinary: the ASCII bytes of the configured EVSEID. */
  private evseId(): string {
    return hex(new TextEncoder().encode(this.scenario.charger.evseId));
  }
}

function summarizeRequest(name: string, content: unknown, msg: Message): string {
  switch (name) {
    case 'SessionSetupReq': return `${name} (EVCCID ${(content as Din.SessionSetupReqType).EVCCID}, SessionID ${msg.Header?.SessionID})`;
    case 'ChargeParameterDiscoveryReq': {
      const r = content as Din.ChargeParameterDiscoveryReqType;
      const dc = r.DC_EVChargeParameter;
      return `${name} (${r.EVRequestedEnergyTransferType}${dc ? `, EV max ${fmt(num(dc.EVMaximumVoltageLimit), 'V')} ${fmt(num(dc.EVMaximumCurrentLimit), 'A')}` : ''})`;
    }
    case 'PreChargeReq':
    case 'CurrentDemandReq': {
      const r = content as Din.CurrentDemandReqType;
      return `${name} (target ${fmt(num(r.EVTargetVoltage), 'V')} ${fmt(num(r.EVTargetCurrent), 'A')})`;
    }
    case 'PowerDeliveryReq': return `${name} (ReadyToChargeState ${(content as Din.PowerDeliveryReqType).ReadyToChargeState})`;
    default: return name;
  }
}

function summarizeResponse(name: string, body: ResBody): string {
  const b = body as Record<string, unknown>;
  const parts: string[] = [];
  if (typeof b.EVSEProcessing === 'string') parts.push(b.EVSEProcessing);
  const v = num(b.EVSEPresentVoltage as Din.PhysicalValueType | undefined);
  const i = num(b.EVSEPresentCurrent as Din.PhysicalValueType | undefined);
  if (v !== undefined) parts.push(i !== undefined ? `present ${fmt(v, 'V')} ${fmt(i, 'A')}` : `present ${fmt(v, 'V')}`);
  const status = b.DC_EVSEStatus as Din.DC_EVSEStatusType | undefined;
  if (status && status.EVSENotification !== 'None') parts.push(`notification ${status.EVSENotification}`);
  if (status && status.EVSEStatusCode !== 'EVSE_Ready') parts.push(status.EVSEStatusCode);
  return `${name} ${body.ResponseCode}${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

export function createDinHandler(o: SeccHandlerOptions): DinSecc {
  return new DinSecc(o);
}
