import type { PilotBoard, PilotReading } from './types.ts';

/** A simulated pilot: the bench (or test) plugs in and sets the duty cycle; the EV side's S2 is recorded. */
export class SimPilot implements PilotBoard {
  readonly name = 'sim-pilot';
  private reading: PilotReading = { state: 'A', dutyPercent: 0 };
  private listeners = new Set<(r: PilotReading) => void>();
  chargeRequest = false;

  read(): PilotReading {
    return { ...this.reading };
  }
  onChange(listener: (r: PilotReading) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async setChargeRequest(closed: boolean): Promise<void> {
    this.chargeRequest = closed;
    if (this.reading.state === 'B' || this.reading.state === 'C') this.set({ ...this.reading, state: closed ? 'C' : 'B' });
  }
  /** Bench side: plug in with the given duty (5 % = ISO 15118 high-level communication). */
  plugIn(dutyPercent = 5): void {
    this.set({ state: this.chargeRequest ? 'C' : 'B', dutyPercent });
  }
  unplug(): void {
    this.set({ state: 'A', dutyPercent: 0 });
  }
  async close(): Promise<void> {
    this.listeners.clear();
  }
  private set(r: PilotReading): void {
    this.reading = r;
    for (const l of this.listeners) l({ ...r });
  }
}
