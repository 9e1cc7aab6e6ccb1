import type { Clock, TimerId } from '../clock/types.ts';
import type { ServiceManager } from './types.ts';

/**
 * Pings the service manager's watchdog from the main event loop, at half the period it expects (sd_watchdog_enabled(3)
 * recommends pinging at half WATCHDOG_USEC). The ping timer runs on the same loop as the sessions, so a blocked main
 * loop — a busy loop, a synchronous call that does not return, a native call stuck in the kernel — stops the pings
 * and systemd restarts the service (`Restart=on-failure` covers the watchdog). Promise-level waits are bounded
 * elsewhere: the protocol timers (V2G_EVCC_Msg_Timeout, TT_*), the communication-setup budget and the 30 s limit on
 * every TPM tool call end them with a typed error, so they cannot hold the loop forever.
 */
export class MainLoopWatchdog {
  private timer: TimerId | undefined;
  private pings = 0;

  constructor(private readonly manager: ServiceManager, private readonly clock: Clock) {}

  /** The ping period, or undefined when the manager expects no pings. */
  get intervalMs(): number | undefined {
    const w = this.manager.watchdogMs;
    return w === undefined ? undefined : Math.max(1, Math.floor(w / 2));
  }

  get sent(): number {
    return this.pings;
  }

  start(): void {
    const interval = this.intervalMs;
    if (interval === undefined || this.timer !== undefined) return;
    const tick = () => {
      this.pings++;
      this.manager.watchdog();
      this.timer = this.clock.setTimer(tick, interval);
    };
    tick();
  }

  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }
}
