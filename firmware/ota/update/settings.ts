import { z } from 'zod';
import { OTA_MAX_BUNDLE_BYTES } from './download.ts';

/**
 * The `update` section of the vehicle config: OTA software updates run by `evcc run` (issue #10; ARCHITECTURE.md
 * §4). Off unless configured: it needs RAUC's service on the system bus and the OEM link. The OEM job key is the
 * backend key the vehicle already trusts (TPM-tagged, firmware/ota/backend-key.ts), never a config file.
 */
export const UpdateSettings = z.strictObject({
  enabled: z.boolean().default(false),
  /** D-Bus address of RAUC's bus; `system`: the system bus (DBUS_SYSTEM_BUS_ADDRESS or /var/run/dbus/system_bus_socket). */
  raucBus: z.string().min(1).default('system'),
  /** RAUC compatible string of this system; default: what `rauc service` reports (its system.conf). */
  compatible: z.string().min(1).max(256).optional(),
  /** CA of the OEM bundle server (PEM file); default: ota.caFile, the OEM link's CA. */
  bundleCaFile: z.string().min(1).optional(),
  /** Cap on one bundle on top of the signed job's own size. */
  maxBundleBytes: z.number().int().min(1024).max(16 * 1024 ** 3).default(OTA_MAX_BUNDLE_BYTES),
  /** Ask the backend for jobs this often (besides at start and on every jobs/notify). */
  pollIntervalMs: z.number().int().min(60_000).max(7 * 24 * 3600_000).default(6 * 3600_000),
  /** First retry after a pass that failed on the way (backend silent, connection lost); doubles up to pollIntervalMs. */
  retryDelayMs: z.number().int().min(1_000).max(24 * 3600_000).default(60_000),
  /**
   * The reboot into the new slot (argv, no shell). Default: none — the runtime writes its request to the run dir and
   * the root unit evcc-reboot.path/.service reboots (no privilege in the runtime). Either way only while no session
   * charges.
   */
  rebootCommand: z.array(z.string().min(1)).min(1).optional(),
});
export type UpdateSettings = z.infer<typeof UpdateSettings>;
