/**
 * The ISO 15118-2 module's session context (opaque to the engine), its options, and the small helpers every step
 * file shares: effective timers, bounded repetition series, the response header, EV status mapping.
 */
import { toHex } from '../../../core/bytes.ts';
import { EvccError } from '../../../core/errors.ts';
import type { EvseOutput } from '../../../hal/ev/types.ts';
import type { Iso2 } from '../../exi/index.ts';
import { repeat, stopWith, type EffectRequest, type StepEnv, type Transition } from '../exchange.ts';
import type { TimerSpec } from '../timers.ts';
import { iso2Stop, type ISO2_ERRORS } from './errors.ts';
import { parseIso2Settings, type EnergyTransferMode, type Iso2Settings, type Iso2SettingsInput } from './settings.ts';
export { asArray, closeContactors, closeS2, openContactors, openS2, recordEnergy, reportEvseOutput } from '../vehicle-side.ts';

/** The contract the vehicle presents (PaymentDetailsReq): structurally the vehicle layer's ContractCredentials. */
export interface Iso2Contract {
  emaid: string;
  certificateChain: { Certificate: string; SubCertificates?: { Certificate: string[] } };
  /** Contract certificate expiry: a CertificateUpdate is asked for within the renewal window. */
  notAfter?: Date;
}

export interface Iso2ModuleOptions {
  /** EVCCID: the EV's MAC address (6 bytes), as bytes or hex (`02e7cc000001` or `02:e7:cc:00:00:01`). */
  evccId: Uint8Array | string;
  /** The V2G channel the session runs on. The contract is never used on plain TCP. */
  channel: 'tls' | 'tcp';
  /** Plug & Charge allowed by the security policy (contract key armed in the TPM). */
  pnc: boolean;
  /** Config section `session.iso2` (raw or already parsed). */
  settings?: Iso2SettingsInput;
  /** The installed contract (PnC). Absent or expired: CertificateInstallation when the SECC offers it. */
  contract?: Iso2Contract;
  /** CertificateInstallationReq: the OEM provisioning certificate (DER, bytes or hex). */
  provisioningCertificate?: Uint8Array | string;
  /** ListOfRootCertificateIDs of CertificateInstallation/UpdateReq: X509IssuerSerial of the installed V2G roots. */
  rootCertificateIds?: readonly { X509IssuerName: string; X509SerialNumber: number | bigint }[];
  /** Calendar time at session start (the contract expiry check; the engine's `now` is a monotonic clock). */
  wallClock?: Date;
  /** Resume a paused session: its SessionID goes into SessionSetupReq's header (expect OK_OldSessionJoined). */
  resume?: { sessionId: string };
  /**
   * Tells the vehicle what the charger delivers (EVSEPresentVoltage/Current of CurrentDemandRes). Default: the EV
   * port's own `reportEvseOutput` when the engine's EvView is the EvPort (as runV2gSession passes it).
   */
  reportEvseOutput?: (output: EvseOutput) => void;
}

export interface EvseDcLimits {
  maxVoltageV: number;
  maxCurrentA: number;
  maxPowerW: number;
  minVoltageV: number;
  minCurrentA: number;
  peakCurrentRippleA: number;
  currentRegulationToleranceA?: number;
  energyToBeDeliveredWh?: number;
}

export interface EvseAcLimits {
  nominalVoltageV: number;
  maxCurrentA: number;
}

export type CertificateOperation = 'installation' | 'update';
export type PaymentOption = 'Contract' | 'ExternalPayment';
export type LoopStep = 'currentDemand' | 'chargingStatus';

export interface Iso2Ctx {
  readonly settings: Iso2Settings;
  readonly options: Readonly<Omit<Iso2ModuleOptions, 'settings' | 'evccId'>>;
  /** EVCCID, lowercase hex. */
  readonly evccId: string;
  /** SessionID of SessionSetupReq: all-zero for a new session, the paused one's to resume. */
  readonly requestedSessionId: string;
  /** The SECC's SessionID (SessionSetupRes header); every later response must carry it. */
  sessionId?: string;
  evseId?: string;
  /** OK_OldSessionJoined: the paused session continues. */
  resumed: boolean;
  offeredPayments: PaymentOption[];
  payment?: PaymentOption;
  mode?: EnergyTransferMode;
  chargeServiceId?: number;
  certService?: { serviceId: number; parameterSetId?: number };
  certOperation?: CertificateOperation;
  /** ContractSignatureCertChain of the CertificateInstallation/UpdateRes whose installation ran. */
  installedChain?: Iso2.CertificateChainType;
  /** The contract PaymentDetailsReq presented. */
  contract?: { emaid: string; chain: Iso2.CertificateChainType };
  genChallenge?: string;
  tuple?: Iso2.SAScheduleTupleType;
  evseDc?: EvseDcLimits;
  evseAc?: EvseAcLimits;
  present?: { voltageV: number; currentA?: number };
  /** The current repetition series (Ongoing, CableCheck, PreCharge, WeldingDetection) and when its first request went. */
  series?: { step: string; startedAt: number };
  preChargeTargetV?: number;
  lastTarget?: { voltageV: number; currentA: number };
  s2Closed: boolean;
  contactorsClosed: boolean;
  /** A PowerDeliveryReq(Start) went out: from now on the stop path starts with PowerDelivery(Stop). */
  energyArmed: boolean;
  renegotiating: boolean;
  renegotiations: number;
  /** The EV asked for a pause: SessionStop(Pause). */
  pausing: boolean;
  /** What SessionStopReq asked for. */
  stopKind?: 'Terminate' | 'Pause';
  loopStep?: LoopStep;
  /** MeterInfo to acknowledge in MeteringReceiptReq. */
  pendingReceipt?: Iso2.MeterInfoType;
  receipts: number;
  receiptsSkipped: number;
  socStart?: number;
  socEnd?: number;
  energyStartWh?: number;
  energyEndWh?: number;
  meterStartWh?: number;
  meterLastWh?: number;
  /** How the energy transfer ended (EV full, EV stop, pause), for the report. */
  endedBy?: string;
  weldingDetection?: 'safe' | 'voltage-stays-high' | 'unanswered';
}

export const NEW_SESSION_ID = '0000000000000000';

export function createIso2Ctx(o: Iso2ModuleOptions): Iso2Ctx {
  const { settings, evccId, ...options } = o;
  const resumeId = o.resume?.sessionId?.toLowerCase();
  if (resumeId !== undefined && !/^[0-9a-f]{2,16}$/.test(resumeId)) {
    throw new EvccError('CONFIG_INVALID', `resume SessionID ${o.resume?.sessionId} is not 1–8 bytes of hex`);
  }
  return {
    settings: parseIso2Settings(settings ?? {}),
    options,
    evccId: normalizeEvccId(evccId),
    requestedSessionId: resumeId ?? NEW_SESSION_ID,
    resumed: false,
    offeredPayments: [],
    s2Closed: false,
    contactorsClosed: false,
    energyArmed: false,
    renegotiating: false,
    renegotiations: 0,
    pausing: false,
    receipts: 0,
    receiptsSkipped: 0,
  };
}

function normalizeEvccId(id: Uint8Array | string): string {
  const hex = typeof id === 'string' ? id.replace(/[:-]/g, '').toLowerCase() : toHex(id);
  if (!/^[0-9a-f]{12}$/.test(hex)) throw new EvccError('CONFIG_INVALID', `EVCCID must be the EV's 6-byte MAC address, got ${typeof id === 'string' ? id : `${id.length} bytes`}`);
  return hex;
}

export const isDc = (ctx: Iso2Ctx): boolean => ctx.mode?.startsWith('DC_') ?? false;
export const isPnc = (ctx: Iso2Ctx): boolean => ctx.payment === 'Contract';

// ---- timers --------------------------------------------------------------------------------------------------------

/** The registry timer with the `session.iso2` override applied (the engine's TimerTable may still override it). */
export function timer(ctx: Iso2Ctx, spec: TimerSpec): TimerSpec {
  const key = spec.setting as keyof Iso2Settings['timeouts'] & keyof Iso2Settings['pacing'] | undefined;
  const o = key ? (ctx.settings.timeouts[key] ?? ctx.settings.pacing[key]) : undefined;
  return o === undefined ? spec : { ...spec, ms: o };
}

/** Effective milliseconds of a timer for this session. */
export function msOf(ctx: Iso2Ctx, env: StepEnv, spec: TimerSpec): number {
  return env.timers.ms(timer(ctx, spec));
}

// ---- bounded repetition --------------------------------------------------------------------------------------------

/** Marks the request being built as part of a repetition series of `step` (a new series when the step changed). */
export function beginSeries(ctx: Iso2Ctx, step: string, now: number): void {
  if (ctx.series?.step !== step) ctx.series = { step, startedAt: now };
}

export function seriesElapsed(ctx: Iso2Ctx, now: number): number {
  return ctx.series ? now - ctx.series.startedAt : 0;
}

/**
 * Repeat the request after `pacing`, as long as `total` (measured from the series' first request) allows: the last
 * request goes out at the bound at the latest; a response at or after the bound whose condition is still unmet stops
 * in order with `code`.
 */
export function repeatWithin(ctx: Iso2Ctx, env: StepEnv, o: { total: TimerSpec; pacing: TimerSpec; code: keyof typeof ISO2_ERRORS; what: string; details?: Record<string, unknown> }): Transition {
  const total = msOf(ctx, env, o.total);
  const elapsed = seriesElapsed(ctx, env.now);
  if (elapsed >= total) {
    return stopWith(iso2Stop(o.code, `${o.what} after ${elapsed} ms (${timer(ctx, o.total).name} ${total} ms)`, { elapsedMs: elapsed, timer: o.total.name, limitMs: total, ...o.details }));
  }
  return repeat(Math.max(1, Math.min(msOf(ctx, env, o.pacing), total - elapsed)), o.what);
}

// ---- the response header -------------------------------------------------------------------------------------------

/** The SECC's SessionID and the CertificateInstallation/UpdateRes signature live in the header (env.header). */
export function responseHeader(env: StepEnv): Record<string, unknown> | undefined {
  return env.header;
}

// ---- small shared helpers ------------------------------------------------------------------------------------------

export const isOngoing = (p: unknown): boolean => p === 'Ongoing' || p === 'Ongoing_WaitingForCustomerInteraction';

export function dcEvStatus(env: StepEnv): Iso2.DC_EVStatusType {
  const s = env.ev.status();
  return { EVReady: s.ready ? 1 : 0, EVErrorCode: s.errorCode, EVRESSSOC: socByte(s.socPercent) };
}

export function socByte(soc: number): number {
  return Number.isFinite(soc) ? Math.min(100, Math.max(0, Math.round(soc))) : 0;
}

