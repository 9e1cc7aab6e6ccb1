/**
 * The shared exchange core of every V2G message set (ISO 15118-2, DIN SPEC 70121, later -20): what a protocol module
 * declares, and the vocabulary the session engine (engine.ts) uses to run it.
 *
 * A protocol module is a table of steps. A step is one request/response exchange, named after the response the EV
 * awaits (`WaitForSessionSetupRes`): it builds the request body from the session context and the EV port, declares
 * the response timeout (a TimerSpec from the protocol's registry), checks the decoded response's mandatory fields,
 * and decides the transition. The engine does everything that is the same for every exchange: encoding, the
 * SessionID and response-code checks, the per-message timeout, pacing, effects (TPM signatures, contactors, S2),
 * the orderly stop and the log events.
 */
import type { EvccError } from '../../core/errors.ts';
import type { Subsystem } from '../../core/logger.ts';
import type { EvLimits, EvStatus } from '../../hal/ev/types.ts';
import type { TimerSpec, TimerTable } from './timers.ts';

// ---- effects: what the engine asks the outside world to do (the driver runs them and feeds the result back) -------

/**
 * Effects by kind: the request a step emits and the result the driver returns. Signing goes through the TPM key
 * service (one pre-armed policy session); contactors through the EV port; S2 through the pilot board.
 */
export interface EffectTypes {
  /**
   * xmldsig over the given body elements (each `{ <ElementName>: {...Id} }`, encoded as EXI fragments of `schema`),
   * with the named TPM-held key. Result: the `Signature` element for the V2G message header.
   */
  sign: { request: { key: 'contract' | 'provisioning'; schema: 'iso2'; elements: readonly Record<string, unknown>[] }; result: unknown };
  contactors: { request: { closed: boolean }; result: void };
  /** S2: state B ↔ C (IEC 61851-1). */
  chargeRequest: { request: { closed: boolean }; result: void };
  /**
   * ISO 15118-2 CertificateInstallationRes / CertificateUpdateRes: verify signature and chains, import the contract
   * key into the TPM, store the contract chain. Result: the new contract's eMAID and key id.
   */
  installContract: { request: { operation: 'installation' | 'update'; response: Record<string, unknown>; header: Record<string, unknown> }; result: { emaid: string; contractKeyId: string; certificateChain?: { Certificate: string; SubCertificates?: { Certificate: string[] } } } };
}
export type EffectKind = keyof EffectTypes;
export type EffectRequest = { [K in EffectKind]: { kind: K } & EffectTypes[K]['request'] }[EffectKind];
export type EffectResult<K extends EffectKind> = EffectTypes[K]['result'];

// ---- the EV side as the engine sees it ------------------------------------------------------------------------------

/** Synchronous read of the vehicle (hal/ev EvPort): limits and the latest status snapshot. */
export interface EvView {
  readonly limits: EvLimits;
  status(): EvStatus;
}

/** Everything a step may read besides its own protocol context. */
export interface StepEnv {
  readonly now: number;
  readonly ev: EvView;
  readonly timers: TimerTable;
  /** Results of the effects the previous transition or `before` asked for, by kind (latest wins). */
  readonly effectResults: Partial<{ [K in EffectKind]: EffectResult<K> }>;
  /** The header (SessionID, Notification, Signature) of the response being handled; absent outside handle(). */
  readonly header?: Record<string, unknown>;
  /** Whether the session is stopping (an orderly stop is under way), and why. */
  readonly stopping?: StopReason;
  /** Module-level log line (rendered with the protocol's subsystem). */
  note(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

// ---- steps and transitions -----------------------------------------------------------------------------------------

export interface BuiltRequest {
  /** The body element, e.g. `{ SessionSetupReq: { EVCCID: '…' } }`. */
  body: Record<string, unknown>;
  /** Ask for a header signature over these body elements (ISO-2 PnC: AuthorizationReq, MeteringReceiptReq, …). */
  sign?: { key: 'contract' | 'provisioning'; elements: readonly Record<string, unknown>[] };
  /** One-line summary for the bench log (`target 400.0 V 125.0 A`). */
  summary?: string;
}

export interface Step<Ctx> {
  /** Body element name of the request (`SessionSetupReq`) and of the awaited response (`SessionSetupRes`). */
  readonly request: string;
  readonly response: string;
  /** V2G_EVCC_Msg_Timeout for this exchange. */
  timeout(ctx: Ctx, env: StepEnv): TimerSpec;
  /**
   * Effects to complete before the request is built (e.g. close S2 before CableCheckReq). Runs when the step is
   * entered (also after a paced `next`), not on `repeat` of the same request.
   */
  before?(ctx: Ctx, env: StepEnv): EffectRequest[];
  build(ctx: Ctx, env: StepEnv): BuiltRequest;
  /**
   * Mandatory fields the state relies on (non-strict EXI lets a stream end an element early): undefined when the
   * response is usable, else the path of the first missing or invalid field (`DC_EVSEStatus.EVSEStatusCode`).
   */
  check?(res: Record<string, unknown>, ctx: Ctx): string | undefined;
  handle(res: Record<string, unknown>, ctx: Ctx, env: StepEnv): Transition;
  /** What a response timeout means here; default: the session ends (the link cannot be trusted any more). */
  onTimeout?(ctx: Ctx, env: StepEnv): Transition | undefined;
  /** One-line summary of a response for the bench log. */
  summarize?(res: Record<string, unknown>): string | undefined;
}

/** Why a session stops. `failure: false` for a normal end (EV full, driver's stop, EVSE finished). */
export interface StopReason {
  code: string;
  message: string;
  failure: boolean;
  details?: Record<string, unknown>;
}

export type Transition =
  | { kind: 'next'; step: string; afterMs?: number; effects?: EffectRequest[]; why?: string }
  | { kind: 'repeat'; afterMs: number; why?: string }
  /** Stop in order (the module's stop path) for this reason. */
  | { kind: 'stop'; reason: StopReason; effects?: EffectRequest[] }
  /** SessionStopRes received: the session is over (terminated or paused). */
  | { kind: 'end'; paused: boolean; effects?: EffectRequest[] };

export const next = (step: string, o: { afterMs?: number; effects?: EffectRequest[]; why?: string } = {}): Transition => ({ kind: 'next', step, ...o });
export const repeat = (afterMs: number, why?: string): Transition => ({ kind: 'repeat', afterMs, ...(why ? { why } : {}) });
export const stopWith = (reason: StopReason, effects?: EffectRequest[]): Transition => ({ kind: 'stop', reason, ...(effects ? { effects } : {}) });
export const failWith = (err: EvccError): Transition => ({ kind: 'stop', reason: { code: err.code, message: err.message, failure: true, details: { ...err.details } } });

/** What a module reports at the end (merged into the session report). */
export interface ProtocolSummary {
  protocol: 'iso2' | 'din';
  /** 'Contract' (PnC) or 'ExternalPayment' (EIM), once selected. */
  payment?: 'Contract' | 'ExternalPayment';
  energyTransferMode?: string;
  sessionId?: string;
  evseId?: string;
  /** Charger limits as learned in ChargeParameterDiscovery (SI units). */
  evseLimits?: Record<string, number>;
  [key: string]: unknown;
}

/**
 * A message set. `Ctx` is the module's own session state (SessionID, selected services, EVSE limits, counters…),
 * created by the module's factory and opaque to the engine.
 */
export interface ProtocolModule<Ctx> {
  readonly protocol: 'iso2' | 'din';
  /** EXI schema of the message set (`firmware/exi`). */
  readonly schema: 'iso2' | 'din';
  readonly subsystem: Extract<Subsystem, 'ISO2' | 'DIN'>;
  /** Error-code prefix (`ISO2`, `DIN`): ISO2_TIMEOUT, DIN_RESPONSE_FAILED, … */
  readonly codePrefix: 'ISO2' | 'DIN';
  readonly first: string;
  readonly steps: Readonly<Record<string, Step<Ctx>>>;
  readonly ctx: Ctx;
  /** The header of the next request (SessionID; the engine adds the Signature). */
  header(ctx: Ctx): Record<string, unknown>;
  /** The SessionID every response must carry; undefined before SessionSetupRes (any accepted then). */
  expectedSessionId(ctx: Ctx): string | undefined;
  /** Where an orderly stop goes from the given step (the step whose response just arrived or failed). */
  stopPath(fromStep: string, ctx: Ctx, reason: StopReason): string | undefined;
  summary(ctx: Ctx): ProtocolSummary;
}
