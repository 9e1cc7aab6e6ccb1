import type { Clock, TimerId } from './types.ts';

interface PendingTimer {
  id: number;
  due: number;
  callback: () => void;
}

/**
 * Virtual time for tests and simulations: nothing happens until `advance()` moves time forward; timers fire in
 * due order (ties in creation order). `pending` tells a test whether anything leaked.
 */
export class VirtualClock implements Clock {
  private current: number;
  private nextId = 1;
  private timers: PendingTimer[] = [];

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(callback: () => void, delayMs: number): TimerId {
    const id = this.nextId++;
    this.timers.push({ id, due: this.current + Math.max(0, delayMs), callback });
    return id;
  }

  clearTimer(id: TimerId): void {
    this.timers = this.timers.filter((t) => t.id !== id);
  }

  sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const id = this.setTimer(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, delayMs);
      const onAbort = () => {
        this.clearTimer(id);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Number of timers still armed. */
  get pending(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      let next: PendingTimer | undefined;
      for (const t of this.timers) if (t.due <= target && (!next || t.due < next.due || (t.due === next.due && t.id < next.id))) next = t;
      if (!next) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.current = next.due;
      next.callback();
    }
    this.current = target;
  }

  /** Advances to the next due timer (if any) and fires it. Returns false when none is armed. */
  step(): boolean {
    if (this.timers.length === 0) return false;
    const due = Math.min(...this.timers.map((t) => t.due));
    this.advance(due - this.current);
    return true;
  }
}
