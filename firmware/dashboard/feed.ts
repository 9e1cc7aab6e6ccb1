/**
 * The live dashboard's view model (issue #11): a pure reducer over what the runtime already produces — the logger's
 * records (subsystem, message, checkpoint ids, orchestrator transitions) and the session driver's decoded messages
 * (firmware/session/driver.ts MessageRecord) — into what the bench screen shows:
 *
 *   - the bench log (bounded);
 *   - the session timeline, plug-in → SLAC → SDP → TLS (→ Solution C root fetch → TLS retry) → SupportedAppProtocol →
 *     SessionSetup → … → charge loop → SessionStop, each phase with its duration and repetitions;
 *   - the charger's limits and present voltage / current / power, and the EV's SoC, as chart samples;
 *   - the last failure in bench words (failure-words.ts);
 *   - certificate and system views (certificates.ts, system.ts), handed in by the composition root.
 *
 * No I/O, no clock: every input carries its wall-clock time (epoch ms), and `apply` returns the updates to push to
 * the connected screens. The same inputs give the same screen: a captured log replays into the same view.
 */
import { fromPhysical } from '../session/units.ts';
import type { CertificateView } from './certificates.ts';
import { describeFailureForBench, type FailureWords } from './failure-words.ts';
import type { SystemView } from './system.ts';

/** One pino record as the runtime's logger writes it (level label, epoch-ms time, `sub`, `msg`, fields). */
export type LogRecord = Record<string, unknown>;

/** A decoded V2G message (firmware/session/driver.ts MessageRecord), at wall-clock time. */
export interface MessageInput {
  direction: 'tx' | 'rx';
  name: string;
  document: unknown;
  rttMs?: number;
}

export interface SessionEndInput {
  ok: boolean;
  state: string;
  endReason: { code: string; message: string; orderly: boolean };
  /** One line: protocol, payment, SoC, energy. */
  summary?: string;
}

export type DashboardInput =
  | { kind: 'sessionStarted'; at: number; label: string }
  | { kind: 'log'; at: number; record: LogRecord }
  | { kind: 'message'; at: number; message: MessageInput; socPercent?: number }
  | { kind: 'sessionEnded'; at: number; end: SessionEndInput }
  | { kind: 'certificates'; view: CertificateView }
  | { kind: 'system'; view: SystemView };

export interface LogLine {
  at: number;
  level: string;
  sub?: string;
  text: string;
  /** Stable checkpoint id, when the record carries one. */
  cp?: string;
  code?: string;
}

export type PhaseStatus = 'running' | 'done' | 'failed';

export interface Phase {
  name: string;
  /** The orchestrator stage it belongs to. */
  stage: 'plug-in' | 'slac' | 'sdp' | 'channel' | 'root-fetch' | 'v2g' | 'paused' | 'end';
  startedAt: number;
  /** Duration, ms; for a running phase: up to the last input. */
  ms: number;
  /** Requests sent in this phase (repetitions: CableCheck ×3, CurrentDemand ×142). */
  count?: number;
  status: PhaseStatus;
}

export interface ChartSample {
  /** Seconds since the session started. */
  t: number;
  voltageV?: number;
  currentA?: number;
  powerKw?: number;
  socPercent?: number;
  limitVoltageV?: number;
  limitCurrentA?: number;
  limitPowerKw?: number;
}

/** The charger's limits and what it delivers now (Kilic, Fig. 11: "EVSE Energy Limits"). */
export interface Limits {
  maxVoltageV?: number;
  maxCurrentA?: number;
  maxPowerW?: number;
  minVoltageV?: number;
  minCurrentA?: number;
  nominalVoltageV?: number;
  presentVoltageV?: number;
  presentCurrentA?: number;
  presentPowerW?: number;
  evTargetVoltageV?: number;
  evTargetCurrentA?: number;
  socPercent?: number;
}

export interface SessionStatus {
  state: 'idle' | 'running' | 'ended' | 'failed';
  label?: string;
  startedAt?: number;
  endedAt?: number;
  summary?: string;
  code?: string;
}

export type Banner = FailureWords & { at: number; state: string };

export interface DashboardSnapshot {
  session: SessionStatus;
  log: LogLine[];
  timeline: Phase[];
  samples: ChartSample[];
  limits: Limits;
  failure?: Banner;
  certificates?: CertificateView;
  system?: SystemView;
}

export type DashboardUpdate =
  | { type: 'log'; line: LogLine }
  | { type: 'timeline'; timeline: Phase[] }
  | { type: 'sample'; sample: ChartSample }
  | { type: 'limits'; limits: Limits }
  | { type: 'session'; session: SessionStatus }
  | { type: 'failure'; failure: Banner | null }
  | { type: 'certificates'; certificates: CertificateView }
  | { type: 'system'; system: SystemView };

export interface FeedOptions {
  /** Log lines kept for a screen that connects late. */
  maxLogLines?: number;
  /** Chart samples kept per session (older ones are thinned, never the newest). */
  maxSamples?: number;
}

const ORCHESTRATOR: Record<string, { name: string; stage: Phase['stage'] } | undefined> = {
  Matching: { name: 'SLAC', stage: 'slac' },
  WaitForSeccDiscoveryRes: { name: 'SDP', stage: 'sdp' },
  WaitForChannel: { name: 'TLS', stage: 'channel' },
  Paused: { name: 'Paused', stage: 'paused' },
};

/** Messages of the energy-transfer loop: one phase however often they repeat. */
const CHARGE_LOOP = new Set(['CurrentDemand', 'ChargingStatus']);

/** Responses that carry what the charger delivers now. */
const PRESENT_VALUES = new Set(['PreChargeRes', 'CurrentDemandRes', 'ChargingStatusRes', 'WeldingDetectionRes']);

const LEVELS: Record<string, string> = { '10': 'trace', '20': 'debug', '30': 'info', '40': 'warn', '50': 'error', '60': 'fatal' };

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** `HH:MM:SS.mmm` in the bench's local time, as the bench log prints it. */
export function clockText(epochMs: number): string {
  const d = new Date(epochMs);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Depth-first search for the first value under `key` (documents nest Body → Message → Parameter). */
export function findField(doc: unknown, key: string, depth = 0): unknown {
  if (!doc || typeof doc !== 'object' || depth > 8) return undefined;
  const o = doc as Record<string, unknown>;
  if (Object.hasOwn(o, key)) return o[key];
  for (const v of Object.values(o)) {
    if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
      const found = findField(v, key, depth + 1);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function physical(doc: unknown, key: string): number | undefined {
  const v = findField(doc, key);
  return v && typeof v === 'object' ? fromPhysical(v as { Multiplier: number; Value: number }) : undefined;
}

const round = (x: number | undefined, d = 1): number | undefined => (x === undefined ? undefined : Math.round(x * 10 ** d) / 10 ** d);

/** `supportedAppProtocolReq` → `SupportedAppProtocol`, `CableCheckReq` → `CableCheck`. */
function phaseNameOf(requestName: string): string {
  const base = requestName.replace(/Req$/, '');
  return base.charAt(0).toUpperCase() + base.slice(1);
}

export class DashboardFeed {
  private readonly maxLog: number;
  private readonly maxSamples: number;
  private log: LogLine[] = [];
  private timeline: Phase[] = [];
  private samples: ChartSample[] = [];
  private limits: Limits = {};
  private session: SessionStatus = { state: 'idle' };
  private failure: Banner | undefined;
  private certificates: CertificateView | undefined;
  private system: SystemView | undefined;
  /** When the V2G session began (its first message phase starts here). */
  private v2gSince: number | undefined;

  constructor(o: FeedOptions = {}) {
    this.maxLog = o.maxLogLines ?? 2_000;
    this.maxSamples = o.maxSamples ?? 4_000;
  }

  snapshot(): DashboardSnapshot {
    return {
      session: { ...this.session }, log: [...this.log], timeline: this.timeline.map((p) => ({ ...p })), samples: [...this.samples], limits: { ...this.limits },
      ...(this.failure ? { failure: this.failure } : {}), ...(this.certificates ? { certificates: this.certificates } : {}), ...(this.system ? { system: this.system } : {}),
    };
  }

  apply(input: DashboardInput): DashboardUpdate[] {
    switch (input.kind) {
      case 'sessionStarted': return this.started(input.at, input.label);
      case 'log': return this.record(input.at, input.record);
      case 'message': return this.message(input.at, input.message, input.socPercent);
      case 'sessionEnded': return this.ended(input.at, input.end);
      case 'certificates':
        this.certificates = input.view;
        return [{ type: 'certificates', certificates: input.view }];
      case 'system':
        this.system = input.view;
        return [{ type: 'system', system: input.view }];
    }
  }

  // ---- session --------------------------------------------------------------------------------------------------

  private started(at: number, label: string): DashboardUpdate[] {
    this.timeline = [];
    this.samples = [];
    this.limits = {};
    this.failure = undefined;
    this.v2gSince = undefined;
    this.session = { state: 'running', label, startedAt: at };
    this.open(at, 'Plug-in', 'plug-in');
    return [{ type: 'session', session: { ...this.session } }, { type: 'failure', failure: null }, { type: 'timeline', timeline: this.timelineNow() }, { type: 'limits', limits: {} }];
  }

  private ended(at: number, end: SessionEndInput): DashboardUpdate[] {
    const failed = !end.ok;
    this.closeCurrent(at, failed ? 'failed' : 'done');
    this.pushTerminal(at, failed ? 'Failed' : 'Ended', failed);
    this.session = {
      ...this.session, state: failed ? 'failed' : 'ended', endedAt: at, code: end.endReason.code,
      ...(end.summary ? { summary: end.summary } : {}),
    };
    const out: DashboardUpdate[] = [{ type: 'timeline', timeline: this.timelineNow() }, { type: 'session', session: { ...this.session } }];
    if (failed) {
      this.failure = { ...describeFailureForBench(end.endReason.code, end.endReason.message), at, state: end.state };
      out.push({ type: 'failure', failure: this.failure });
    }
    return out;
  }

  // ---- log records ----------------------------------------------------------------------------------------------

  private record(at: number, rec: LogRecord): DashboardUpdate[] {
    const time = typeof rec.time === 'number' ? rec.time : at;
    const level = LEVELS[String(rec.level)] ?? String(rec.level ?? 'info');
    const sub = typeof rec.sub === 'string' ? rec.sub : undefined;
    const msg = String(rec.msg ?? '');
    const line: LogLine = {
      at: time, level, text: `${clockText(time)} [${level.toUpperCase()}] ${sub ? `${sub}: ` : ''}${msg}`,
      ...(sub ? { sub } : {}), ...(typeof rec.cp === 'string' ? { cp: rec.cp } : {}), ...(typeof rec.code === 'string' ? { code: rec.code } : {}),
    };
    this.log.push(line);
    if (this.log.length > this.maxLog) this.log.splice(0, this.log.length - this.maxLog);
    const out: DashboardUpdate[] = [{ type: 'log', line }];
    if (this.session.state === 'running' && this.timelineFrom(time, rec, sub)) out.push({ type: 'timeline', timeline: this.timelineNow() });
    return out;
  }

  /** Timeline milestones in the log: orchestrator transitions, the channel plan, the unknown-root path. */
  private timelineFrom(at: number, rec: LogRecord, sub: string | undefined): boolean {
    if (sub === 'EVCC' && typeof rec.from === 'string' && typeof rec.to === 'string') {
      const to = rec.to;
      if (to === 'Ended' || to === 'Failed') return false; // the report closes the session (sessionEnded)
      if (to === 'V2GSession') {
        this.closeCurrent(at, 'done');
        this.v2gSince = at;
        return true;
      }
      const phase = ORCHESTRATOR[to];
      if (!phase) return false;
      this.open(at, phase.name, phase.stage);
      return true;
    }
    const current = this.timeline.at(-1);
    if (sub === 'EVCC' && rec.cp === 'EVCC_CHANNEL_PLAN' && rec.channel === 'tcp' && current?.stage === 'channel') {
      current.name = 'TCP';
      return true;
    }
    // The unknown-root path: the OEM request (root-fetch.ts logs its id and budget) opens it, the TLS retry ends it.
    if (sub === 'OTA' && typeof rec.requestId === 'string' && typeof rec.budgetMs === 'number' && current?.stage === 'channel') {
      this.open(at, 'Root fetch (Solution C)', 'root-fetch');
      return true;
    }
    if (sub === 'TLS' && typeof rec.attempt === 'number' && current?.stage === 'root-fetch') {
      this.open(at, `TLS (attempt ${rec.attempt})`, 'channel');
      return true;
    }
    return false;
  }

  // ---- decoded messages -----------------------------------------------------------------------------------------

  private message(at: number, m: MessageInput, soc: number | undefined): DashboardUpdate[] {
    const out: DashboardUpdate[] = [];
    if (this.session.state !== 'running') return out;
    if (soc !== undefined) this.limits.socPercent = round(soc);
    if (m.direction === 'tx' && m.name.endsWith('Req')) {
      const base = phaseNameOf(m.name);
      const name = CHARGE_LOOP.has(base) ? `Charge loop (${base})` : base;
      const current = this.timeline.at(-1);
      if (current && current.stage === 'v2g' && current.name === name && current.status === 'running') {
        current.count = (current.count ?? 1) + 1;
        current.ms = at - current.startedAt;
      } else {
        this.open(this.v2gSince ?? at, name, 'v2g');
        this.timeline.at(-1)!.count = 1;
        this.v2gSince = undefined;
      }
      out.push({ type: 'timeline', timeline: this.timelineNow() });
      if (m.name === 'CurrentDemandReq') {
        this.limits.evTargetVoltageV = round(physical(m.document, 'EVTargetVoltage'));
        this.limits.evTargetCurrentA = round(physical(m.document, 'EVTargetCurrent'));
      }
      return out;
    }
    if (m.direction !== 'rx') return out;
    const doc = m.document;
    let changed = false;
    if (m.name === 'ChargeParameterDiscoveryRes' || m.name === 'CurrentDemandRes' || m.name === 'ChargingStatusRes') {
      for (const [field, key] of [
        ['maxVoltageV', 'EVSEMaximumVoltageLimit'], ['maxCurrentA', 'EVSEMaximumCurrentLimit'], ['maxPowerW', 'EVSEMaximumPowerLimit'],
        ['minVoltageV', 'EVSEMinimumVoltageLimit'], ['minCurrentA', 'EVSEMinimumCurrentLimit'], ['nominalVoltageV', 'EVSENominalVoltage'],
        ['maxCurrentA', 'EVSEMaxCurrent'],
      ] as const) {
        const v = physical(doc, key);
        if (v !== undefined) {
          this.limits[field] = round(v, 2);
          changed = true;
        }
      }
    }
    if (PRESENT_VALUES.has(m.name)) {
      const v = physical(doc, 'EVSEPresentVoltage');
      const i = physical(doc, 'EVSEPresentCurrent');
      if (v !== undefined) this.limits.presentVoltageV = round(v);
      this.limits.presentCurrentA = i !== undefined ? round(i) : m.name === 'CurrentDemandRes' ? this.limits.presentCurrentA : 0;
      this.limits.presentPowerW = this.limits.presentVoltageV !== undefined && this.limits.presentCurrentA !== undefined
        ? Math.round(this.limits.presentVoltageV * this.limits.presentCurrentA) : undefined;
      changed = true;
      const sample = this.sample(at);
      this.samples.push(sample);
      this.thin();
      out.push({ type: 'sample', sample });
    }
    if (changed) out.push({ type: 'limits', limits: { ...this.limits } });
    return out;
  }

  private sample(at: number): ChartSample {
    const l = this.limits;
    const t = Math.round((at - (this.session.startedAt ?? at)) / 10) / 100;
    const s: ChartSample = { t };
    if (l.presentVoltageV !== undefined) s.voltageV = l.presentVoltageV;
    if (l.presentCurrentA !== undefined) s.currentA = l.presentCurrentA;
    if (l.presentPowerW !== undefined) s.powerKw = round(l.presentPowerW / 1000, 2);
    if (l.socPercent !== undefined) s.socPercent = l.socPercent;
    const maxV = l.maxVoltageV ?? l.nominalVoltageV;
    if (maxV !== undefined) s.limitVoltageV = maxV;
    if (l.maxCurrentA !== undefined) s.limitCurrentA = l.maxCurrentA;
    if (l.maxPowerW !== undefined) s.limitPowerKw = round(l.maxPowerW / 1000, 2);
    return s;
  }

  /** Keeps the chart bounded on a long session: every second older sample goes, the newest half stays. */
  private thin(): void {
    if (this.samples.length <= this.maxSamples) return;
    const half = Math.floor(this.samples.length / 2);
    this.samples = [...this.samples.slice(0, half).filter((_, i) => i % 2 === 0), ...this.samples.slice(half)];
  }

  // ---- timeline helpers -----------------------------------------------------------------------------------------

  private open(at: number, name: string, stage: Phase['stage']): void {
    this.closeCurrent(at, 'done');
    this.timeline.push({ name, stage, startedAt: at, ms: 0, status: 'running' });
  }

  private closeCurrent(at: number, status: PhaseStatus): void {
    const current = this.timeline.at(-1);
    if (!current || current.status !== 'running') return;
    current.ms = Math.max(0, at - current.startedAt);
    current.status = status;
  }

  private pushTerminal(at: number, name: string, failed: boolean): void {
    this.timeline.push({ name, stage: 'end', startedAt: at, ms: 0, status: failed ? 'failed' : 'done' });
  }

  private timelineNow(): Phase[] {
    return this.timeline.map((p) => ({ ...p }));
  }
}
