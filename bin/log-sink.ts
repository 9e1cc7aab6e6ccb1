import { closeSync, constants, fstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { DestinationStream } from 'pino';
import { messageTemplate, OVERFLOW_KEY_SUFFIX, RepeatLimiter, type SuppressedSummary } from '../core/rate-limit.ts';
import { formatBenchLine } from '../firmware/log/bench-format.ts';

/**
 * Where the runtime's log records go: the bench line on stderr and, with `--log-json FILE`, the JSON record in a
 * size-capped, rotated file. Logging never takes the runtime down: a failing JSON file is dropped with one warning,
 * a broken stderr is ignored, and repeated warnings are suppressed (counted, then summarised in one line).
 *
 * Rotation is done here by hand rather than with a transport (pino-roll, rotating-file-stream): those write
 * asynchronously (pino-roll in a worker thread), so a write error surfaces as an event after the fact; a
 * synchronous append on one fd makes every failure an exception at the call that caused it, and the whole
 * policy (rename `FILE` → `FILE.1` … `FILE.N`) is a few lines.
 */
export interface JsonLogRotation {
  /** Size at which `FILE` is rotated. */
  maxBytes: number;
  /** Rotated files kept (`FILE.1` newest … `FILE.N`); 0 = `FILE` is truncated instead. */
  keepFiles: number;
}

export interface RepeatSuppression {
  windowMs: number;
  /** Lines per subsystem, level and message template that pass in one window. */
  burst: number;
}

/** An append-only file with size-based rotation; every write is synchronous so its failure is ours to handle. */
export class RotatingFile {
  private fd: number | undefined;
  private size = 0;
  private regular = true;
  /** Lines dropped because the reader of a pipe/FIFO was not ready (EAGAIN). */
  dropped = 0;

  private constructor(readonly path: string, private readonly rotation: JsonLogRotation) {}

  /** Opens (creates, 0600) `path` for appending; throws the system error when it cannot. */
  static open(path: string, rotation: JsonLogRotation): RotatingFile {
    const f = new RotatingFile(path, rotation);
    f.reopen();
    return f;
  }

  private reopen(): void {
    // O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of blocking the event loop forever.
    const fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK, 0o600);
    try {
      const st = fstatSync(fd);
      this.regular = st.isFile();
      this.size = this.regular ? st.size : 0;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    this.fd = fd;
  }

  /** Appends `text`; throws the system error when the write fails (the caller drops the sink). */
  write(text: string): void {
    if (this.fd === undefined) return;
    const bytes = Buffer.from(text, 'utf8');
    if (this.regular && this.size > 0 && this.size + bytes.length > this.rotation.maxBytes) this.rotate();
    let off = 0;
    while (off < bytes.length) {
      try {
        off += writeSync(this.fd, bytes, off, bytes.length - off);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          this.dropped++;
          return;
        }
        throw err;
      }
    }
    this.size += bytes.length;
  }

  private rotate(): void {
    this.closeFd();
    const { keepFiles } = this.rotation;
    if (keepFiles === 0) {
      rmSync(this.path, { force: true });
    } else {
      // rename() replaces its target atomically: FILE.N-1 → FILE.N drops the oldest.
      for (let i = keepFiles - 1; i >= 1; i--) {
        try {
          renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      renameSync(this.path, `${this.path}.1`);
    }
    this.reopen();
  }

  private closeFd(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) closeSync(fd);
  }

  close(): void {
    try {
      this.closeFd();
    } catch {
      // closing a file we only appended to: nothing left to save
    }
  }
}

export interface BenchLogDestinationOptions {
  /** Bench lines with structured key=value fields. */
  fields: boolean;
  jsonFile?: { path: string; rotation: JsonLogRotation };
  suppression: RepeatSuppression;
  /** Where the bench lines go (process.stderr). */
  stderr?: { write(text: string): unknown };
  now?: () => number;
}

const WARN_LEVEL = 40;
const LEVEL_VALUES: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

function levelValue(level: unknown): number {
  if (typeof level === 'number') return level;
  return LEVEL_VALUES[String(level)] ?? 0;
}

let stderrBroken = false;
let stderrGuarded = false;
/** An EPIPE on stderr (the reader went away) is an 'error' event; without a listener it would kill the process. */
function guardStderr(): void {
  if (stderrGuarded) return;
  stderrGuarded = true;
  process.stderr.on('error', () => {
    stderrBroken = true;
  });
}

/** pino destination (synchronous `write` per record): renders, suppresses repeats, fans out to the sinks. */
export class BenchLogDestination implements DestinationStream {
  private json: RotatingFile | undefined;
  private readonly limiter: RepeatLimiter;
  private readonly now: () => number;
  private readonly stderr: { write(text: string): unknown };
  private summaryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly taps = new Set<(jsonLine: string) => void>();

  constructor(private readonly o: BenchLogDestinationOptions) {
    this.now = o.now ?? Date.now;
    this.limiter = new RepeatLimiter({ windowMs: o.suppression.windowMs, burst: o.suppression.burst });
    if (!o.stderr) guardStderr();
    this.stderr = o.stderr ?? { write: (t: string) => (stderrBroken ? undefined : process.stderr.write(t)) };
    if (o.jsonFile) {
      try {
        this.json = RotatingFile.open(o.jsonFile.path, o.jsonFile.rotation);
      } catch (err) {
        this.jsonFailed(err);
      }
    }
  }

  /**
   * Every record that is output (after repeat suppression), as its JSON line: the per-session bench log
   * (hal/capture) and the live dashboard subscribe here. A throwing tap is dropped, never the runtime.
   */
  addTap(listener: (jsonLine: string) => void): () => void {
    this.taps.add(listener);
    return () => this.taps.delete(listener);
  }

  /** True while the JSON file sink is in use. */
  get jsonActive(): boolean {
    return this.json !== undefined;
  }

  write(chunk: string): void {
    for (const line of chunk.split('\n')) {
      if (line) this.record(line);
    }
  }

  private record(line: string): void {
    let rec: Record<string, unknown> | undefined;
    try {
      const v: unknown = JSON.parse(line);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) rec = v as Record<string, unknown>;
    } catch {
      rec = undefined;
    }
    if (rec && levelValue(rec.level) >= WARN_LEVEL && !this.closed) {
      const group = `${String(rec.level)}\u0000${String(rec.sub ?? '')}`;
      const { pass, ended } = this.limiter.hit(group, messageTemplate(String(rec.msg ?? '')), this.now(), rec);
      for (const s of ended) this.summary(s);
      if (!pass) {
        this.armSummaryTimer();
        return;
      }
    }
    this.output(line, rec);
  }

  private output(jsonLine: string, rec: Record<string, unknown> | undefined): void {
    let text: string;
    try {
      text = rec ? formatBenchLine(rec, this.o.fields) : jsonLine;
    } catch {
      text = jsonLine;
    }
    this.stderrLine(text);
    for (const tap of this.taps) {
      try {
        tap(jsonLine);
      } catch {
        this.taps.delete(tap);
      }
    }
    if (this.json) {
      try {
        this.json.write(`${jsonLine}\n`);
      } catch (err) {
        this.jsonFailed(err);
      }
    }
  }

  private stderrLine(text: string): void {
    try {
      this.stderr.write(`${text}\n`);
    } catch {
      // stderr closed under us: the bench line is lost, the runtime goes on
    }
  }

  /** Drops the JSON file sink after its first failure, with one warning on stderr; the runtime keeps running. */
  private jsonFailed(err: unknown): void {
    const path = this.o.jsonFile?.path ?? '';
    this.json?.close();
    this.json = undefined;
    const e = err as NodeJS.ErrnoException;
    const rec = {
      level: 'warn', time: this.now(), sub: 'EVCC', msg: `JSON log ${path} disabled: ${e.code ?? 'error'} (${e.message ?? String(err)}); bench log on stderr continues`,
      file: path, code: e.code,
    };
    this.stderrLine(formatBenchLine(rec, this.o.fields));
  }

  private summary(s: SuppressedSummary): void {
    const sample = (s.sample ?? {}) as Record<string, unknown>;
    const overflow = s.key.endsWith(OVERFLOW_KEY_SUFFIX);
    const rec: Record<string, unknown> = {
      level: sample.level ?? 'warn',
      time: this.now(),
      ...(sample.sub !== undefined ? { sub: sample.sub } : {}),
      msg: overflow
        ? `suppressed ${s.suppressed} lines (too many different messages)`
        : `suppressed ${s.suppressed} similar lines: ${String(sample.msg ?? '')}`,
      suppressed: s.suppressed,
      sinceMs: this.now() - s.windowStart,
    };
    this.output(JSON.stringify(rec), rec);
  }

  private armSummaryTimer(): void {
    if (this.summaryTimer) return;
    this.summaryTimer = setTimeout(() => {
      this.summaryTimer = undefined;
      for (const s of this.limiter.expire(this.now())) this.summary(s);
      if (this.limiter.pending) this.armSummaryTimer();
    }, this.o.suppression.windowMs);
    this.summaryTimer.unref();
  }

  /** Writes the summaries still pending and closes the JSON file. */
  close(): void {
    if (this.closed) return;
    if (this.summaryTimer) clearTimeout(this.summaryTimer);
    this.summaryTimer = undefined;
    for (const s of this.limiter.flush()) this.summary(s);
    this.closed = true;
    this.json?.close();
    this.json = undefined;
  }
}
