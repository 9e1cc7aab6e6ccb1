import { spawn } from 'node:child_process';
import type { Logger } from '../../core/logger.ts';
import { NoServiceManager, type ServiceManager } from './types.ts';

export type NotifySender = (assignments: readonly string[]) => Promise<void>;

export interface SystemdNotifierOptions {
  /** $NOTIFY_SOCKET as systemd set it. */
  socket: string;
  /** $WATCHDOG_USEC, when the unit has WatchdogSec=. */
  watchdogUsec?: string;
  /** $WATCHDOG_PID: the watchdog is ours only if it names our PID (or is absent). */
  watchdogPid?: string;
  pid?: number;
  log?: Logger;
  /** Replaces the systemd-notify child (unit tests). */
  send?: NotifySender;
  /** The systemd-notify binary. */
  command?: string;
}

/** One line for STATUS=: the protocol is newline-separated assignments. */
const oneLine = (s: string) => s.replace(/[\r\n]+/g, ' ').slice(0, 200);

export interface NotifyEnvironment {
  socket?: string;
  watchdogUsec?: string;
  watchdogPid?: string;
}

/** Takes $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID out of `env` (before any child is started). */
export function takeNotifyEnvironment(env: NodeJS.ProcessEnv = process.env): NotifyEnvironment {
  const taken: NotifyEnvironment = {
    ...(env.NOTIFY_SOCKET ? { socket: env.NOTIFY_SOCKET } : {}),
    ...(env.WATCHDOG_USEC ? { watchdogUsec: env.WATCHDOG_USEC } : {}),
    ...(env.WATCHDOG_PID ? { watchdogPid: env.WATCHDOG_PID } : {}),
  };
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  return taken;
}

/**
 * sd_notify through `systemd-notify` (part of systemd on every image that runs the units): Node has no AF_UNIX
 * datagram sockets, and the npm packages that add them (`sd-notify`, `unix-dgram`) are native addons — one more
 * thing to build per target for a few short messages every WatchdogSec/2.
 *
 * Attribution: the datagram comes from the systemd-notify child, not from the main PID. `--pid=<our pid>` makes it
 * carry our PID where the kernel allows it (CAP_SYS_ADMIN; as User=evcc it falls back to its own), so the unit needs
 * `NotifyAccess=all`. systemd-notify waits (sd_notify_barrier) until the manager has processed the message before it
 * exits — without `--no-block` the race "sender gone before systemd reads it, message dropped" (systemd-notify(1))
 * does not arise. Messages go out one at a time, in order; a watchdog ping while one is pending is redundant.
 */
export class SystemdNotifier implements ServiceManager {
  readonly watchdogMs: number | undefined;
  private readonly pid: number;
  private readonly send: NotifySender;
  private readonly log: Logger | undefined;
  private chain: Promise<void> = Promise.resolve();
  private pingPending = false;
  private readySent = false;
  private failures = 0;

  constructor(o: SystemdNotifierOptions) {
    this.pid = o.pid ?? process.pid;
    this.log = o.log;
    const usec = o.watchdogUsec !== undefined ? Number(o.watchdogUsec) : Number.NaN;
    const forUs = o.watchdogPid === undefined || o.watchdogPid === '' || Number(o.watchdogPid) === this.pid;
    this.watchdogMs = Number.isFinite(usec) && usec > 0 && forUs ? usec / 1000 : undefined;
    const command = o.command ?? 'systemd-notify';
    this.send = o.send ?? ((a) => runSystemdNotify(command, o.socket, this.pid, a));
  }

  /**
   * The notifier for this process from its environment; the variables are then removed from process.env so that
   * children (tpm2-tools, …) do not inherit them (as sd_notify's unset_environment does).
   */
  static fromEnvironment(env: NodeJS.ProcessEnv = process.env, log?: Logger): ServiceManager {
    return SystemdNotifier.forManager(takeNotifyEnvironment(env), log);
  }

  /** The notifier for what `takeNotifyEnvironment` took (a NoServiceManager when systemd did not start us). */
  static forManager(e: NotifyEnvironment, log?: Logger): ServiceManager {
    if (!e.socket) return new NoServiceManager();
    return new SystemdNotifier({ socket: e.socket, ...(e.watchdogUsec ? { watchdogUsec: e.watchdogUsec } : {}), ...(e.watchdogPid ? { watchdogPid: e.watchdogPid } : {}), ...(log ? { log } : {}) });
  }

  ready(status: string): void {
    if (this.readySent) return this.status(status);
    this.readySent = true;
    this.enqueue(['READY=1', `STATUS=${oneLine(status)}`]);
  }

  status(status: string): void {
    this.enqueue([`STATUS=${oneLine(status)}`]);
  }

  watchdog(): void {
    if (this.watchdogMs === undefined || this.pingPending) return;
    this.pingPending = true;
    this.enqueue(['WATCHDOG=1'], () => {
      this.pingPending = false;
    });
  }

  stopping(status: string): void {
    this.enqueue(['STOPPING=1', `STATUS=${oneLine(status)}`]);
  }

  close(): Promise<void> {
    return this.chain;
  }

  private enqueue(assignments: string[], done?: () => void): void {
    this.chain = this.chain.then(async () => {
      try {
        await this.send(assignments);
        this.failures = 0;
      } catch (err) {
        // Not fatal: a manager that hears nothing restarts the service (start timeout, watchdog) — say why once.
        if (this.failures++ === 0) this.log?.warn({ err: (err as Error).message, message: assignments[0] }, `service manager notification failed: ${(err as Error).message}`);
      } finally {
        done?.();
      }
    });
  }
}

/** systemd-notify waits at most 5 s for the manager's barrier reply; a hung child is not waited for longer. */
const SEND_TIMEOUT_MS = 10_000;

function runSystemdNotify(command: string, socket: string, pid: number, assignments: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [`--pid=${pid}`, ...assignments], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', NOTIFY_SOCKET: socket },
      timeout: SEND_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 500) stderr += d.toString();
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${assignments[0]}: ${signal ? `killed (${signal})` : `exit ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
    });
  });
}
