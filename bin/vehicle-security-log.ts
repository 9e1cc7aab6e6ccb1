import type { Logger } from '../core/logger.ts';
import { mqttSecurityLogBackend } from '../firmware/log/mqtt-upload.ts';
import type { SecurityLog } from '../firmware/log/security-log.ts';
import { uploadSecurityLog } from '../firmware/log/upload.ts';
import { SecurityLogUploads, type SecurityLogUploadsOptions } from '../firmware/log/upload-schedule.ts';
import type { OtaLink } from '../firmware/ota/link.ts';
import type { Clock } from '../hal/clock/types.ts';

/**
 * Composition of the security-log upload on the OEM link (`evcc run`, `evcc charge`): the schedule of
 * firmware/log/upload-schedule.ts driving uploadSecurityLog over the link's MQTT client. Started whenever the link
 * is, in every key state: a degraded vehicle's unsigned checkpoints are what the backend most needs to see.
 * Returns the stop (timers, listener, the RPC's reply handler).
 */
/** Time a stopping service gives its last upload (systemd's stop timeout is far longer). */
export const STOP_FLUSH_MS = 3_000;

export function startVehicleSecurityLogUploads(o: {
  link: OtaLink; vehicleId: string; securityLog: SecurityLog; clock: Clock; log: Logger; timeoutMs?: number;
  /** The service's stop checkpoint: written, then uploaded (at most STOP_FLUSH_MS) while the link is still up. */
  finalCheckpoint?: () => Promise<unknown>;
} & SecurityLogUploadsOptions): () => Promise<void> {
  const backend = mqttSecurityLogBackend({ client: o.link.client, vehicleId: o.vehicleId, clock: o.clock, log: o.log, ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) });
  const uploads = new SecurityLogUploads(
    { upload: () => uploadSecurityLog(o.securityLog, backend), securityLog: o.securityLog, link: o.link.client, clock: o.clock, log: o.log },
    { ...(o.intervalMs !== undefined ? { intervalMs: o.intervalMs } : {}), ...(o.watchMs !== undefined ? { watchMs: o.watchMs } : {}) },
  );
  uploads.start();
  return async () => {
    if (o.finalCheckpoint) {
      await o.finalCheckpoint().catch(() => undefined);
      await uploads.flush(STOP_FLUSH_MS);
    }
    await uploads.stop();
    backend.close();
  };
}
