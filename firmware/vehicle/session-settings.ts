/**
 * Config section `session`, apart from the protocol modules it configures: the config parser (start-up) needs the
 * schema, not the session engines and EXI codecs behind firmware/vehicle/session-modules.ts (loaded at plug-in).
 */
import { z } from 'zod';
import { DEFAULT_PROTOCOL_PREFERENCES } from './policy.ts';

/** Config section `session`. The protocol modules validate their own sub-sections (`iso2`, `din`). */
export const VehicleSessionSettings = z.strictObject({
  protocols: z.strictObject({
    iso2Priority: z.number().int().min(1).max(20).default(DEFAULT_PROTOCOL_PREFERENCES.iso2Priority),
    dinPriority: z.number().int().min(1).max(20).default(DEFAULT_PROTOCOL_PREFERENCES.dinPriority),
    din: z.boolean().default(DEFAULT_PROTOCOL_PREFERENCES.din),
    eimSdpSecurity: z.enum(['tls-required', 'tls-preferred', 'no-tls']).default(DEFAULT_PROTOCOL_PREFERENCES.eimSdpSecurity),
    pncSdpSecurity: z.enum(['tls-required', 'tls-preferred']).default(DEFAULT_PROTOCOL_PREFERENCES.pncSdpSecurity),
  }).default({ ...DEFAULT_PROTOCOL_PREFERENCES }),
  /** Timer overrides by setting name (firmware/session/timers.ts, din/timers.ts): field chargers that need more. */
  timeouts: z.record(z.string(), z.number().int().min(1).max(600_000)).default({}),
  iso2: z.record(z.string(), z.unknown()).default({}),
  din: z.record(z.string(), z.unknown()).default({}),
});
export type VehicleSessionSettings = z.infer<typeof VehicleSessionSettings>;
