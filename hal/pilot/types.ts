/**
 * Control pilot as IEC 61851-1 defines it: the charger's PWM on CP and the vehicle's state (A…F). A duty cycle of
 * 5 % in state B/C means "high-level communication required" — the trigger for SLAC [V2G3-A09-xx, IEC 61851-1 A.5].
 */
export type PilotState = 'A' | 'B' | 'C' | 'D' | 'E' | 'F';

export interface PilotReading {
  state: PilotState;
  /** PWM duty cycle in percent (0 when no PWM, 100 for constant +12 V). */
  dutyPercent: number;
}

export interface PilotBoard {
  readonly name: string;
  read(): PilotReading;
  /** Called on every change of state or duty. Returns the unsubscribe function. */
  onChange(listener: (reading: PilotReading) => void): () => void;
  /** EV side switches S2 (state B ↔ C) when it is ready to draw power. */
  setChargeRequest(closed: boolean): Promise<void>;
  close(): Promise<void>;
}

/** High-level communication requested by the charger: state B/C with 5 % duty (tolerance per IEC 61851-1 ±1 %). */
export function requestsHighLevelCommunication(r: PilotReading): boolean {
  return (r.state === 'B' || r.state === 'C') && r.dutyPercent >= 4 && r.dutyPercent <= 6;
}
