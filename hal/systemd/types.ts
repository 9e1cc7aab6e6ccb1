/**
 * The service manager as the runtime sees it (systemd's sd_notify protocol, `Type=notify` + `WatchdogSec=`): it is
 * told when the service is ready, what it is doing, that its main loop is alive, and that it is stopping.
 * Implementations: `SystemdNotifier` (hal/systemd/notify.ts: `systemd-notify` on $NOTIFY_SOCKET) and
 * `NoServiceManager` (not started by systemd: every call does nothing).
 */
export interface ServiceManager {
  /** Set when the manager expects watchdog pings from this process (WATCHDOG_USEC for our pid), in ms. */
  readonly watchdogMs: number | undefined;
  /** READY=1 with a status line: start-up is complete (for the EVCC: waiting for plug-in). Sent once. */
  ready(status: string): void;
  /** STATUS=…: one line for `systemctl status`. */
  status(status: string): void;
  /** WATCHDOG=1: the main loop is alive. */
  watchdog(): void;
  /** STOPPING=1 with a status line: shutdown began. */
  stopping(status: string): void;
  /** Resolves when every message handed over so far has been delivered (or given up). */
  close(): Promise<void>;
}

/** Not started by a service manager: nothing to tell. */
export class NoServiceManager implements ServiceManager {
  readonly watchdogMs = undefined;
  ready(): void {}
  status(): void {}
  watchdog(): void {}
  stopping(): void {}
  async close(): Promise<void> {}
}
