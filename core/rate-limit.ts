/**
 * Repeat suppression for log lines (and anything else that must not flood): per key, the first `burst` events of a
 * window pass, the rest are counted; when the window is over the caller gets one summary per key that had
 * suppressed events. Pure: the caller passes the time, so a test (or a virtual clock) drives the windows.
 *
 * Memory is bounded: at most `maxKeys` keys are tracked; events of further keys share one overflow key per `group`
 * (e.g. level + subsystem), so a flood of ever-different lines is bounded too.
 */
export interface RepeatLimiterOptions {
  windowMs: number;
  /** Events per key and window that pass. */
  burst: number;
  maxKeys?: number;
}

export interface SuppressedSummary {
  key: string;
  /** What the caller attached to the key's first event of the window (e.g. the record to summarise). */
  sample: unknown;
  suppressed: number;
  windowStart: number;
}

interface KeyWindow {
  start: number;
  seen: number;
  sample: unknown;
}

export const OVERFLOW_KEY_SUFFIX = '\u0000overflow';

export class RepeatLimiter {
  private readonly windows = new Map<string, KeyWindow>();
  private readonly maxKeys: number;

  constructor(private readonly o: RepeatLimiterOptions) {
    if (!(o.windowMs > 0) || !(o.burst >= 1)) throw new RangeError('RepeatLimiter needs windowMs > 0 and burst >= 1');
    this.maxKeys = o.maxKeys ?? 1024;
  }

  /**
   * Counts one event at `now`. Returns whether it passes and the summaries of windows that ended (emit those
   * first: they describe earlier events).
   */
  hit(group: string, key: string, now: number, sample?: unknown): { pass: boolean; ended: SuppressedSummary[] } {
    const ended = this.expire(now);
    let k = `${group}\u0000${key}`;
    if (!this.windows.has(k) && this.windows.size >= this.maxKeys) k = `${group}${OVERFLOW_KEY_SUFFIX}`;
    let w = this.windows.get(k);
    if (!w) {
      w = { start: now, seen: 0, sample };
      this.windows.set(k, w);
    }
    w.seen++;
    return { pass: w.seen <= this.o.burst, ended };
  }

  /** Ends every window older than `windowMs` at `now`; returns the summaries of those that suppressed something. */
  expire(now: number): SuppressedSummary[] {
    const out: SuppressedSummary[] = [];
    for (const [k, w] of this.windows) {
      if (now - w.start < this.o.windowMs) continue;
      this.windows.delete(k);
      if (w.seen > this.o.burst) out.push({ key: k, sample: w.sample, suppressed: w.seen - this.o.burst, windowStart: w.start });
    }
    return out;
  }

  /** Ends every window now (shutdown): the summaries of everything still counted. */
  flush(): SuppressedSummary[] {
    const out: SuppressedSummary[] = [];
    for (const [k, w] of this.windows) {
      if (w.seen > this.o.burst) out.push({ key: k, sample: w.sample, suppressed: w.seen - this.o.burst, windowStart: w.start });
    }
    this.windows.clear();
    return out;
  }

  /** Windows that currently hold suppressed events (to arm a timer for their summaries). */
  get pending(): number {
    let n = 0;
    for (const w of this.windows.values()) if (w.seen > this.o.burst) n++;
    return n;
  }

  get trackedKeys(): number {
    return this.windows.size;
  }
}

/**
 * The template of a log message: numbers and long hex runs replaced, so "payload of 70012 bytes" and
 * "payload of 81 bytes" count as the same line.
 */
export function messageTemplate(msg: string): string {
  return msg.replace(/\b[0-9a-f]{8,}\b/gi, '<hex>').replace(/\d+(\.\d+)?/g, '#');
}
