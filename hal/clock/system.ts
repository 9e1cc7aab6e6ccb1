import { performance } from 'node:perf_hooks';
import type { Clock, TimerId } from './types.ts';

/** The real clock: performance.now() (monotonic) and Node timers. */
export class SystemClock implements Clock {
  now(): number {
    return performance.now();
  }
  setTimer(callback: () => void, delayMs: number): TimerId {
    return setTimeout(callback, Math.max(0, delayMs));
  }
  clearTimer(id: TimerId): void {
    clearTimeout(id as NodeJS.Timeout);
  }
  sleep(delayMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, delayMs));
      const onAbort = () => {
        clearTimeout(t);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
