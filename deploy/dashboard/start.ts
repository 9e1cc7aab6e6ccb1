/**
 * Brings the dashboard up for a composition root (`evcc bench-session --dashboard`, `evcc run` with config
 * `dashboard.enabled`): a fresh random token per start, written with mode 0600 (and, on an interactive bench,
 * printed in the log), the server on the configured address, one log line with the URL.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { DashboardSettings } from '../../firmware/dashboard/settings.ts';
import { SessionControl, type SessionRunner } from './control.ts';
import { DashboardHub } from './hub.ts';
import { startDashboardServer } from './server.ts';

export interface RunningDashboard {
  hub: DashboardHub;
  control: SessionControl;
  url: string;
  port: number;
  token: string;
  tokenFile: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export async function startDashboard(o: {
  settings: Pick<DashboardSettings, 'host' | 'port'>;
  tokenFile: string;
  runner: SessionRunner;
  /** false: sessions start on plug-in (service with a pilot board); Start is refused with `whyNotStartable`. */
  startable: boolean;
  whyNotStartable?: string;
  /** Print the token itself in the log (interactive bench); otherwise only the token file is named. */
  printToken: boolean;
  log: Logger;
  hub?: DashboardHub;
}): Promise<RunningDashboard> {
  const hub = o.hub ?? new DashboardHub();
  const control = new SessionControl(o.runner, { startable: o.startable, ...(o.whyNotStartable ? { whyNotStartable: o.whyNotStartable } : {}) });
  const token = randomBytes(16).toString('hex');
  try {
    await mkdir(dirname(o.tokenFile), { recursive: true, mode: 0o700 });
    await writeFile(o.tokenFile, `${token}\n`, { mode: 0o600 });
    await chmod(o.tokenFile, 0o600); // an existing file keeps its mode on writeFile
  } catch (err) {
    throw new EvccError('IO_FAILED', `cannot write the dashboard token file ${o.tokenFile}`, { path: o.tokenFile }, { cause: err });
  }
  const server = await startDashboardServer({ host: o.settings.host, port: o.settings.port, token, hub, control, log: o.log });
  if (!LOOPBACK.has(o.settings.host)) {
    o.log.warn({ host: o.settings.host }, `dashboard bound to ${o.settings.host}: the bench screen (log, certificates, config) is visible to that network`);
  }
  o.log.info({ url: server.url, tokenFile: o.tokenFile, cp: 'DASHBOARD_UP', ...(o.printToken ? { token } : {}) },
    o.printToken ? `dashboard at ${server.url}#token=${token} (Start/Stop token ${token})` : `dashboard at ${server.url} (Start/Stop token in ${o.tokenFile})`);
  return {
    hub, control, url: server.url, port: server.port, token, tokenFile: o.tokenFile,
    async close() {
      await control.close();
      await server.close();
      await rm(o.tokenFile, { force: true });
    },
  };
}
