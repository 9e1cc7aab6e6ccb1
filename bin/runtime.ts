import { readFile } from 'node:fs/promises';
import { EvccError } from '../core/errors.ts';
import { createLogger, forSubsystem, type Logger, type Subsystem } from '../core/logger.ts';
import { parseRuntimeSettings, RuntimeSettings } from '../firmware/settings.ts';
import { SystemClock } from '../hal/clock/system.ts';
import type { Clock } from '../hal/clock/types.ts';
import { BenchLogDestination } from './log-sink.ts';

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
  /** Subscribes to every log record as it is output (JSON line); returns the unsubscribe function. */
  onLogLine(listener: (jsonLine: string) => void): () => void;
  close(): Promise<void>;
}

export interface GlobalOptions {
  config?: string;
  logLevel?: string;
  logJson?: string;
  logFields?: boolean;
  debug?: boolean;
}

/**
 * The sections of the config file (/etc/evcc/evcc.json) besides the runtime's own keys, each validated by its
 * owner: firmware/vehicle/config.ts (FIRMWARE_CONFIG_SECTIONS) and the HAL parts of bin/commands/charge.ts
 * (HAL_CONFIG_SECTIONS). Listed by name so that every command starts without loading those schemas; runtime.test.ts
 * checks that the list matches them.
 */
export const CONFIG_SECTION_NAMES = ['slac', 'sdp', 'tls', 'ota', 'tpm', 'session', 'capture', 'dashboard', 'update', 'pilot', 'ev'] as const;

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

export async function createRuntime(opts: GlobalOptions, overrides: Record<string, unknown> = {}): Promise<Runtime> {
  const rawConfig = { ...(await loadConfig(opts.config)), ...overrides };
  if (opts.logLevel) rawConfig.logLevel = opts.logLevel;
  const settings = parseRuntimeSettings(rawConfig, CONFIG_SECTION_NAMES, 'config');
  const destination = new BenchLogDestination({
    fields: opts.logFields ?? true,
    ...(opts.logJson ? { jsonFile: { path: opts.logJson, rotation: { maxBytes: settings.log.jsonMaxBytes, keepFiles: settings.log.jsonKeepFiles } } } : {}),
    suppression: { windowMs: settings.log.repeatWindowMs, burst: settings.log.repeatBurst },
  });
  const root = createLogger({ level: settings.logLevel, destination });
  return {
    settings,
    rawConfig,
    root,
    log: (sub) => forSubsystem(root, sub),
    clock: new SystemClock(),
    onLogLine: (listener) => destination.addTap(listener),
    async close() {
      root.flush();
      await new Promise<void>((r) => setImmediate(r));
      destination.close();
    },
  };
}
