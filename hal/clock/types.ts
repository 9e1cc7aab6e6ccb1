/**
 * Injectable time. Protocol engines never read the wall clock: they get `now` as input and return their next
 * deadline; the drivers that run them use a Clock so the same code runs in virtual time in unit tests.
 */
export type TimerId = { readonly __timer: unique symbol } | number | object;

export interface Clock {
  /** Milliseconds, monotonic within one process. */
  now(): number;
  setTimer(callback: () => void, delayMs: number): TimerId;
  clearTimer(id: TimerId): void;
  /** Resolves after `delayMs`; rejects with the signal's reason when aborted. */
  sleep(delayMs: number, signal?: AbortSignal): Promise<void>;
}
