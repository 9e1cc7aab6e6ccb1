import { z } from 'zod';
import { EvccError, type CommonErrorCode } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { Clock, TimerId } from '../clock/types.ts';
import type { EvErrorCode, EvLimits, EvPort, EvseOutput, EvStatus } from './types.ts';

/**
 * A simulated vehicle: a battery that fills from what the charger delivers, a BMS that asks for current with a
 * CC-CV-like taper towards the target SoC, and contactors that take time to move. Time is the injected clock's;
 * `timeScale` makes one clock second count as that many seconds of charging, so a bench session goes from 20 to
 * 80 % in seconds. Everything the protocol sees (contactor delay, remaining-time estimates) stays in clock time.
 * Model and options: hal/ev/README.md.
 */

const Percent = z.number().min(0).max(100);

const OcvPoint = z.strictObject({ socPercent: Percent, voltageV: z.number().positive().max(2000) });
export type OcvPoint = z.infer<typeof OcvPoint>;

/** Open-circuit voltage of a 400 V-nominal Li-ion pack: steep when empty, flat in the middle, rising when full. */
const LI_ION_OCV_AT_400V: readonly OcvPoint[] = [
  { socPercent: 0, voltageV: 330 },
  { socPercent: 5, voltageV: 345 },
  { socPercent: 10, voltageV: 355 },
  { socPercent: 20, voltageV: 365 },
  { socPercent: 30, voltageV: 372 },
  { socPercent: 40, voltageV: 378 },
  { socPercent: 50, voltageV: 383 },
  { socPercent: 60, voltageV: 388 },
  { socPercent: 70, voltageV: 393 },
  { socPercent: 80, voltageV: 398 },
  { socPercent: 90, voltageV: 404 },
  { socPercent: 100, voltageV: 410 },
];

function ocvCurveOf(o: { ocvCurve?: OcvPoint[] | undefined; nominalVoltageV?: number | undefined }): readonly OcvPoint[] {
  const scale = (o.nominalVoltageV ?? 400) / 400;
  return o.ocvCurve ?? LI_ION_OCV_AT_400V.map((p) => ({ socPercent: p.socPercent, voltageV: p.voltageV * scale }));
}

export const SimEvOptions = z
  .strictObject({
    name: z.string().min(1).default('sim-ev'),
    /** Usable capacity. */
    capacityWh: z.number().positive().max(1_000_000).default(60_000),
    initialSocPercent: Percent.default(20),
    /** Where the vehicle stops charging (ChargingComplete; FullSOC). */
    targetSocPercent: Percent.default(80),
    /** Where bulk charging ends (BulkChargingComplete; BulkSOC). Default: where the taper begins. */
    bulkSocPercent: Percent.optional(),
    /** DC limits: EVMaximumVoltageLimit, EVMaximumCurrentLimit, EVMaximumPowerLimit. */
    maxVoltageV: z.number().positive().max(2000).default(430),
    maxCurrentA: z.number().positive().max(2000).default(200),
    maxPowerW: z.number().positive().max(2_000_000).default(80_000),
    /** AC limits per phase: EVMinCurrent, EVMaxCurrent. */
    acMinCurrentA: z.number().min(0).max(1000).default(6),
    acMaxCurrentA: z.number().positive().max(1000).default(16),
    /** Scales the default Li-ion curve (330 V empty, 410 V full at 400 V nominal). Not with `ocvCurve`. */
    nominalVoltageV: z.number().positive().max(2000).optional(),
    /** Open-circuit voltage against SoC, interpolated linearly: from 0 % to 100 %, voltage never falling. */
    ocvCurve: z.array(OcvPoint).min(2).optional(),
    /** DC CurrentDemand: EVTargetVoltage is this much above the battery voltage (capped at maxVoltageV). */
    targetVoltageHeadroomV: z.number().min(0).max(100).default(5),
    /** The taper: over the last this-many % of SoC before the target the requested current falls linearly ... */
    taperWindowPercent: Percent.default(10),
    /** ... to this share of maxCurrentA at the target (above zero, or the target would never be reached). */
    taperEndCurrentPercent: z.number().min(1).max(100).default(10),
    /** One clock second of charging counts as `timeScale` seconds (600: a second is ten minutes). */
    timeScale: z.number().positive().max(1_000_000).default(1),
    /** Time the contactors take to report a new position (clock time, not scaled). */
    contactorDelayMs: z.number().int().min(0).max(10_000).default(50),
  })
  .superRefine((o, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if (o.bulkSocPercent !== undefined && o.bulkSocPercent > o.targetSocPercent) issue('bulkSocPercent', 'bulk SoC above the target SoC');
    if (o.acMinCurrentA > o.acMaxCurrentA) issue('acMinCurrentA', 'AC minimum current above the AC maximum');
    if (o.ocvCurve && o.nominalVoltageV !== undefined) issue('nominalVoltageV', 'give either nominalVoltageV or ocvCurve');
    const c = o.ocvCurve;
    if (c) {
      const bad = (message: string) => issue('ocvCurve', message);
      if (c[0]!.socPercent !== 0 || c[c.length - 1]!.socPercent !== 100) return bad('the curve must run from 0 % to 100 % SoC');
      for (let i = 1; i < c.length; i++) {
        if (c[i]!.socPercent <= c[i - 1]!.socPercent) return bad(`SoC must increase (point ${i})`);
        if (c[i]!.voltageV < c[i - 1]!.voltageV) return bad(`voltage must not fall with SoC (point ${i})`);
      }
    }
    // Otherwise the BMS could never ask for the voltage that takes the battery to its target.
    const atTarget = interpolate(ocvCurveOf(o), o.targetSocPercent);
    if (atTarget > o.maxVoltageV) issue('maxVoltageV', `${o.maxVoltageV} V is below the battery's ${atTarget.toFixed(1)} V at the target SoC`);
  });
export type SimEvOptionsInput = z.input<typeof SimEvOptions>;
export type SimEvOptions = z.output<typeof SimEvOptions>;

/** Validates sim EV options; a bad option is a CONFIG_INVALID EvccError naming each issue. */
export function parseSimEvOptions(raw: unknown): SimEvOptions {
  const r = SimEvOptions.safeParse(raw ?? {});
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'options'}: ${i.message}`);
    throw new EvccError<CommonErrorCode>('CONFIG_INVALID', `invalid sim EV options: ${issues.join('; ')}`, { issues });
  }
  return r.data;
}

/** Piecewise-linear interpolation over points sorted by SoC. */
function interpolate(curve: readonly OcvPoint[], socPercent: number): number {
  const soc = Math.min(100, Math.max(0, socPercent));
  let i = 1;
  while (i < curve.length - 1 && curve[i]!.socPercent < soc) i++;
  const a = curve[i - 1]!;
  const b = curve[i]!;
  return a.voltageV + ((b.voltageV - a.voltageV) * (soc - a.socPercent)) / (b.socPercent - a.socPercent);
}

/** SoC step of the remaining-time integration: fine enough for a profile that is linear in pieces. */
const ESTIMATE_STEP_PERCENT = 0.25;
const MS_PER_HOUR = 3_600_000;

interface ContactorMotion {
  timer: TimerId;
  reject: (err: Error) => void;
}

export interface SimEvDeps {
  clock: Clock;
  /** Bound to the EV subsystem (`forSubsystem(root, 'EV')`). */
  log?: Logger;
}

export class SimEv implements EvPort {
  readonly name: string;
  readonly limits: EvLimits;
  private readonly o: SimEvOptions;
  private readonly ocv: readonly OcvPoint[];
  private readonly bulkSocPercent: number;
  private readonly clock: Clock;
  private readonly log: Logger | undefined;

  private storedWh: number;
  private sessionWh = 0;
  private output: EvseOutput = { presentVoltageV: 0, presentCurrentA: 0 };
  private integratedAt: number;
  private contactorsClosed = false;
  private motion: ContactorMotion | undefined;
  private stopRequested = false;
  private pauseRequested = false;
  private errorCode: EvErrorCode = 'NO_ERROR';
  private closed = false;

  constructor(deps: SimEvDeps, options: SimEvOptionsInput = {}) {
    const o = parseSimEvOptions(options);
    this.o = o;
    this.clock = deps.clock;
    this.log = deps.log;
    this.name = o.name;
    this.ocv = ocvCurveOf(o);
    this.bulkSocPercent = o.bulkSocPercent ?? Math.max(0, o.targetSocPercent - o.taperWindowPercent);
    this.limits = Object.freeze({
      maxVoltageV: o.maxVoltageV,
      maxCurrentA: o.maxCurrentA,
      minCurrentA: o.acMinCurrentA,
      acMaxCurrentA: o.acMaxCurrentA,
      maxPowerW: o.maxPowerW,
      energyCapacityWh: o.capacityWh,
      fullSocPercent: o.targetSocPercent,
      bulkSocPercent: this.bulkSocPercent,
    });
    this.storedWh = (o.initialSocPercent / 100) * o.capacityWh;
    this.integratedAt = this.clock.now();
  }

  status(): EvStatus {
    this.integrate();
    const soc = this.socPercent;
    const batteryVoltageV = interpolate(this.ocv, soc);
    const targetVoltageV = this.targetVoltageAt(soc);
    const ready = this.errorCode === 'NO_ERROR';
    const chargingComplete = soc >= this.o.targetSocPercent;
    const charging = ready && !chargingComplete && !this.stopRequested && !this.pauseRequested;
    return {
      socPercent: soc,
      batteryVoltageV,
      targetVoltageV,
      targetCurrentA: charging ? this.demandCurrentAt(soc) : 0,
      ready,
      errorCode: this.errorCode,
      chargingComplete,
      bulkChargingComplete: soc >= this.bulkSocPercent,
      energyRequestWh: Math.max(0, ((this.o.targetSocPercent - soc) / 100) * this.o.capacityWh),
      remainingTimeToFullSocS: this.secondsToSoc(soc, this.o.targetSocPercent),
      remainingTimeToBulkSocS: this.secondsToSoc(soc, this.bulkSocPercent),
      stopRequested: this.stopRequested,
      pauseRequested: this.pauseRequested,
      contactorsClosed: this.contactorsClosed,
      energyDeliveredWh: this.sessionWh,
    };
  }

  /** Integrates what was delivered since the last report, then holds the new output until the next one. */
  reportEvseOutput(output: EvseOutput): void {
    this.integrate();
    this.output = { presentVoltageV: output.presentVoltageV, presentCurrentA: output.presentCurrentA };
  }

  setContactors(closed: boolean): Promise<void> {
    if (this.closed) return Promise.reject(new EvccError<CommonErrorCode>('ABORTED', `${this.name} is closed`));
    this.cancelMotion('superseded by a newer contactor command');
    if (closed === this.contactorsClosed) return Promise.resolve();
    if (this.o.contactorDelayMs === 0) {
      this.switchContactors(closed);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimer(() => {
        this.motion = undefined;
        this.switchContactors(closed);
        resolve();
      }, this.o.contactorDelayMs);
      this.motion = { timer, reject };
    });
  }

  beginSession(): void {
    this.integrate();
    this.sessionWh = 0;
    this.output = { presentVoltageV: 0, presentCurrentA: 0 };
    this.stopRequested = false;
    this.pauseRequested = false;
    const toGo = Math.max(0, ((this.o.targetSocPercent - this.socPercent) / 100) * this.o.capacityWh);
    this.log?.info(
      { soc: this.socPercent, targetSoc: this.o.targetSocPercent, energyRequestWh: toGo, timeScale: this.o.timeScale },
      `session begins at SoC ${this.socPercent.toFixed(1)} % (target ${this.o.targetSocPercent} %, ${(toGo / 1000).toFixed(1)} kWh to go, time scale ${this.o.timeScale})`,
    );
  }

  async close(): Promise<void> {
    this.cancelMotion(`${this.name} closed`);
    this.integrate();
    this.closed = true;
  }

  /** Bench: the driver asks to stop (the session ends with SessionStop). Cleared by `beginSession()`. */
  requestStop(): void {
    this.stopRequested = true;
    this.log?.info({ soc: this.socPercent }, 'driver requests stop');
  }

  /** Bench: the driver asks to pause (ISO 15118-2 pause / SessionStop Pause). Cleared by `resume()` or `beginSession()`. */
  requestPause(): void {
    this.pauseRequested = true;
    this.log?.info({ soc: this.socPercent }, 'driver requests pause');
  }

  resume(): void {
    this.pauseRequested = false;
    this.log?.info({ soc: this.socPercent }, 'driver resumes');
  }

  /** Bench: a vehicle fault. It outlives sessions, like a real one, until `injectError('NO_ERROR')`. */
  injectError(code: EvErrorCode): void {
    this.errorCode = code;
    if (code === 'NO_ERROR') this.log?.info('vehicle error cleared');
    else this.log?.warn({ errorCode: code }, `vehicle error ${code} injected`);
  }

  private get socPercent(): number {
    return (this.storedWh / this.o.capacityWh) * 100;
  }

  private targetVoltageAt(soc: number): number {
    return Math.min(this.o.maxVoltageV, interpolate(this.ocv, soc) + this.o.targetVoltageHeadroomV);
  }

  /** What the BMS wants at this SoC when charging: full current until the taper, then falling; always within the power limit. */
  private demandCurrentAt(soc: number): number {
    const o = this.o;
    if (soc >= o.targetSocPercent) return 0;
    const taperStart = o.targetSocPercent - o.taperWindowPercent;
    let share = 1;
    if (soc > taperStart) share = 1 - (1 - o.taperEndCurrentPercent / 100) * ((soc - taperStart) / o.taperWindowPercent);
    return Math.max(0, Math.min(o.maxCurrentA * share, o.maxPowerW / this.targetVoltageAt(soc)));
  }

  /**
   * Clock seconds from `from` to `to` % SoC if the charger delivers what the vehicle asks at the battery voltage
   * (the CC phase runs at the battery voltage, not at the target voltage).
   */
  private secondsToSoc(from: number, to: number): number {
    let seconds = 0;
    for (let soc = from; soc < to; soc += ESTIMATE_STEP_PERCENT) {
      const step = Math.min(ESTIMATE_STEP_PERCENT, to - soc);
      const mid = soc + step / 2;
      const powerW = interpolate(this.ocv, mid) * this.demandCurrentAt(mid);
      if (powerW > 0) seconds += ((step / 100) * this.o.capacityWh * 3600) / powerW; // 0 only where rounding put mid on the target
    }
    return seconds / this.o.timeScale;
  }

  /** Moves the battery to the clock's now under the held output; no current flows through open contactors. */
  private integrate(): void {
    const now = this.clock.now();
    const dtMs = now - this.integratedAt;
    this.integratedAt = now;
    if (this.closed || !this.contactorsClosed || dtMs <= 0) return;
    const before = this.storedWh;
    const socBefore = this.socPercent;
    const deliveredWh = (this.output.presentVoltageV * this.output.presentCurrentA * dtMs * this.o.timeScale) / MS_PER_HOUR;
    this.storedWh = Math.min(this.o.capacityWh, Math.max(0, this.storedWh + deliveredWh));
    this.sessionWh += this.storedWh - before;
    const soc = this.socPercent;
    if (socBefore < this.bulkSocPercent && soc >= this.bulkSocPercent) this.log?.info({ soc }, `bulk SoC ${this.bulkSocPercent} % reached`);
    if (socBefore < this.o.targetSocPercent && soc >= this.o.targetSocPercent) {
      this.log?.info({ soc, energyDeliveredWh: this.sessionWh }, `target SoC ${this.o.targetSocPercent} % reached (${soc.toFixed(1)} %): charging complete, ${(this.sessionWh / 1000).toFixed(2)} kWh delivered`);
    }
  }

  private switchContactors(closed: boolean): void {
    this.integrate(); // the energy up to this instant flowed (or not) under the old position
    this.contactorsClosed = closed;
    this.log?.info({ closed }, closed ? 'contactors closed' : 'contactors open');
  }

  private cancelMotion(why: string): void {
    if (!this.motion) return;
    this.clock.clearTimer(this.motion.timer);
    this.motion.reject(new EvccError<CommonErrorCode>('ABORTED', `contactor command ${why}`));
    this.motion = undefined;
  }
}
