/**
 * Test support (no sockets): a scripted DIN SECC built from our own EXI encoder, a small fake vehicle, and a
 * virtual-time loop that drives the session engine with this module the way the driver would — responses after a
 * round-trip time, effects done after their own time, timers at the engine's deadlines.
 */
import type { EvErrorCode, EvLimits, EvseOutput, EvStatus } from '../../../hal/ev/types.ts';
import { decodeV2gMessage, encodeAny, type EncodeOptions } from '../../exi/index.ts';
import { answerSupportedAppProtocolReq } from '../app-handshake.ts';
import { SessionEngine, type SessionEvent, type SessionInput, type SessionOutput, type SessionResult } from '../engine.ts';
import type { EffectRequest, ProtocolModule } from '../exchange.ts';
import type { TimerTable } from '../timers.ts';
import type { DinCtx, DinModuleOptions } from './context.ts';
import { createDinModule, DIN_NAMESPACE } from './module.ts';

export const DIN_OFFER = [{ namespace: DIN_NAMESPACE, major: 2, minor: 0, schemaId: 1, priority: 1 }] as const;
export const SECC_SESSION_ID = '0a0b0c0d0e0f1011';
export const EVCC_ID = '02e7cc000001';

type Body = Record<string, unknown>;

// ---- the vehicle ---------------------------------------------------------------------------------------------------

export const EV_LIMITS: EvLimits = {
  maxVoltageV: 450, maxCurrentA: 200, minCurrentA: 0, maxPowerW: 80_000, energyCapacityWh: 60_000, fullSocPercent: 100, bulkSocPercent: 80,
};

export class FakeEv {
  limits: EvLimits;
  base: EvStatus = {
    socPercent: 20, batteryVoltageV: 350, targetVoltageV: 400, targetCurrentA: 120, ready: true, errorCode: 'NO_ERROR' as EvErrorCode,
    chargingComplete: false, bulkChargingComplete: false, energyRequestWh: 36_000, stopRequested: false, pauseRequested: false,
    contactorsClosed: false, energyDeliveredWh: 0,
  };
  /** Changes the status as the session goes on (e.g. full after n CurrentDemandReqs). */
  dynamic: () => Partial<EvStatus> = () => ({});
  readonly outputs: EvseOutput[] = [];
  constructor(limits: Partial<EvLimits> = {}) {
    this.limits = { ...EV_LIMITS, ...limits };
  }
  status(): EvStatus {
    return { ...this.base, ...this.dynamic() };
  }
  reportEvseOutput(o: EvseOutput): void {
    this.outputs.push(o);
  }
}

// ---- the charger ---------------------------------------------------------------------------------------------------

export interface SeccRequest { at: number; name: string; header: Record<string, unknown>; body: Body }

/** What the SECC does with one request: a body to answer (after rttMs), silence, or a TCP reset. */
export type SeccAction =
  | { body: Body; rttMs?: number; encode?: EncodeOptions }
  | { silent: true }
  | { close: true; afterMs?: number };

export interface SeccOptions {
  rttMs: number;
  sessionId: string;
  evseId: string;
  paymentOptions: string[];
  /** ContractAuthenticationRes / ChargeParameterDiscoveryRes / CableCheckRes answer Ongoing this many times first. */
  authOngoing: number;
  cpdOngoing: number;
  cableCheckOngoing: number;
  isolation: 'Valid' | 'Invalid' | 'Warning' | 'Fault' | undefined;
  evse: { maxV: number; maxA: number; maxW: number; minV: number; minA: number; rippleA: number };
  /** PreCharge: the output moves this many volts towards the target per PreChargeReq. */
  preChargeStepV: number;
  /** WeldingDetection: present voltage per request (the last one repeats). */
  weldingVoltages: number[];
  /** Strip every Unit from the SECC's PhysicalValues (DIN's Unit is optional). */
  unitless: boolean;
  /** Per-message scripts; undefined falls back to the default answer. */
  on: Partial<Record<string, (req: SeccRequest, n: number, secc: ScriptedDinSecc) => SeccAction | undefined>>;
}

const pvs = (value: number, unit: string) => {
  for (let m = -3; m <= 3; m++) {
    const v = Math.round(value / 10 ** m);
    if (Math.abs(v) <= 32_767) return { Multiplier: m, Unit: unit, Value: v };
  }
  throw new Error(`test SECC: ${value} ${unit} does not fit`);
};
const num = (p: unknown): number => { const x = p as { Value: number; Multiplier: number }; return x.Value * 10 ** x.Multiplier; };

export const evseStatus = (o: Partial<{ code: string; notification: string; isolation: string | undefined }> = {}) => ({
  ...(o.isolation !== undefined ? { EVSEIsolationStatus: o.isolation } : {}),
  EVSEStatusCode: o.code ?? 'EVSE_Ready', NotificationMaxDelay: 0, EVSENotification: o.notification ?? 'None',
});

function stripUnits(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripUnits);
  if (typeof v !== 'object' || v === null) return v;
  const o = { ...(v as Record<string, unknown>) };
  if ('Multiplier' in o && 'Value' in o) delete o.Unit;
  for (const k of Object.keys(o)) o[k] = stripUnits(o[k]);
  return o;
}

export class ScriptedDinSecc {
  readonly o: SeccOptions;
  readonly received: SeccRequest[] = [];
  presentV = 0;
  constructor(o: Partial<SeccOptions> = {}) {
    this.o = {
      rttMs: 5, sessionId: SECC_SESSION_ID, evseId: '0123456789', paymentOptions: ['ExternalPayment'],
      authOngoing: 0, cpdOngoing: 0, cableCheckOngoing: 2, isolation: 'Valid',
      evse: { maxV: 500, maxA: 150, maxW: 60_000, minV: 150, minA: 0, rippleA: 5 },
      preChargeStepV: 100, weldingVoltages: [300, 30], unitless: false, on: {}, ...o,
    };
  }

  count(name: string): number {
    return this.received.filter((r) => r.name === name).length;
  }
  requests(name: string): SeccRequest[] {
    return this.received.filter((r) => r.name === name);
  }

  handle(bytes: Uint8Array, at: number): { bytes: Uint8Array; rttMs: number } | { silent: true } | { close: true; afterMs: number } {
    const msg = decodeV2gMessage('din', bytes) as unknown as { Header: Record<string, unknown>; Body: Record<string, Body> };
    const name = Object.keys(msg.Body)[0]!;
    const req: SeccRequest = { at, name, header: msg.Header, body: msg.Body[name]! };
    this.received.push(req);
    const n = this.count(name);
    const action = this.o.on[name]?.(req, n, this) ?? { body: this.defaultAnswer(name, req.body, n) };
    if ('silent' in action) return action;
    if ('close' in action) return { close: true, afterMs: action.afterMs ?? 0 };
    const body = this.o.unitless ? (stripUnits(action.body) as Body) : action.body;
    return { bytes: encodeAny('din', { V2G_Message: { Header: { SessionID: this.o.sessionId }, Body: body } }, action.encode), rttMs: action.rttMs ?? this.o.rttMs };
  }

  defaultAnswer(name: string, req: Body, n: number): Body {
    const e = this.o.evse;
    const st = (o: Parameters<typeof evseStatus>[0] = {}) => evseStatus({ isolation: this.o.isolation, ...o });
    switch (name) {
      case 'SessionSetupReq':
        return { SessionSetupRes: { ResponseCode: 'OK_NewSessionEstablished', EVSEID: this.o.evseId } };
      case 'ServiceDiscoveryReq':
        return { ServiceDiscoveryRes: { ResponseCode: 'OK', PaymentOptions: { PaymentOption: this.o.paymentOptions }, ChargeService: { ServiceTag: { ServiceID: 1, ServiceCategory: 'EVCharging' }, FreeService: 0, EnergyTransferType: 'DC_extended' } } };
      case 'ServicePaymentSelectionReq':
        return { ServicePaymentSelectionRes: { ResponseCode: 'OK' } };
      case 'ContractAuthenticationReq':
        return { ContractAuthenticationRes: { ResponseCode: 'OK', EVSEProcessing: n <= this.o.authOngoing ? 'Ongoing' : 'Finished' } };
      case 'ChargeParameterDiscoveryReq':
        // The schema makes EVSEChargeParameter mandatory, Ongoing or not; the isolation is not measured yet.
        return {
          ChargeParameterDiscoveryRes: {
            ResponseCode: 'OK', EVSEProcessing: n <= this.o.cpdOngoing ? 'Ongoing' : 'Finished',
            SAScheduleList: { SAScheduleTuple: [{ SAScheduleTupleID: 1, PMaxSchedule: { PMaxScheduleID: 1, PMaxScheduleEntry: [{ RelativeTimeInterval: { start: 0, duration: 86_400 }, PMax: 32_767 }] } }] },
            DC_EVSEChargeParameter: {
              DC_EVSEStatus: evseStatus({ code: n <= this.o.cpdOngoing ? 'EVSE_NotReady' : 'EVSE_Ready' }),
              EVSEMaximumCurrentLimit: pvs(e.maxA, 'A'), EVSEMaximumPowerLimit: pvs(e.maxW, 'W'), EVSEMaximumVoltageLimit: pvs(e.maxV, 'V'),
              EVSEMinimumCurrentLimit: pvs(e.minA, 'A'), EVSEMinimumVoltageLimit: pvs(e.minV, 'V'), EVSEPeakCurrentRipple: pvs(e.rippleA, 'A'),
            },
          },
        };
      case 'CableCheckReq': {
        const ongoing = n <= this.o.cableCheckOngoing;
        return { CableCheckRes: { ResponseCode: 'OK', DC_EVSEStatus: st({ code: ongoing ? 'EVSE_IsolationMonitoringActive' : 'EVSE_Ready', isolation: ongoing ? 'Invalid' : this.o.isolation }), EVSEProcessing: ongoing ? 'Ongoing' : 'Finished' } };
      }
      case 'PreChargeReq': {
        const target = num(req.EVTargetVoltage);
        const d = target - this.presentV;
        this.presentV += Math.sign(d) * Math.min(Math.abs(d), this.o.preChargeStepV);
        return { PreChargeRes: { ResponseCode: 'OK', DC_EVSEStatus: st(), EVSEPresentVoltage: pvs(this.presentV, 'V') } };
      }
      case 'PowerDeliveryReq':
        return { PowerDeliveryRes: { ResponseCode: 'OK', DC_EVSEStatus: st() } };
      case 'CurrentDemandReq': {
        this.presentV = Math.min(num(req.EVTargetVoltage), e.maxV);
        const a = Math.min(num(req.EVTargetCurrent), e.maxA);
        return {
          CurrentDemandRes: {
            ResponseCode: 'OK', DC_EVSEStatus: st(), EVSEPresentVoltage: pvs(this.presentV, 'V'), EVSEPresentCurrent: pvs(a, 'A'),
            EVSECurrentLimitAchieved: 0, EVSEVoltageLimitAchieved: 0, EVSEPowerLimitAchieved: 0,
            EVSEMaximumVoltageLimit: pvs(e.maxV, 'V'), EVSEMaximumCurrentLimit: pvs(e.maxA, 'A'), EVSEMaximumPowerLimit: pvs(e.maxW, 'W'),
          },
        };
      }
      case 'WeldingDetectionReq': {
        const v = this.o.weldingVoltages[Math.min(n, this.o.weldingVoltages.length) - 1]!;
        this.presentV = v;
        return { WeldingDetectionRes: { ResponseCode: 'OK', DC_EVSEStatus: st(), EVSEPresentVoltage: pvs(v, 'V') } };
      }
      case 'SessionStopReq':
        return { SessionStopRes: { ResponseCode: 'OK' } };
      default:
        throw new Error(`test SECC: no answer for ${name}`);
    }
  }
}

// ---- the virtual-time loop -----------------------------------------------------------------------------------------

export interface DinRun {
  result: SessionResult;
  ctx: DinCtx | undefined;
  events: { at: number; event: SessionEvent }[];
  effects: { at: number; request: EffectRequest }[];
  /** S2 and contactor state as the effects left them. */
  s2Closed: boolean;
  contactorsClosed: boolean;
}

export interface RunOptions {
  secc: ScriptedDinSecc;
  ev?: FakeEv;
  module?: Partial<DinModuleOptions>;
  timers?: TimerTable;
  /** Each effect (S2, contactors) completes after this long. */
  effectMs?: number;
  /** Feed these inputs at these times (a stop request, …). */
  inject?: { at: number; input: SessionInput }[];
  maxInputs?: number;
}

export function runDin(o: RunOptions): DinRun {
  const ev = o.ev ?? new FakeEv();
  let mod: ProtocolModule<DinCtx> | undefined;
  const engine = new SessionEngine({
    ev, offer: DIN_OFFER, ...(o.timers ? { timers: o.timers } : {}),
    modules: { [DIN_NAMESPACE]: () => (mod = createDinModule({ evccId: EVCC_ID, ...o.module })) as unknown as ProtocolModule<unknown> },
  });
  const effectMs = o.effectMs ?? 10;
  const queue: { at: number; seq: number; input: SessionInput }[] = [];
  let seq = 0;
  const push = (at: number, input: SessionInput) => queue.push({ at, seq: seq++, input });
  for (const i of o.inject ?? []) push(i.at, i.input);
  const events: DinRun['events'] = [];
  const effects: DinRun['effects'] = [];
  let s2Closed = false;
  let now = 0;
  let deadline: number | undefined;
  let result: SessionResult | undefined;

  const take = (out: SessionOutput) => {
    for (const e of out.events) events.push({ at: now, event: e });
    if (out.send) {
      if (!mod) {
        const answer = answerSupportedAppProtocolReq(out.send.bytes, [{ namespace: DIN_NAMESPACE, major: 2, minor: 0 }]);
        push(now + o.secc.o.rttMs, { kind: 'payload', now: 0, payloadType: 0x8001, bytes: answer });
      } else {
        const a = o.secc.handle(out.send.bytes, now);
        if ('bytes' in a) push(now + a.rttMs, { kind: 'payload', now: 0, payloadType: 0x8001, bytes: a.bytes });
        else if ('close' in a) push(now + a.afterMs, { kind: 'channelClosed', now: 0, error: new Error('ECONNRESET') });
      }
    }
    for (const e of out.effects) {
      effects.push({ at: now, request: e.request });
      if (e.request.kind === 'contactors') ev.base.contactorsClosed = e.request.closed;
      if (e.request.kind === 'chargeRequest') s2Closed = e.request.closed;
      push(now + effectMs, { kind: 'effectDone', now: 0, id: e.id });
    }
    deadline = out.deadline;
    if (out.result) result = out.result;
  };

  take(engine.step({ kind: 'start', now }));
  for (let i = 0; !result && i < (o.maxInputs ?? 50_000); i++) {
    queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const q = queue[0];
    if (q && (deadline === undefined || q.at <= deadline)) {
      queue.shift();
      now = q.at;
      take(engine.step({ ...q.input, now } as SessionInput));
    } else if (deadline !== undefined) {
      now = deadline;
      take(engine.step({ kind: 'timer', now }));
    } else {
      throw new Error('engine stalled: nothing queued and no deadline');
    }
  }
  if (!result) throw new Error('session did not end within the input budget');
  return { result, ctx: mod?.ctx, events, effects, s2Closed, contactorsClosed: ev.base.contactorsClosed };
}

// ---- assertion helpers ---------------------------------------------------------------------------------------------

export const sentAt = (run: DinRun, name: string): number[] =>
  run.events.filter((e) => e.event.type === 'sent' && e.event.name === name).map((e) => e.at);
export const notes = (run: DinRun, level?: 'info' | 'warn' | 'error'): string[] =>
  run.events.filter((e) => e.event.type === 'note' && (!level || e.event.level === level)).map((e) => (e.event as { message: string }).message);
export const gaps = (ts: number[]): number[] => ts.slice(1).map((t, i) => t - ts[i]!);
export { num as siOf };

/**
 * Drops `key` and every later field of `element` (schema order = insertion order here): with `undeclaredEnd` our
 * encoder then ends the element early, as a non-strict field stack may.
 */
export function truncateFrom(element: Record<string, unknown>, key: string): void {
  const keys = Object.keys(element);
  for (const k of keys.slice(keys.indexOf(key))) delete element[k];
}
