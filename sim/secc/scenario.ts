/**
 * Declared charger behaviours: one JSON file per scenario in `scenarios/`, validated with zod and loaded by name
 * (`normal-dc-pnc`) or by path (`./my-charger.json`). A scenario says how the simulated SECC is reached (transport,
 * SDP, the chain it presents, the protocols it accepts) and where it departs from a well-behaved charger: response
 * delays, forced response codes, how long EVSEProcessing stays Ongoing, messages it never answers, and events in the
 * charge loop (renegotiation, stop, emergency shutdown, overvoltage, TCP reset).
 *
 * Message keys are the message names without Req/Res (`CurrentDemand`), shared by ISO 15118-2 and DIN SPEC 70121.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';

export type ScenarioErrorCode = 'SIM_SCENARIO_NOT_FOUND' | 'SIM_SCENARIO_JSON' | 'SIM_SCENARIO_INVALID';

export class ScenarioError extends EvccError<ScenarioErrorCode> {
  override readonly name = 'ScenarioError';
}

export const SCENARIO_DIR = join(dirname(fileURLToPath(import.meta.url)), 'scenarios');

/** Request/response pairs by their name without the Req/Res suffix (ISO 15118-2 and DIN SPEC 70121). */
export const MESSAGE_NAMES = [
  'SessionSetup', 'ServiceDiscovery', 'ServiceDetail', 'PaymentServiceSelection', 'ServicePaymentSelection',
  'CertificateInstallation', 'CertificateUpdate', 'PaymentDetails', 'Authorization', 'ContractAuthentication',
  'ChargeParameterDiscovery', 'CableCheck', 'PreCharge', 'PowerDelivery', 'CurrentDemand', 'ChargingStatus',
  'MeteringReceipt', 'WeldingDetection', 'SessionStop',
] as const;
export type MessageName = (typeof MESSAGE_NAMES)[number];

/** Response codes of ISO 15118-2 and DIN SPEC 70121 together (a DIN answer falls back to FAILED for an ISO-only code). */
export const RESPONSE_CODES = [
  'OK', 'OK_NewSessionEstablished', 'OK_OldSessionJoined', 'OK_CertificateExpiresSoon', 'FAILED', 'FAILED_SequenceError',
  'FAILED_ServiceIDInvalid', 'FAILED_UnknownSession', 'FAILED_ServiceSelectionInvalid', 'FAILED_PaymentSelectionInvalid',
  'FAILED_CertificateExpired', 'FAILED_SignatureError', 'FAILED_NoCertificateAvailable', 'FAILED_CertChainError',
  'FAILED_ChallengeInvalid', 'FAILED_ContractCanceled', 'FAILED_WrongChargeParameter', 'FAILED_PowerDeliveryNotApplied',
  'FAILED_TariffSelectionInvalid', 'FAILED_ChargingProfileInvalid', 'FAILED_MeteringSignatureNotValid',
  'FAILED_NoChargeServiceSelected', 'FAILED_WrongEnergyTransferMode', 'FAILED_ContactorError',
  'FAILED_CertificateNotAllowedAtThisEVSE', 'FAILED_CertificateRevoked', 'FAILED_EVSEPresentVoltageToLow',
  'FAILED_WrongEnergyTransferType',
] as const;
export type ScenarioResponseCode = (typeof RESPONSE_CODES)[number];

export const ENERGY_TRANSFER_MODES = ['AC_single_phase_core', 'AC_three_phase_core', 'DC_core', 'DC_extended', 'DC_combo_core', 'DC_unique'] as const;
export type EnergyTransferMode = (typeof ENERGY_TRANSFER_MODES)[number];

const Ms = z.number().int().min(0).max(3_600_000);
const OngoingMs = z.union([Ms, z.literal('forever')]);
const LoopIndex = z.number().int().min(1).max(1_000_000);
const MessageKey = z.enum(MESSAGE_NAMES);

const DcLimits = z.strictObject({
  maxVoltageV: z.number().positive().max(1500).default(500),
  minVoltageV: z.number().min(0).max(1500).default(150),
  maxCurrentA: z.number().positive().max(1000).default(200),
  minCurrentA: z.number().min(0).max(1000).default(0),
  maxPowerW: z.number().positive().max(1_000_000).default(100_000),
  peakCurrentRippleA: z.number().min(0).max(100).default(5),
  currentRegulationToleranceA: z.number().min(0).max(100).default(5),
});

const AcLimits = z.strictObject({
  nominalVoltageV: z.number().positive().max(1000).default(230),
  maxCurrentA: z.number().positive().max(500).default(32),
  phases: z.union([z.literal(1), z.literal(3)]).default(3),
  rcd: z.boolean().default(false),
});

const Charger = z.strictObject({
  /** ISO 15118-2 EVSEID (DIN sends its ASCII bytes as hexBinary). */
  evseId: z.string().min(7).max(32).default('DE*SIM*E0001*1'),
  energyTransferModes: z.array(z.enum(ENERGY_TRANSFER_MODES)).min(1).max(6).default(['DC_extended']),
  /** Default: Contract and ExternalPayment over TLS, ExternalPayment alone on plain TCP (PnC requires TLS). */
  paymentOptions: z.array(z.enum(['Contract', 'ExternalPayment'])).min(1).max(2).optional(),
  /** ServiceList offers the certificate service (ServiceID 2) whenever Contract is offered. */
  certificateService: z.boolean().default(true),
  freeService: z.boolean().default(false),
  dc: DcLimits.prefault({}),
  ac: AcLimits.prefault({}),
  /** Number of SAScheduleTuples offered (ISO 15118-2 allows up to 3). */
  scheduleTuples: z.number().int().min(1).max(3).default(1),
  /** PMax of the first tuple (default: the DC power limit, or the AC power). */
  pMaxW: z.number().positive().max(1_000_000).optional(),
  meterInfo: z.boolean().default(true),
  notificationMaxDelayS: z.number().int().min(0).max(65_535).default(0),
});

const PowerStageRamps = z.strictObject({
  voltageRampVPerS: z.number().positive().max(100_000).default(400),
  currentRampAPerS: z.number().positive().max(100_000).default(200),
  dischargeVPerS: z.number().positive().max(100_000).default(400),
});

const Ongoing = z.strictObject({
  Authorization: OngoingMs.default(0),
  ContractAuthentication: OngoingMs.default(0),
  ChargeParameterDiscovery: OngoingMs.default(0),
  CableCheck: OngoingMs.default(1000),
});

const Loop = z.strictObject({
  /** ReceiptRequired=1 in the N-th loop response (Contract payment only): the EV answers with MeteringReceiptReq. */
  receiptRequiredAt: LoopIndex.optional(),
  /** EVSENotification=ReNegotiation from the N-th loop response until the EV renegotiates (ISO 15118-2 only). */
  renegotiationAt: LoopIndex.optional(),
  /** EVSENotification=StopCharging from the N-th loop response on. */
  stopChargingAt: LoopIndex.optional(),
  /** EVSEStatusCode=EVSE_EmergencyShutdown (DC) from the N-th loop response on; the output switches off. */
  emergencyShutdownAt: LoopIndex.optional(),
  /** EVSEPresentVoltage this far above the EV's maximum voltage from the N-th loop response on. */
  overvoltage: z.strictObject({ at: LoopIndex, aboveEvMaxV: z.number().positive().max(500) }).optional(),
  /** After N answered loop requests, the next one gets a TCP reset instead of an answer. */
  resetConnectionAfter: LoopIndex.optional(),
});

export const ScenarioSchema = z.strictObject({
  description: z.string().min(1),
  transport: z.enum(['tls12', 'tls13', 'tcp']),
  /** The chain the SECC presents (unknown-root: PKI-B). */
  chain: z.enum(['pki-a', 'pki-b', 'pki-b-cross']).default('pki-a'),
  /** TLS 1.3: require the vehicle certificate (default on for TLS 1.3). */
  clientAuth: z.boolean().optional(),
  sdp: z.strictObject({
    mode: z.enum(['normal', 'junk-first', 'silent', 'off']).default('normal'),
    /** Security byte announced in SECCDiscoveryRes (default: by transport). */
    announce: z.enum(['tls', 'none']).optional(),
  }).prefault({}),
  protocols: z.strictObject({
    /** Accepted in SupportedAppProtocol, in the SECC's order of preference. */
    supported: z.array(z.enum(['iso2', 'din'])).min(1).max(2).default(['iso2', 'din']),
    /** 'ev-priority': the EV's best Priority wins (standard); 'secc-preference': the SECC's first supported wins. */
    choice: z.enum(['ev-priority', 'secc-preference']).default('ev-priority'),
  }).prefault({}),
  charger: Charger.prefault({}),
  powerStage: PowerStageRamps.prefault({}),
  /** How long EVSEProcessing stays Ongoing after the first request of that kind, ms (or 'forever'). */
  ongoing: Ongoing.prefault({}),
  /** Wait this long before answering, ms. */
  delays: z.partialRecord(MessageKey, Ms).default({}),
  /** Answer with this response code (every request of that kind). */
  responseCodes: z.partialRecord(MessageKey, z.enum(RESPONSE_CODES)).default({}),
  /** Never answered (the connection stays open). */
  silent: z.array(MessageKey).default([]),
  loop: Loop.prefault({}),
  welding: z.strictObject({
    /** EVSEPresentVoltage does not drop during WeldingDetection (seen on a field charger). */
    voltageStaysHigh: z.boolean().default(false),
  }).prefault({}),
  faults: z.strictObject({
    /** From this response on, the header carries a SessionID other than the one SessionSetupRes gave. */
    wrongSessionIdFrom: MessageKey.optional(),
    /** After a FAILED response: close the TCP connection (default) or keep it open. */
    afterFailed: z.enum(['close', 'stay-open']).default('close'),
  }).prefault({}),
}).superRefine((s, ctx) => {
  const dcModes = s.charger.energyTransferModes.filter((m) => m.startsWith('DC_'));
  if (s.protocols.supported.includes('din') && dcModes.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['charger', 'energyTransferModes'], message: 'DIN SPEC 70121 is DC only: offer a DC mode when din is supported' });
  }
  if (new Set(s.protocols.supported).size !== s.protocols.supported.length) {
    ctx.addIssue({ code: 'custom', path: ['protocols', 'supported'], message: 'a protocol is listed twice' });
  }
  if (s.charger.dc.minVoltageV > s.charger.dc.maxVoltageV) {
    ctx.addIssue({ code: 'custom', path: ['charger', 'dc', 'minVoltageV'], message: 'above maxVoltageV' });
  }
});

export type ScenarioInput = z.input<typeof ScenarioSchema>;
export type ScenarioSpec = z.output<typeof ScenarioSchema>;

/** A validated scenario with the name it was loaded under (the file stem). */
export interface Scenario extends ScenarioSpec {
  readonly name: string;
}

/** Validates a scenario object; `name` labels it (file stem, or 'inline'). */
export function parseScenario(value: unknown, name = 'inline'): Scenario {
  const r = ScenarioSchema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ScenarioError('SIM_SCENARIO_INVALID', `scenario ${name} is invalid: ${issues.join('; ')}`, { scenario: name, issues });
  }
  return { ...r.data, name };
}

/** The names of the scenario files shipped in `scenarios/`. */
export function listScenarios(): string[] {
  return readdirSync(SCENARIO_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length)).sort();
}

/** Loads a scenario by name (a file of `scenarios/`) or by path (anything with a slash or ending in .json). */
export function loadScenario(nameOrPath: string): Scenario {
  const isPath = nameOrPath.includes('/') || nameOrPath.endsWith('.json');
  if (!isPath && !/^[a-z0-9][a-z0-9-]*$/.test(nameOrPath)) {
    throw new ScenarioError('SIM_SCENARIO_NOT_FOUND', `no scenario named ${JSON.stringify(nameOrPath)}`, { scenario: nameOrPath });
  }
  const file = isPath ? nameOrPath : join(SCENARIO_DIR, `${nameOrPath}.json`);
  const name = basename(file).replace(/\.json$/, '');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const known = isPath ? '' : ` (have: ${listScenarios().join(', ')})`;
    throw new ScenarioError('SIM_SCENARIO_NOT_FOUND', `scenario ${nameOrPath} not found${known}`, { scenario: nameOrPath, file }, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ScenarioError('SIM_SCENARIO_JSON', `scenario ${file} is not JSON: ${(err as Error).message}`, { scenario: name, file }, { cause: err });
  }
  return parseScenario(value, name);
}

/** The well-behaved charger for a transport: DC, ISO 15118-2 and DIN, PnC offered only over TLS. */
export function defaultScenario(transport: 'tls12' | 'tls13' | 'tcp' = 'tls12'): Scenario {
  return parseScenario({ description: 'well-behaved DC charger (no scenario given)', transport }, 'default');
}

/** Payment options the charger offers on this connection. */
export function paymentOptionsOf(s: ScenarioSpec, tls: boolean): ('Contract' | 'ExternalPayment')[] {
  return s.charger.paymentOptions ?? (tls ? ['Contract', 'ExternalPayment'] : ['ExternalPayment']);
}

/** Whether the request of this kind is still answered Ongoing `elapsedMs` after the first one. */
export function stillOngoing(duration: number | 'forever', elapsedMs: number): boolean {
  return duration === 'forever' || elapsedMs < duration;
}
