/**
 * The start-up half of the per-session capture: the key-log decision (a production config refuses it before anything
 * opens) and where folders go. Apart from bin/session-capture.ts so that deciding does not load the message-log
 * decoder (the EXI codecs) at start-up.
 */
import { join } from 'node:path';
import { keyLogDecision, type CaptureSettings, type KeyLogDecision } from '../firmware/capture/settings.ts';
import type { Runtime } from './runtime.ts';

/** Decides the key log (throws CAPTURE_KEYLOG_REFUSED) and logs the loud warning when it is on. */
export function decideKeyLog(rt: Runtime, settings: CaptureSettings, requestedBy: readonly string[]): KeyLogDecision {
  const d = keyLogDecision(settings, requestedBy);
  if (d.enabled) rt.log('TLS').warn({ cp: 'KEYLOG_ENABLED', profile: settings.profile, requestedBy }, d.warning);
  return d;
}

/** Where session folders go: config capture.dir, else `<dataDir>/sessions`. */
export function captureParentDir(rt: Runtime, settings: CaptureSettings): string {
  return settings.dir ?? join(rt.settings.dataDir, 'sessions');
}

