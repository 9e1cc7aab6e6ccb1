import { z } from 'zod';
import { parseSettings } from '../settings.ts';

/**
 * Config section `dashboard`: the live bench dashboard (deploy/dashboard). Off unless configured; bound to the
 * loopback address by default (another address exposes the bench screen to that network: said in the log).
 */
export const DashboardSettings = z.strictObject({
  enabled: z.boolean().default(false),
  host: z.string().min(1).default('127.0.0.1'),
  /** 0: a free port (printed in the log). */
  port: z.number().int().min(0).max(65_535).default(8915),
  /** Where the per-start Start/Stop token is written (mode 0600); default: `<runDir>/dashboard.token`. */
  tokenFile: z.string().min(1).optional(),
});
export type DashboardSettings = z.infer<typeof DashboardSettings>;

/** Config section `dashboard` (with a `--dashboard <port>` override). */
export function dashboardSettings(raw: Record<string, unknown>, port?: number): DashboardSettings {
  return parseSettings(DashboardSettings, { ...((raw.dashboard as object | undefined) ?? {}), ...(port !== undefined ? { port } : {}) }, 'dashboard');
}
