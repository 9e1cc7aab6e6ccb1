/**
 * The simulated DC power stage of the charger: present voltage and current follow what the EV asks for with a
 * linear ramp (V/s, A/s), limited by the EVSE limits, on an injected clock (virtual time in tests). The meter
 * integrates the delivered energy.
 *
 * Modes, as the SECC session drives them:
 *   off        → no output, the voltage falls with the discharge ramp (WeldingDetection watches it drop)
 *   precharge  → voltage towards EVTargetVoltage, no load current (PreCharge)
 *   demand     → voltage towards EVTargetVoltage, current towards EVTargetCurrent (CurrentDemand)
 *   hold       → output off but the voltage stays where it is (a charger whose voltage never drops)
 */
import type { Clock } from '../../hal/clock/types.ts';

export interface PowerStageLimits {
  maxVoltageV: number;
  minVoltageV: number;
  maxCurrentA: number;
  maxPowerW: number;
}

export interface PowerStageOptions {
  clock: Pick<Clock, 'now'>;
  limits: PowerStageLimits;
  /** Ramp of the voltage towards its target while the output is on (both directions). */
  voltageRampVPerS: number;
  /** Ramp of the current towards its target. */
  currentRampAPerS: number;
  /** How fast the output voltage falls once the output is off (discharge circuit). */
  dischargeVPerS: number;
}

export type PowerStageMode = 'off' | 'precharge' | 'demand' | 'hold';

export interface PowerReading {
  voltageV: number;
  currentA: number;
  /** The request was clamped by the EVSE limit (the *LimitAchieved flags of CurrentDemandRes). */
  voltageLimitAchieved: boolean;
  currentLimitAchieved: boolean;
  powerLimitAchieved: boolean;
  /** Energy delivered since the stage was created, Wh. */
  energyWh: number;
  mode: PowerStageMode;
}

export class PowerStage {
  private voltageV = 0;
  private currentA = 0;
  private targetVoltageV = 0;
  private targetCurrentA = 0;
  private energyWh = 0;
  private at: number;
  private currentMode: PowerStageMode = 'off';
  private clamped = { voltage: false, current: false, power: false };

  constructor(private readonly o: PowerStageOptions) {
    this.at = o.clock.now();
  }

  get limits(): PowerStageLimits {
    return this.o.limits;
  }

  /** PreCharge: bring the output to the EV's battery voltage, with no load current. */
  precharge(targetVoltageV: number): PowerReading {
    this.advance();
    this.currentMode = 'precharge';
    this.targetVoltageV = Math.max(0, Math.min(targetVoltageV, this.o.limits.maxVoltageV));
    this.targetCurrentA = 0;
    this.clamped = { voltage: targetVoltageV > this.o.limits.maxVoltageV, current: false, power: false };
    return this.read();
  }

  /** CurrentDemand: follow the EV's targets within the EVSE's voltage, current and power limits. */
  demand(targetVoltageV: number, targetCurrentA: number): PowerReading {
    this.advance();
    this.currentMode = 'demand';
    const l = this.o.limits;
    const voltage = Math.max(0, Math.min(targetVoltageV, l.maxVoltageV));
    let current = Math.max(0, Math.min(targetCurrentA, l.maxCurrentA));
    const powerCap = voltage > 0 ? l.maxPowerW / voltage : Infinity;
    const powerLimited = current > powerCap;
    if (powerLimited) current = powerCap;
    this.targetVoltageV = voltage;
    this.targetCurrentA = current;
    this.clamped = { voltage: targetVoltageV > l.maxVoltageV, current: targetCurrentA > l.maxCurrentA, power: powerLimited };
    return this.read();
  }

  /** Output off: the current goes to zero and the voltage discharges (or stays, with `holdVoltage`). */
  off(o: { holdVoltage?: boolean } = {}): PowerReading {
    this.advance();
    this.currentMode = o.holdVoltage ? 'hold' : 'off';
    this.targetCurrentA = 0;
    this.targetVoltageV = o.holdVoltage ? this.voltageV : 0;
    this.clamped = { voltage: false, current: false, power: false };
    return this.read();
  }

  read(): PowerReading {
    this.advance();
    return {
      voltageV: this.voltageV,
      currentA: this.currentA,
      voltageLimitAchieved: this.clamped.voltage,
      currentLimitAchieved: this.clamped.current,
      powerLimitAchieved: this.clamped.power,
      energyWh: this.energyWh,
      mode: this.currentMode,
    };
  }

  /** Moves the outputs along their ramps up to the clock's present time and meters the energy. */
  private advance(): void {
    const now = this.o.clock.now();
    const dt = Math.max(0, now - this.at) / 1000;
    this.at = now;
    if (dt === 0) return;
    const v0 = this.voltageV;
    const i0 = this.currentA;
    const falling = this.targetVoltageV < this.voltageV;
    const vRate = falling && (this.currentMode === 'off' || this.currentMode === 'hold') ? this.o.dischargeVPerS : this.o.voltageRampVPerS;
    this.voltageV = approach(this.voltageV, this.targetVoltageV, vRate * dt);
    this.currentA = approach(this.currentA, this.targetCurrentA, this.o.currentRampAPerS * dt);
    // Trapezoid over the step: exact for the linear ramps as long as neither reached its target mid-step.
    this.energyWh += (((v0 * i0) + (this.voltageV * this.currentA)) / 2) * (dt / 3600);
  }
}

function approach(from: number, to: number, maxStep: number): number {
  if (from < to) return Math.min(to, from + maxStep);
  return Math.max(to, from - maxStep);
}
