import { z } from 'zod';
import { EvccError } from '../core/errors.ts';

/** The runtime's log: JSON file rotation (`--log-json`) and repeat suppression for warnings and errors. */
export const LogSettings = z.strictObject({
  /** The JSON log file is rotated when it would grow past this size. */
  jsonMaxBytes: z.number().int().min(4_096).max(1 << 30).default(10 * 1024 * 1024),
  /** Rotated JSON files kept (FILE.1 … FILE.N); the cap on disk is (N + 1) × jsonMaxBytes. */
  jsonKeepFiles: z.number().int().min(0).max(100).default(5),
  /** Window of the repeat suppression (same subsystem, level and message template). */
  repeatWindowMs: z.number().int().min(100).max(3_600_000).default(10_000),
  /** Identical warnings per window that are logged; the rest are counted into one "suppressed N similar lines". */
  repeatBurst: z.number().int().min(1).max(10_000).default(5),
});
export type LogSettings = z.infer<typeof LogSettings>;

/**
 * Runtime configuration, validated by zod. Each protocol keeps its relaxations as named settings whose defaults
 * are the standard's values (see the constants file of each protocol); sections are declared next to their
 * subsystem and composed here.
 *
 * `RuntimeSettings` holds the runtime's own top-level keys. The config file also carries the sections other
 * schemas read (`slac`, `tls`, `ota`, …), so the schema alone cannot refuse unknown keys: it drops them from its
 * result (never passes them on unvalidated), and `parseRuntimeSettings` with the list of section names refuses
 * every other key, so a typo in a bench config cannot silently do nothing.
 */
export const RuntimeSettings = z.object({
  /** Vehicle identity used towards the OEM backend (topic prefix evcc/v1/<vehicleId>/…). */
  vehicleId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).default('bench-ev-1'),
  /** Persistent data (certificate store, TPM blobs, release policies). */
  dataDir: z.string().default('/var/lib/evcc'),
  /** Volatile run-time data (cached key contexts): tmpfs on the device. */
  runDir: z.string().default('/run/evcc'),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  log: LogSettings.prefault({}),
  /** Network interface of the PLC modem (SLAC raw frames, SDP, TLS). */
  plcInterface: z.string().default('eth1'),
});
export type RuntimeSettings = z.infer<typeof RuntimeSettings>;

/**
 * The runtime settings of a whole config file, strictly: a top-level key is either the runtime's own or one of
 * `sectionNames` (validated by its owner's schema), anything else is CONFIG_INVALID naming the key.
 */
export function parseRuntimeSettings(raw: unknown, sectionNames: readonly string[], where = 'config'): RuntimeSettings {
  const sections = Object.fromEntries(sectionNames.map((k) => [k, z.unknown().optional()]));
  const strict = RuntimeSettings.extend(sections).strict();
  const parsed = parseSettings(strict, raw, where) as Record<string, unknown>;
  for (const k of sectionNames) delete parsed[k];
  return parsed as RuntimeSettings;
}

/** Validates a raw config object; a subsystem validates its own section with its own schema. */
export function parseSettings<S extends z.ZodType>(schema: S, raw: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${where}${i.path.length ? '.' + i.path.join('.') : ''}: ${i.message}`);
    throw new EvccError('CONFIG_INVALID', `invalid configuration: ${issues.join('; ')}`, { issues });
  }
  return r.data;
}
