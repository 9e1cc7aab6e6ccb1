/**
 * The DIN SPEC 70121 module's session context (opaque to the engine), its options, and the helpers every step file
 * shares: effective timers, bounded repetition series, DC_EVStatus, vehicle-side effects, the orderly stop.
 */
import { toHex } from '../../../core/bytes.ts';
import { EvccError } from '../../../core/errors.ts';
import type { EvseOutput } from '../../../hal/ev/types.ts';
import type { Din } from '../../exi/index.ts';
import { next, repeat, stopWith, type EffectRequest, type StepEnv, type StopReason, type Transition } from '../exchange.ts';
import type { TimerSpec } from '../timers.ts';
import { dinStop, type DinStopCode } from './errors.ts';
import { parseDinSettings, type DinSettings, type DinSettingsInput } from './settings.ts';
import { DIN_TIMERS } from './timers.ts';
export { asArray, closeContactors, closeS2, openContactors, openS2, recordEnergy, reportEvseOutput } from '../vehicle-side.ts';

export interface DinModuleOptions {
  /** EVCCID: the EV's MAC address (6 bytes), as bytes or hex (`02e7cc000001` or `02:e7:cc:00:00:01`). */
  evccId: Uint8Array | string;
  /** Config section `session.din` (raw or already parsed). */
  settings?: DinSettingsInput;
  /**
   * When the vehicle was plugged in, in the engine's time base: V2G_EVCC_ReadyToCharge_Timeout runs from there.
   * Absent: from the first SessionSetupReq (SLAC, SDP and the TCP connect are then not counted).
   */
  plugInAt?: number;
  /**
   * Tells the vehicle what the charger delivers (EVSEPresentVoltage/Current). Default: the EV port's own
   * `reportEvseOutput` when the engine's EvView is the EvPort (as runV2gSession passes it).
   */
  reportEvseOutput?: (output: EvseOutput) => void;
}

/** The charger's DC limits from ChargeParameterDiscoveryRes, updated by CurrentDemandRes (SI units). */
export interface EvseDcLimits {
  maxVoltageV: number;
  maxCurrentA: number;
  /** Optional in DIN's DC_EVSEChargeParameter. */
  maxPowerW?: number;
  minVoltageV: number;
  minCurrentA: number;
  peakCurrentRippleA: number;
  currentRegulationToleranceA?: number;
  energyToBeDeliveredWh?: number;
}

export interface DinCtx {
  readonly settings: DinSettings;
  readonly options: Readonly<Omit<DinModuleOptions, 'settings' | 'evccId'>>;
  /** EVCCID, lowercase hex. */
  readonly evccId: string;
  /** The first SessionSetupReq (V2G_EVCC_ReadyToCharge_Timeout's start when `plugInAt` is not given). */
  setupAt?: number;
  /** The SECC's SessionID (SessionSetupRes header); every later response must carry it. */
  sessionId?: string;
  evseId?: string;
  offeredPayments: string[];
  payment?: 'ExternalPayment';
  chargeService?: { serviceId: number; energyTransferType: string; free: boolean };
  /** EVRequestedEnergyTransferType, once ChargeParameterDiscoveryReq went out. */
  requestedTransferType?: string;
  evse?: EvseDcLimits;
  isolation?: string;
  /** The current repetition series (Ongoing, CableCheck, PreCharge, WeldingDetection) and its first request. */
  series?: { step: string; startedAt: number; requests: number };
  present?: { voltageV: number; currentA?: number };
  lastTarget?: { voltageV: number; currentA: number };
  s2Closed: boolean;
  contactorsClosed: boolean;
  /** PowerDeliveryReq(ReadyToChargeState=true) went out: from now on a stop starts with PowerDelivery(false). */
  powerDeliveryRequested: boolean;
  /**
   * Why the session stops, decided by this module while PowerDelivery(false) and WeldingDetection run; handed to
   * the engine (stopWith) for the SessionStop leg only. See stopInOrder.
   */
  pendingStop?: StopReason;
  currentDemands: number;
  socStart?: number;
  socEnd?: number;
  energyStartWh?: number;
  energyEndWh?: number;
  weldingDetection?: 'safe' | 'voltage-stays-high' | 'unanswered';
}

export function createDinCtx(o: DinModuleOptions): DinCtx {
  const { settings, evccId, ...options } = o;
  return {
    settings: parseDinSettings(settings ?? {}),
    options,
    evccId: normalizeEvccId(evccId),
    offeredPayments: [],
    s2Closed: false,
    contactorsClosed: false,
    powerDeliveryRequested: false,
    currentDemands: 0,
  };
}

function normalizeEvccId(id: Uint8Array | string): string {
  const hex = typeof id === 'string' ? id.replace(/[:-]/g, '').toLowerCase() : toHex(id);
  if (!/^[0-9a-f]{12}$/.test(hex)) throw new EvccError('CONFIG_INVALID', `EVCCID must be the EV's 6-byte MAC address, got ${typeof id === 'string' ? id : `${id.length} bytes`}`);
  return hex;
}

// ---- timers --------------------------------------------------------------------------------------------------------

/**
 * The registry timer with the `session.din` override applied. The result carries no `setting`, so the engine-wide
 * TimerTable (`session.timeouts`, ISO-2's keys) leaves DIN's values alone.
 */
export function timer(ctx: DinCtx, spec: TimerSpec): TimerSpec {
  const key = spec.setting;
  const o = key === undefined ? undefined : (ctx.settings.timeouts as Record<string, number | undefined>)[key] ?? (ctx.settings.pacing as Record<string, number | undefined>)[key];
  return { name: spec.name, ms: o ?? spec.ms, ...(spec.source ? { source: spec.source } : {}) };
}

export function msOf(ctx: DinCtx, env: StepEnv, spec: TimerSpec): number {
  return env.timers.ms(timer(ctx, spec));
}

// ---- bounded repetition --------------------------------------------------------------------------------------------

/** Marks the request being built as part of a repetition series of `step` (a new series when the step changed). */
export function beginSeries(ctx: DinCtx, step: string, now: number): void {
  if (ctx.series?.step !== step) ctx.series = { step, startedAt: now, requests: 0 };
  ctx.series.requests++;
}

export function seriesElapsed(ctx: DinCtx, now: number): number {
  return ctx.series ? now - ctx.series.startedAt : 0;
}

/**
 * Repeat the request after the pacing interval while `total` (from the series' first request) allows: the last
 * request goes out at the bound at the latest; a response at or after the bound whose condition is still unmet
 * stops in order with `code`.
 */
export function repeatWithin(ctx: DinCtx, env: StepEnv, o: { total: TimerSpec; pacing: TimerSpec; code: DinStopCode; what: string; details?: Record<string, unknown> }): Transition {
  const total = msOf(ctx, env, o.total);
  const elapsed = seriesElapsed(ctx, env.now);
  if (elapsed >= total) {
    return stopInOrder(ctx, env, dinStop(o.code, `${o.what} after ${elapsed} ms and ${ctx.series?.requests ?? 0} requests (${o.total.name} ${total} ms)`,
      { elapsedMs: elapsed, requests: ctx.series?.requests ?? 0, timer: o.total.name, limitMs: total, ...o.details }));
  }
  return repeat(Math.max(1, Math.min(msOf(ctx, env, o.pacing), total - elapsed)), o.what);
}

/** V2G_EVCC_ReadyToCharge_Timeout: plug-in (or first SessionSetupReq) to PowerDeliveryReq(ReadyToChargeState=true). */
export function readyToChargeExpired(ctx: DinCtx, env: StepEnv): Transition | undefined {
  const start = ctx.options.plugInAt ?? ctx.setupAt;
  if (start === undefined || ctx.powerDeliveryRequested) return undefined;
  const limit = msOf(ctx, env, DIN_TIMERS.readyToCharge);
  const elapsed = env.now - start;
  if (elapsed < limit) return undefined;
  return stopInOrder(ctx, env, dinStop('DIN_READY_TO_CHARGE_TIMEOUT', `not ready to charge ${elapsed} ms after ${ctx.options.plugInAt !== undefined ? 'plug-in' : 'SessionSetupReq'} (${DIN_TIMERS.readyToCharge.name} ${limit} ms)`,
    { elapsedMs: elapsed, limitMs: limit, timer: DIN_TIMERS.readyToCharge.name }));
}

// ---- the orderly stop ----------------------------------------------------------------------------------------------

/**
 * Stop in order for `reason`. Before PowerDeliveryReq(true): at once through the engine (its stop path is
 * SessionStop). After it: PowerDelivery(false) and WeldingDetection run as this module's own steps and the reason is
 * handed to the engine only for SessionStop — while the engine is stopping it ends the session on any timeout or
 * FAILED code, and a charger that does not answer WeldingDetection must still get its SessionStopReq
 * (PROTOCOLS.md §7). The first reason is the one reported.
 */
export function stopInOrder(ctx: DinCtx, env: StepEnv, reason: StopReason): Transition {
  if (ctx.powerDeliveryRequested && !env.stopping) {
    // The engine logs "stopping in order" when it gets the reason (at SessionStop): say now why energy ends.
    if (!ctx.pendingStop) env.note(reason.failure ? 'warn' : 'info', `ending energy transfer: ${reason.code}: ${reason.message}`, { code: reason.code });
    ctx.pendingStop ??= reason;
    return next('powerDeliveryStop', { why: reason.code });
  }
  return stopWith(reason);
}

/** The end of WeldingDetection, whatever its outcome: SessionStop, with the pending reason handed to the engine. */
export function toSessionStop(ctx: DinCtx, env: StepEnv, why: string): Transition {
  if (!env.stopping && ctx.pendingStop) return stopWith(ctx.pendingStop);
  return next('sessionStop', { why });
}

// ---- the vehicle ---------------------------------------------------------------------------------------------------

export function socByte(soc: number): number {
  return Number.isFinite(soc) ? Math.min(100, Math.max(0, Math.round(soc))) : 0;
}

export function dcEvStatus(ctx: DinCtx, env: StepEnv, o: { ready?: boolean } = {}): Din.DC_EVStatusType {
  const s = env.ev.status();
  return {
    EVReady: (o.ready ?? s.ready) ? 1 : 0,
    ...(ctx.settings.sendConditioningFlags ? { EVCabinConditioning: 0 as const, EVRESSConditioning: 0 as const } : {}),
    EVErrorCode: s.errorCode,
    EVRESSSOC: socByte(s.socPercent),
  };
}

