import { readFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { createWriteStream, type WriteStream } from 'node:fs';
import { EvccError } from '../core/errors.ts';
import { formatBenchLine } from '../firmware/log/bench-format.ts';
import { createLogger, forSubsystem, type Logger, type Subsystem } from '../core/logger.ts';
import { parseSettings, RuntimeSettings } from '../firmware/settings.ts';
import { SystemClock } from '../hal/clock/system.ts';
import type { Clock } from '../hal/clock/types.ts';

/**
 * The composition root's shared part: config, logger, clock. Every `bin/commands/*` builds its object graph from
 * this, choosing real or simulated HAL implementations — the only place where concrete drivers are wired.
 */
export interface Runtime {
  settings: RuntimeSettings;
  /** The raw config object, for subsystems that validate their own section. */
  rawConfig: Record<string, unknown>;
  root: Logger;
  log(sub: Subsystem): Logger;
  clock: Clock;
  close(): Promise<void>;
}

export interface GlobalOptions {
  config?: string;
  logLevel?: string;
  logJson?: string;
  logFields?: boolean;
}

export async function loadConfig(path: string | undefined): Promise<Record<string, unknown>> {
  if (!path) return {};
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', `cannot read config ${path}`, { path }, { cause: err });
  }
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', `config ${path} is not a JSON object`, { path }, { cause: err });
  }
}

/** Bench renderer: human lines on stderr, and the JSON records themselves to an optional file. */
class BenchDestination extends Writable {
  constructor(private readonly jsonOut: WriteStream | undefined, private readonly fields: boolean) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    const text = chunk.toString('utf8');
    this.jsonOut?.write(text);
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        process.stderr.write(`${formatBenchLine(JSON.parse(line) as Record<string, unknown>, this.fields)}\n`);
      } catch {
        process.stderr.write(`${line}\n`);
      }
    }
    done();
  }
}

export async function createRuntime(opts: GlobalOptions, overrides: Record<string, unknown> = {}): Promise<Runtime> {
  const rawConfig = { ...(await loadConfig(opts.config)), ...overrides };
  if (opts.logLevel) rawConfig.logLevel = opts.logLevel;
  const settings = parseSettings(RuntimeSettings, rawConfig, 'config');
  const jsonOut = opts.logJson ? createWriteStream(opts.logJson, { flags: 'a', mode: 0o600 }) : undefined;
  const destination = new BenchDestination(jsonOut, opts.logFields ?? true);
  const root = createLogger({ level: settings.logLevel, destination });
  return {
    settings,
    rawConfig,
    root,
    log: (sub) => forSubsystem(root, sub),
    clock: new SystemClock(),
    async close() {
      root.flush();
      await new Promise<void>((r) => setImmediate(r));
      await new Promise<void>((r) => (jsonOut ? jsonOut.end(r) : r()));
    },
  };
}
