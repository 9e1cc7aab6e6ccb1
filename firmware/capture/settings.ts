/**
 * Per-session capture (config section `capture`): one folder per session with the pcapng of the PLC interface, the
 * decoded message log, the bench log, the session report and — bench only — the TLS key log.
 *
 * The key log holds the session secrets: whoever reads it decrypts the session (the contract certificate, the
 * eMAID, the signed AuthorizationReq). So it is a bench feature: a config states what it is for (`profile`,
 * default 'production'), and a production config that asks for a key log by any route (capture.tlsKeyLog,
 * tls.keyLogFile, --keylog) is refused with CAPTURE_KEYLOG_REFUSED unless it also says
 * `allowKeyLogInProduction: true`. Every enabled key log is announced with a WARN line (KEYLOG_ENABLED).
 */
import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';

export const CaptureSettings = z.strictObject({
  /** Writes a session folder per session (`evcc run`, `evcc charge`; the bench always does). */
  enabled: z.boolean().default(false),
  /** Parent of the session folders; default `<dataDir>/sessions`. */
  dir: z.string().min(1).optional(),
  /** What this config is for: only a 'bench' config writes a TLS key log just by asking. */
  profile: z.enum(['production', 'bench']).default('production'),
  /** Write `keys.log` (NSS key log format) into the session folder. */
  tlsKeyLog: z.boolean().default(false),
  /** The explicit enable a production config needs for any key log (session secrets on disk). */
  allowKeyLogInProduction: z.boolean().default(false),
  /** Session folders kept under `dir` (oldest removed at the start of a new one). */
  keepSessions: z.number().int().min(1).max(10_000).default(50),
});
export type CaptureSettings = z.infer<typeof CaptureSettings>;

export type KeyLogDecision = { enabled: false } | { enabled: true; warning: string };

/**
 * Whether a TLS key log may be written. `requestedBy` names every route that asked for one (config keys, CLI
 * flags); empty: none asked. Throws CAPTURE_KEYLOG_REFUSED for a production config without the explicit enable.
 */
export function keyLogDecision(s: Pick<CaptureSettings, 'profile' | 'allowKeyLogInProduction'>, requestedBy: readonly string[]): KeyLogDecision {
  if (requestedBy.length === 0) return { enabled: false };
  const routes = requestedBy.join(', ');
  if (s.profile === 'production' && !s.allowKeyLogInProduction) {
    throw new EvccError('CAPTURE_KEYLOG_REFUSED', `TLS key log refused (asked by ${routes}): this is a production config (capture.profile), and a key log writes the session secrets to disk; a bench config sets capture.profile "bench", a production config that really wants it sets capture.allowKeyLogInProduction true`, { requestedBy: [...requestedBy], profile: s.profile });
  }
  const where = s.profile === 'production' ? 'PRODUCTION config with allowKeyLogInProduction' : 'bench config';
  return { enabled: true, warning: `TLS KEY LOG ENABLED (${where}; asked by ${routes}): every session secret is written to disk — whoever reads it decrypts the sessions` };
}
