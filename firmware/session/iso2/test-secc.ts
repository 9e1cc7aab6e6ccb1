/**
 * TEST support for the ISO-2 module: a scripted SECC (default answers of a well-behaved DC/AC charger, any message
 * overridable per test), a fake vehicle, a software P-256 signer for the `sign` effect, and a runner that drives the
 * SessionEngine in virtual time (no sockets, no clock: `now` is a number the runner advances to the next response,
 * effect result or engine deadline).
 */
import { createPrivateKey, randomBytes } from 'node:crypto';
import { EvccError } from '../../../core/errors.ts';
import type { Clock } from '../../../hal/clock/types.ts';
import type { EvLimits, EvPort, EvseOutput, EvStatus } from '../../../hal/ev/types.ts';
import { toHex } from '../../../core/bytes.ts';
import { issue, type IssuedCert } from '../../pki/generate.ts';
import { decodeV2gMessage, encodeAny, type EncodeOptions } from '../../exi/index.ts';
import { sign as xmldsigSign, verify as xmldsigVerify, type SignedElement, type Signer } from '../../exi/xmldsig/index.ts';
import { answerSupportedAppProtocolReq } from '../app-handshake.ts';
import { SessionEngine, type SessionEvent, type SessionOutput, type SessionResult, type SessionInput } from '../engine.ts';
import type { EffectKind, EffectRequest, EvView, ProtocolModule } from '../exchange.ts';
import type { TimerTable } from '../timers.ts';
import { toPhysical } from '../units.ts';
import type { Iso2Contract, Iso2Ctx, Iso2ModuleOptions } from './context.ts';
import { createIso2Module } from './module.ts';
import type { EnergyTransferMode } from './settings.ts';

export const ISO2_NAMESPACE = 'urn:iso:15118:2:2013:MsgDef';
export const ISO2_OFFER = [{ namespace: ISO2_NAMESPACE, major: 2, minor: 0, schemaId: 1, priority: 1 }];
export const SECC_SESSION_ID = '0a0b0c0d0e0f1011';
export const GEN_CHALLENGE = '00112233445566778899aabbccddeeff';

type Body = Record<string, unknown>;
const pv = (v: number, unit: 'V' | 'A' | 'W' | 'Wh' | 's') => toPhysical(v, unit);
const num = (p: unknown): number => {
  const x = p as { Value: number; Multiplier: number } | undefined;
  return x ? x.Value * 10 ** x.Multiplier : NaN;
};

// ---- the vehicle ---------------------------------------------------------------------------------------------------

export const TEST_EV_LIMITS: EvLimits = {
  maxVoltageV: 450, maxCurrentA: 200, minCurrentA: 6, acMaxCurrentA: 16, maxPowerW: 80_000, energyCapacityWh: 60_000, fullSocPercent: 100, bulkSocPercent: 80,
};
export const TEST_EV_STATUS: EvStatus = {
  socPercent: 20, batteryVoltageV: 360, targetVoltageV: 400, targetCurrentA: 125, ready: true, errorCode: 'NO_ERROR',
  chargingComplete: false, bulkChargingComplete: false, energyRequestWh: 36_000, stopRequested: false, pauseRequested: false,
  contactorsClosed: false, energyDeliveredWh: 0,
};

/** A vehicle whose status is a base snapshot plus whatever `dynamic` derives (e.g. full after n CurrentDemandReq). */
export class FakeEv implements EvView {
  readonly reported: EvseOutput[] = [];
  dynamic: ((s: EvStatus) => Partial<EvStatus>) | undefined;
  constructor(public limits: EvLimits = TEST_EV_LIMITS, public base: EvStatus = { ...TEST_EV_STATUS }) {}
  status(): EvStatus {
    return { ...this.base, ...this.dynamic?.(this.base) };
  }
  reportEvseOutput(o: EvseOutput): void {
    this.reported.push(o);
  }
}

// ---- a software signer (stands in for the TPM) ---------------------------------------------------------------------

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G: Pt = [0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n, 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n, 1n];
type Pt = [bigint, bigint, bigint] | null; // Jacobian (X, Y, Z); null = point at infinity

const md = (a: bigint, m: bigint) => ((a % m) + m) % m;
function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [md(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  return md(s0, m);
}
function double(p: Pt): Pt {
  if (!p || p[1] === 0n) return null;
  const [x, y, z] = p;
  const delta = md(z * z, P), gamma = md(y * y, P), beta = md(x * gamma, P);
  const alpha = md(3n * (x - delta) * (x + delta), P);
  const x3 = md(alpha * alpha - 8n * beta, P);
  const z3 = md((y + z) ** 2n - gamma - delta, P);
  const y3 = md(alpha * (4n * beta - x3) - 8n * gamma * gamma, P);
  return [x3, y3, z3];
}
function add(p: Pt, q: Pt): Pt {
  if (!p) return q;
  if (!q) return p;
  const z1z1 = md(p[2] * p[2], P), z2z2 = md(q[2] * q[2], P);
  const u1 = md(p[0] * z2z2, P), u2 = md(q[0] * z1z1, P);
  const s1 = md(p[1] * q[2] * z2z2, P), s2 = md(q[1] * p[2] * z1z1, P);
  const h = md(u2 - u1, P);
  if (h === 0n) return md(s2 - s1, P) === 0n ? double(p) : null;
  const i = md(4n * h * h, P), j = md(h * i, P), r = md(2n * (s2 - s1), P), v = md(u1 * i, P);
  const x3 = md(r * r - j - 2n * v, P);
  const y3 = md(r * (v - x3) - 2n * s1 * j, P);
  const z3 = md(((p[2] + q[2]) ** 2n - z1z1 - z2z2) * h, P);
  return [x3, y3, z3];
}
function affineX(p: Pt): bigint {
  const zi = inverse(p![2], P);
  return md(p![0] * zi * zi, P);
}
const big = (b: Uint8Array) => BigInt(`0x${Buffer.from(b).toString('hex') || '0'}`);
const be32 = (x: bigint) => Buffer.from(x.toString(16).padStart(64, '0'), 'hex');

/** ECDSA P-256 over a given SHA-256 digest (what the TPM does), with a PKCS#8 PEM key: raw r‖s. */
export function softwareSigner(privateKeyPem: string): Signer & { signatures: number } {
  const jwk = createPrivateKey(privateKeyPem).export({ format: 'jwk' }) as { d?: string };
  const d = big(Buffer.from(jwk.d!, 'base64url'));
  const signer = {
    signatures: 0,
    async sign(digest: Uint8Array): Promise<Uint8Array> {
      if (digest.length !== 32) throw new Error('digest must be 32 bytes');
      const z = big(digest);
      for (;;) {
        const k = md(big(randomBytes(40)), N - 1n) + 1n;
        let R: Pt = null;
        for (let bit = 255; bit >= 0; bit--) {
          R = double(R);
          if ((k >> BigInt(bit)) & 1n) R = add(R, G);
        }
        const r = md(affineX(R), N);
        const s = md(inverse(k, N) * (z + r * d), N);
        if (r !== 0n && s !== 0n) {
          signer.signatures++;
          return new Uint8Array(Buffer.concat([be32(r), be32(s)]));
        }
      }
    },
  };
  return signer;
}

export interface TestCredentials {
  contract: Iso2Contract;
  contractCert: IssuedCert;
  provisioning: IssuedCert;
  signers: { contract: Signer & { signatures: number }; provisioning: Signer & { signatures: number } };
}

/** A contract chain (MO root → Sub-CA → contract leaf, eMAID in the CN) and an OEM provisioning certificate. */
export async function testCredentials(now = new Date()): Promise<TestCredentials> {
  const moRoot = await issue({ name: 'mo/mo-root', role: 'mo-root', subject: 'CN=MO Root CA, O=EVCC Test MO, C=DE, DC=MO', now });
  const moSub = await issue({ name: 'mo/mo-sub-ca-2', role: 'mo-sub-ca-2', subject: 'CN=MO Sub-CA 2, O=EVCC Test MO, C=DE, DC=MO', issuer: moRoot, now });
  const contractCert = await issue({ name: 'mo/contract', role: 'contract', subject: 'CN=DEEVCC000000001, O=EVCC Test MO, C=DE, DC=MO', issuer: moSub, now });
  const provisioning = await issue({ name: 'oem/oem-provisioning', role: 'oem-provisioning', subject: 'CN=WMIV0000000000001, O=EVCC Test OEM, C=DE', now });
  return {
    contract: { emaid: 'DEEVCC000000001', certificateChain: { Certificate: toHex(contractCert.der), SubCertificates: { Certificate: [toHex(moSub.der)] } }, notAfter: contractCert.cert.notAfter },
    contractCert, provisioning,
    signers: { contract: softwareSigner(contractCert.keyPem), provisioning: softwareSigner(provisioning.keyPem) },
  };
}

// ---- the scripted SECC ---------------------------------------------------------------------------------------------

export interface SeccAnswer {
  body: Body;
  /** Header SessionID of this answer (default: the SECC's). */
  sessionId?: string;
  /** E.g. `{ undeclaredEnd: true }` to send a message that lacks mandatory content (non-strict EXI). */
  encode?: EncodeOptions;
  /** Round trip of this answer (default: the SECC's rttMs). */
  rttMs?: number;
}
/** Return a body, a full answer, 'silence' (no answer at all) or undefined (the default answer). */
export type SeccOverride = (req: Body, secc: ScriptedSecc, defaultBody: () => Body) => Body | SeccAnswer | 'silence' | undefined;

export interface ScriptedSeccOptions {
  sessionId?: string;
  evseId?: string;
  paymentOptions?: ('Contract' | 'ExternalPayment')[];
  modes?: EnergyTransferMode[];
  certificateService?: boolean;
  dc?: { maxVoltageV: number; maxCurrentA: number; maxPowerW: number; minVoltageV: number; minCurrentA: number };
  ac?: { nominalVoltageV: number; maxCurrentA: number };
  /** Volts the output moves towards the PreCharge target per PreChargeReq. */
  preChargeStepV?: number;
  /** Volts the output falls per WeldingDetectionReq. */
  weldingDropV?: number;
  receiptRequired?: boolean;
  /** Accept a resume (OK_OldSessionJoined) for this SessionID. */
  joinable?: string;
  rttMs?: number;
  on?: Partial<Record<string, SeccOverride>>;
  /** Contract certificate (DER) to verify AuthorizationReq / MeteringReceiptReq header signatures with. */
  verifyWith?: Uint8Array;
}

export interface ReceivedRequest {
  at: number;
  name: string;
  header: Record<string, unknown>;
  body: Body;
}

export class ScriptedSecc {
  readonly o: Required<Pick<ScriptedSeccOptions, 'sessionId' | 'evseId' | 'paymentOptions' | 'modes' | 'dc' | 'ac' | 'preChargeStepV' | 'weldingDropV' | 'rttMs'>> & ScriptedSeccOptions;
  readonly received: ReceivedRequest[] = [];
  readonly verified: { message: string; ok: boolean; error?: string }[] = [];
  presentVoltageV = 0;
  presentCurrentA = 0;
  meterWh = 10_000;
  mode: EnergyTransferMode | undefined;

  constructor(o: ScriptedSeccOptions = {}) {
    this.o = {
      sessionId: SECC_SESSION_ID, evseId: 'DE*TST*E0001', paymentOptions: ['Contract', 'ExternalPayment'], modes: ['DC_extended'],
      dc: { maxVoltageV: 500, maxCurrentA: 150, maxPowerW: 60_000, minVoltageV: 150, minCurrentA: 0 },
      ac: { nominalVoltageV: 230, maxCurrentA: 32 }, preChargeStepV: 1_000, weldingDropV: 200, rttMs: 5,
      ...o,
    };
  }

  count(name: string): number {
    return this.received.filter((r) => r.name === name).length;
  }
  requests(name: string): ReceivedRequest[] {
    return this.received.filter((r) => r.name === name);
  }

  /** The SECC's answer to one request (undefined: silence). */
  answer(bytes: Uint8Array, at: number): { bytes: Uint8Array; header: Record<string, unknown>; rttMs: number } | undefined {
    const msg = decodeV2gMessage('iso2', bytes) as unknown as { Header: Record<string, unknown>; Body: Body };
    const name = Object.keys(msg.Body)[0]!;
    const req = msg.Body[name] as Body;
    this.received.push({ at, name, header: msg.Header, body: req });
    if (this.o.verifyWith && msg.Header.Signature) this.verifySignature(name, msg);
    const def = () => this.defaultAnswer(name, req, msg.Header);
    const custom = this.o.on?.[name]?.(req, this, def);
    if (custom === 'silence') return undefined;
    const answer: SeccAnswer = custom === undefined ? { body: def() } : 'body' in custom ? custom as SeccAnswer : { body: custom };
    const sessionId = answer.sessionId ?? (name === 'SessionSetupReq' ? this.assignedSessionId(msg.Header) : this.o.sessionId);
    const header = { SessionID: sessionId };
    return { bytes: encodeAny('iso2', { V2G_Message: { Header: header, Body: answer.body } }, answer.encode), header, rttMs: answer.rttMs ?? this.o.rttMs };
  }

  private verifySignature(name: string, msg: { Header: Record<string, unknown>; Body: Body }): void {
    try {
      xmldsigVerify({ V2G_Message: msg } as never, this.o.verifyWith!);
      this.verified.push({ message: name, ok: true });
    } catch (err) {
      this.verified.push({ message: name, ok: false, error: (err as Error).message });
    }
  }

  private assignedSessionId(header: Record<string, unknown>): string {
    return this.o.joinable !== undefined && header.SessionID === this.o.joinable ? this.o.joinable : this.o.sessionId;
  }

  dcStatus(o: { code?: string; notification?: string; isolation?: string } = {}): Body {
    return {
      NotificationMaxDelay: 0, EVSENotification: o.notification ?? 'None',
      ...(o.isolation ? { EVSEIsolationStatus: o.isolation } : {}), EVSEStatusCode: o.code ?? 'EVSE_Ready',
    };
  }
  acStatus(o: { notification?: string; rcd?: 0 | 1 } = {}): Body {
    return { NotificationMaxDelay: 0, EVSENotification: o.notification ?? 'None', RCD: o.rcd ?? 0 };
  }
  private isDc(): boolean {
    return (this.mode ?? this.o.modes[0]!).startsWith('DC_');
  }

  defaultAnswer(name: string, req: Body, header: Record<string, unknown>): Body {
    const ok = { ResponseCode: 'OK' };
    const dc = this.o.dc;
    switch (name) {
      case 'SessionSetupReq':
        return { SessionSetupRes: { ResponseCode: this.assignedSessionId(header) === header.SessionID ? 'OK_OldSessionJoined' : 'OK_NewSessionEstablished', EVSEID: this.o.evseId, EVSETimeStamp: 1_700_000_000 } };
      case 'ServiceDiscoveryReq':
        return {
          ServiceDiscoveryRes: {
            ...ok,
            PaymentOptionList: { PaymentOption: this.o.paymentOptions },
            ChargeService: { ServiceID: 1, ServiceCategory: 'EVCharging', FreeService: 0, SupportedEnergyTransferMode: { EnergyTransferMode: this.o.modes } },
            ...(this.o.certificateService ? { ServiceList: { Service: [{ ServiceID: 2, ServiceCategory: 'ContractCertificate', FreeService: 1 }] } } : {}),
          },
        };
      case 'ServiceDetailReq':
        return {
          ServiceDetailRes: {
            ...ok, ServiceID: req.ServiceID,
            ServiceParameterList: { ParameterSet: [{ ParameterSetID: 1, Parameter: [{ Name: 'Service', stringValue: 'Installation' }] }, { ParameterSetID: 2, Parameter: [{ Name: 'Service', stringValue: 'Update' }] }] },
          },
        };
      case 'PaymentServiceSelectionReq':
        return { PaymentServiceSelectionRes: ok };
      case 'CertificateInstallationReq':
      case 'CertificateUpdateReq':
        return {
          [name.replace('Req', 'Res')]: {
            ...ok,
            SAProvisioningCertificateChain: { Certificate: 'c0ffee' },
            ContractSignatureCertChain: { Id: 'id1', Certificate: 'abcdef01', SubCertificates: { Certificate: ['abcdef02'] } },
            ContractSignatureEncryptedPrivateKey: { Id: 'id2', CONTENT: '11'.repeat(48) },
            DHpublickey: { Id: 'id3', CONTENT: '04' + '22'.repeat(64) },
            eMAID: { Id: 'id4', CONTENT: 'DEEVCC000000002' },
          },
        };
      case 'PaymentDetailsReq':
        return { PaymentDetailsRes: { ...ok, GenChallenge: GEN_CHALLENGE, EVSETimeStamp: 1_700_000_001 } };
      case 'AuthorizationReq':
        return { AuthorizationRes: { ...ok, EVSEProcessing: 'Finished' } };
      case 'ChargeParameterDiscoveryReq': {
        this.mode = req.RequestedEnergyTransferMode as EnergyTransferMode;
        const maxPowerW = this.isDc() ? dc.maxPowerW : this.o.ac.nominalVoltageV * this.o.ac.maxCurrentA * 3;
        const schedule = { SAScheduleList: { SAScheduleTuple: [{ SAScheduleTupleID: 1, PMaxSchedule: { PMaxScheduleEntry: [{ RelativeTimeInterval: { start: 0, duration: 86_400 }, PMax: pv(maxPowerW, 'W') }] } }] } };
        return {
          ChargeParameterDiscoveryRes: {
            ...ok, EVSEProcessing: 'Finished', ...schedule,
            ...(this.isDc()
              ? {
                DC_EVSEChargeParameter: {
                  DC_EVSEStatus: this.dcStatus({ code: 'EVSE_Ready' }),
                  EVSEMaximumCurrentLimit: pv(dc.maxCurrentA, 'A'), EVSEMaximumPowerLimit: pv(dc.maxPowerW, 'W'), EVSEMaximumVoltageLimit: pv(dc.maxVoltageV, 'V'),
                  EVSEMinimumCurrentLimit: pv(dc.minCurrentA, 'A'), EVSEMinimumVoltageLimit: pv(dc.minVoltageV, 'V'), EVSEPeakCurrentRipple: pv(2, 'A'),
                },
              }
              : { AC_EVSEChargeParameter: { AC_EVSEStatus: this.acStatus(), EVSENominalVoltage: pv(this.o.ac.nominalVoltageV, 'V'), EVSEMaxCurrent: pv(this.o.ac.maxCurrentA, 'A') } }),
          },
        };
      }
      case 'CableCheckReq':
        return { CableCheckRes: { ...ok, DC_EVSEStatus: this.dcStatus({ isolation: 'Valid' }), EVSEProcessing: 'Finished' } };
      case 'PreChargeReq': {
        const target = num(req.EVTargetVoltage);
        const step = this.o.preChargeStepV;
        this.presentVoltageV += Math.max(-step, Math.min(step, target - this.presentVoltageV));
        return { PreChargeRes: { ...ok, DC_EVSEStatus: this.dcStatus({ isolation: 'Valid' }), EVSEPresentVoltage: pv(this.presentVoltageV, 'V') } };
      }
      case 'PowerDeliveryReq':
        if (req.ChargeProgress === 'Stop') this.presentCurrentA = 0;
        return { PowerDeliveryRes: { ...ok, ...(this.isDc() ? { DC_EVSEStatus: this.dcStatus({ isolation: 'Valid' }) } : { AC_EVSEStatus: this.acStatus() }) } };
      case 'CurrentDemandReq': {
        this.presentVoltageV = Math.min(num(req.EVTargetVoltage), dc.maxVoltageV);
        this.presentCurrentA = Math.min(num(req.EVTargetCurrent), dc.maxCurrentA);
        this.meterWh += (this.presentVoltageV * this.presentCurrentA) / 36_000; // 100 ms of power
        return {
          CurrentDemandRes: {
            ...ok, DC_EVSEStatus: this.dcStatus({ isolation: 'Valid' }),
            EVSEPresentVoltage: pv(this.presentVoltageV, 'V'), EVSEPresentCurrent: pv(this.presentCurrentA, 'A'),
            EVSECurrentLimitAchieved: 0, EVSEVoltageLimitAchieved: 0, EVSEPowerLimitAchieved: 0,
            EVSEMaximumVoltageLimit: pv(dc.maxVoltageV, 'V'), EVSEMaximumCurrentLimit: pv(dc.maxCurrentA, 'A'), EVSEMaximumPowerLimit: pv(dc.maxPowerW, 'W'),
            EVSEID: this.o.evseId, SAScheduleTupleID: 1,
            ...(this.o.receiptRequired ? { MeterInfo: { MeterID: 'METER-1', MeterReading: Math.round(this.meterWh) }, ReceiptRequired: 1 } : {}),
          },
        };
      }
      case 'ChargingStatusReq':
        this.meterWh += 100;
        return {
          ChargingStatusRes: {
            ...ok, EVSEID: this.o.evseId, SAScheduleTupleID: 1, EVSEMaxCurrent: pv(this.o.ac.maxCurrentA, 'A'),
            MeterInfo: { MeterID: 'METER-1', MeterReading: Math.round(this.meterWh) },
            ...(this.o.receiptRequired ? { ReceiptRequired: 1 } : {}),
            AC_EVSEStatus: this.acStatus(),
          },
        };
      case 'MeteringReceiptReq':
        return { MeteringReceiptRes: { ...ok, ...(this.isDc() ? { DC_EVSEStatus: this.dcStatus() } : { AC_EVSEStatus: this.acStatus() }) } };
      case 'WeldingDetectionReq':
        this.presentVoltageV = Math.max(0, this.presentVoltageV - this.o.weldingDropV);
        return { WeldingDetectionRes: { ...ok, DC_EVSEStatus: this.dcStatus(), EVSEPresentVoltage: pv(this.presentVoltageV, 'V') } };
      case 'SessionStopReq':
        return { SessionStopRes: ok };
      default:
        throw new Error(`scripted SECC: no answer for ${name}`);
    }
  }
}

// ---- the runner ----------------------------------------------------------------------------------------------------

export interface RunIso2Options {
  secc: ScriptedSecc;
  /** The vehicle: FakeEv by default, or an EvPort such as SimEv (its setContactors runs the contactors effect). */
  ev?: EvView & Partial<Pick<EvPort, 'setContactors'>>;
  module: Iso2ModuleOptions;
  /** Software keys for the `sign` effect (absent key: the effect fails, as with no TPM). */
  signers?: { contract?: Signer; provisioning?: Signer };
  /** installContract stand-in; default: the response's eMAID under key id `contract-2`. */
  installContract?: (req: Extract<EffectRequest, { kind: 'installContract' }>) => unknown;
  /** Virtual time each effect takes (default 0; contactors 50 ms). */
  effectMs?: Partial<Record<EffectKind, number>>;
  timers?: TimerTable;
  /** Operator stop at this virtual time. */
  stopAt?: number;
  /** A virtual clock kept at the runner's `now` (for a vehicle model that reads time, e.g. SimEv). */
  clock?: Clock & { advance(ms: number): void };
  /** Give up (test bug) after this much virtual time. */
  maxMs?: number;
}

export interface TimedEvent {
  at: number;
  event: SessionEvent;
}

export interface Iso2Run {
  result: SessionResult;
  events: TimedEvent[];
  effects: { at: number; request: EffectRequest }[];
  ctx: Iso2Ctx;
  ev: RunIso2Options['ev'] & object;
  secc: ScriptedSecc;
  /** Virtual time at the end. */
  endedAt: number;
}

interface Queued {
  at: number;
  seq: number;
  input: SessionInput;
}

/** Runs one whole session in virtual time, from SupportedAppProtocol to the engine's result. */
export async function runIso2(o: RunIso2Options): Promise<Iso2Run> {
  const ev = o.ev ?? new FakeEv();
  let mod: ProtocolModule<Iso2Ctx> | undefined;
  const engine = new SessionEngine({
    ev, offer: ISO2_OFFER, ...(o.timers ? { timers: o.timers } : {}),
    modules: { [ISO2_NAMESPACE]: () => (mod = createIso2Module(o.module)) as ProtocolModule<unknown> },
  });
  const events: TimedEvent[] = [];
  const effects: Iso2Run['effects'] = [];
  const queue: Queued[] = [];
  let seq = 0;
  const enqueue = (q: Omit<Queued, 'seq'>) => queue.push({ ...q, seq: seq++ });
  if (o.stopAt !== undefined) enqueue({ at: o.stopAt, input: { kind: 'stop', now: o.stopAt } });

  let now = o.clock?.now() ?? 0;
  let out: SessionOutput = engine.step({ kind: 'start', now });
  for (let i = 0; ; i++) {
    if (i > 200_000 || now > (o.maxMs ?? 3_600_000)) throw new Error(`runIso2: no end after ${i} steps / ${now} ms`);
    for (const event of out.events) events.push({ at: now, event });
    if (out.result) return { result: out.result, events, effects, ctx: mod!.ctx, ev, secc: o.secc, endedAt: now };
    for (const e of out.effects) {
      effects.push({ at: now, request: e.request });
      const done = await runEffect(o, ev, e.request);
      const delay = o.effectMs?.[e.request.kind] ?? (e.request.kind === 'contactors' ? 50 : 0);
      enqueue({ at: now + delay, input: { kind: 'effectDone', now: now + delay, id: e.id, ...done } });
    }
    if (out.send) {
      if (!mod) {
        const bytes = answerSupportedAppProtocolReq(out.send.bytes, [{ namespace: ISO2_NAMESPACE, major: 2, minor: 0 }]);
        enqueue({ at: now + o.secc.o.rttMs, input: { kind: 'payload', now: now + o.secc.o.rttMs, payloadType: 0x8001, bytes } });
      } else {
        const a = o.secc.answer(out.send.bytes, now);
        if (a) enqueue({ at: now + a.rttMs, input: { kind: 'payload', now: now + a.rttMs, payloadType: 0x8001, bytes: a.bytes } });
      }
    }
    queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const nextQueued = queue[0];
    if (nextQueued && (out.deadline === undefined || nextQueued.at <= out.deadline)) {
      queue.shift();
      now = nextQueued.at;
      o.clock?.advance(now - o.clock.now());
      out = engine.step({ ...nextQueued.input, now } as SessionInput);
    } else if (out.deadline !== undefined) {
      now = out.deadline;
      o.clock?.advance(now - o.clock.now());
      out = engine.step({ kind: 'timer', now });
    } else {
      throw new Error(`runIso2: the engine stalled in ${out.state} without a deadline`);
    }
  }
}

async function runEffect(o: RunIso2Options, ev: NonNullable<RunIso2Options['ev']>, r: EffectRequest): Promise<{ result?: unknown; error?: EvccError }> {
  switch (r.kind) {
    case 'sign': {
      const signer = o.signers?.[r.key];
      if (!signer) return { error: new EvccError('SESSION_EFFECT_UNAVAILABLE', `no ${r.key} key`) };
      return { result: await xmldsigSign(r.elements as SignedElement[], signer) };
    }
    case 'contactors':
      // A vehicle model moves its contactors in its own (virtual) time; the runner reports the effect done after
      // effectMs.contactors, which matches SimEv's default contactor delay.
      if (ev.setContactors) void ev.setContactors(r.closed).catch(() => undefined);
      else if (ev instanceof FakeEv) ev.base = { ...ev.base, contactorsClosed: r.closed };
      return {};
    case 'chargeRequest':
      return {};
    case 'installContract':
      try {
        return { result: o.installContract ? o.installContract(r) : { emaid: String((r.response.eMAID as { CONTENT?: string }).CONTENT), contractKeyId: 'contract-2' } };
      } catch (err) {
        return { error: err instanceof EvccError ? err : new EvccError('SESSION_EFFECT_FAILED', String(err)) };
      }
  }
}

// ---- reading a run -------------------------------------------------------------------------------------------------

export const sentNames = (run: Iso2Run): string[] =>
  run.events.filter((e) => e.event.type === 'sent').map((e) => (e.event as { name: string }).name);

export const notes = (run: Iso2Run, level?: 'info' | 'warn' | 'error'): string[] =>
  run.events.filter((e) => e.event.type === 'note' && (!level || (e.event as { level: string }).level === level)).map((e) => (e.event as { message: string }).message);

/** Virtual time of the first event matching. */
export function timeOf(run: Iso2Run, match: (e: SessionEvent) => boolean): number | undefined {
  return run.events.find((e) => match(e.event))?.at;
}
