import { z } from 'zod';
import { EvccError } from '../core/errors.ts';

/**
 * Runtime configuration, validated by zod. Each protocol keeps its relaxations as named settings whose defaults
 * are the standard's values (see the constants file of each protocol); sections are declared next to their
 * subsystem and composed here. Unknown keys are refused so a typo in a bench config cannot silently do nothing.
 */
export const RuntimeSettings = z
  .object({
    /** Vehicle identity used towards the OEM backend (topic prefix evcc/v1/<vehicleId>/…). */
    vehicleId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).default('bench-ev-1'),
    /** Persistent data (certificate store, TPM blobs, release policies). */
    dataDir: z.string().default('/var/lib/evcc'),
    /** Volatile run-time data (cached key contexts): tmpfs on the device. */
    runDir: z.string().default('/run/evcc'),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    /** Network interface of the PLC modem (SLAC raw frames, SDP, TLS). */
    plcInterface: z.string().default('eth1'),
  })
  .catchall(z.unknown());
export type RuntimeSettings = z.infer<typeof RuntimeSettings>;

/** Validates a raw config object; a subsystem validates its own section with its own schema. */
export function parseSettings<S extends z.ZodType>(schema: S, raw: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${where}${i.path.length ? '.' + i.path.join('.') : ''}: ${i.message}`);
    throw new EvccError('CONFIG_INVALID', `invalid configuration: ${issues.join('; ')}`, { issues });
  }
  return r.data;
}
