/**
 * The vehicle side of a charging session: what the EVCC must know of the battery and the drive train to fill its
 * requests, and what it commands back (contactors). Implementations: `sim.ts` (a battery model for the bench and
 * tests) and, on a real vehicle, a CAN- or serial-backed port to the battery management system.
 *
 * Units are SI (V, A, W, Wh, s, %); the session layer converts to the protocols' PhysicalValue form. The session
 * never requests more than these limits (ISO 15118-2 [V2G2-xxx] leaves the EV responsible for its own limits).
 */
export interface EvLimits {
  /** DC: EVMaximumVoltageLimit / AC: EVMaxVoltage. */
  maxVoltageV: number;
  /** DC: EVMaximumCurrentLimit / AC: EVMaxCurrent (per phase). */
  maxCurrentA: number;
  /** AC: EVMinCurrent (per phase). */
  minCurrentA: number;
  /**
   * AC: EVMaxCurrent (per phase) of a vehicle whose AC limit differs from its DC one (most vehicles charge both
   * ways: 16 A per phase on AC, hundreds of amperes on DC). Absent: `maxCurrentA` applies to AC too.
   */
  acMaxCurrentA?: number;
  /** DC: EVMaximumPowerLimit. */
  maxPowerW: number;
  /** Usable battery capacity (DC: EVEnergyCapacity). */
  energyCapacityWh: number;
  /** SoC at which the EV considers itself full (DC: FullSOC) and bulk charging complete (BulkSOC). */
  fullSocPercent: number;
  bulkSocPercent: number;
}

export type EvErrorCode =
  | 'NO_ERROR'
  | 'FAILED_RESSTemperatureInhibit'
  | 'FAILED_EVShiftPosition'
  | 'FAILED_ChargerConnectorLockFault'
  | 'FAILED_EVRESSMalfunction'
  | 'FAILED_ChargingCurrentdifferential'
  | 'FAILED_ChargingVoltageOutOfRange'
  | 'FAILED_ChargingSystemIncompatibility'
  | 'NoData';

/** A consistent snapshot of the vehicle at one instant (read synchronously by the session driver). */
export interface EvStatus {
  socPercent: number;
  /** Present battery (RESS) voltage: PreCharge targets it. */
  batteryVoltageV: number;
  /** What the BMS asks for now (DC CurrentDemand: EVTargetVoltage / EVTargetCurrent), within the limits. */
  targetVoltageV: number;
  targetCurrentA: number;
  /** The EV is ready to charge (EVReady). */
  ready: boolean;
  errorCode: EvErrorCode;
  /** Target SoC reached (ChargingComplete) / bulk SoC reached (BulkChargingComplete). */
  chargingComplete: boolean;
  bulkChargingComplete: boolean;
  /** Energy still wanted to the target SoC (AC EAmount, DC energy request), Wh. */
  energyRequestWh: number;
  remainingTimeToFullSocS?: number;
  remainingTimeToBulkSocS?: number;
  /** The driver (or the vehicle) asks to stop / to pause the session. */
  stopRequested: boolean;
  pauseRequested: boolean;
  /** Contactors between the inlet and the battery. */
  contactorsClosed: boolean;
  /** Energy delivered to the battery in this session so far, Wh. */
  energyDeliveredWh: number;
}

/** What the charger is delivering, as the session learns it from the SECC's answers. */
export interface EvseOutput {
  presentVoltageV: number;
  presentCurrentA: number;
}

export interface EvPort {
  readonly name: string;
  readonly limits: EvLimits;
  status(): EvStatus;
  /** The session tells the vehicle what the charger delivers now (the battery model integrates it; a BMS logs it). */
  reportEvseOutput(output: EvseOutput): void;
  /** Closes or opens the contactors; resolves when they report the new position. */
  setContactors(closed: boolean): Promise<void>;
  /** A fresh session starts (resets per-session counters such as energyDeliveredWh). */
  beginSession(): void;
  close(): Promise<void>;
}
