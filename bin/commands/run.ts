/**
 * `evcc run` — the service (systemd `evcc.service`). Composition root of the long-running vehicle runtime:
 *
 *   key service (reclaim what a crashed predecessor left in the TPM, unseal the vehicle trust, arm the contract key)
 *   → OEM link (retained state online/offline with the security mode, proactive V2G root-list sync)
 *   → pilot board: each plug-in with 5 % duty (state B/C) runs one session (charge.ts `runRealSession`); the
 *     session ends at unplug (state A), which also aborts a setup still under way
 *   → SIGTERM/SIGINT: abort the session, publish offline, close the TPM and the serial line, exit 0.
 *
 * Supervision (evcc.service `Type=notify`, `WatchdogSec=`): READY=1 when the service waits for plug-in, STATUS= at
 * each plug-in and session end, WATCHDOG=1 from the main loop (hal/systemd/watchdog.ts), STOPPING=1 at shutdown.
 *
 * `--trigger now` (config `pilot.trigger`) runs one session at once instead, for benches without a pilot board, and
 * keeps the service (OEM link, root sync) up until it is stopped.
 *
 * Config `dashboard.enabled` serves the live dashboard (bin/dashboard.ts): with `--trigger now` its Start runs a
 * session (the first at once), with a pilot board sessions start on plug-in; its Stop ends the running session.
 */
import { Option, type Command } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { rootStoreOf } from '../../firmware/ota/pki-adapter.ts';
import { RootSyncScheduler } from '../../firmware/ota/root-sync.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { SerialPilotBoard } from '../../hal/pilot/serial-board.ts';
import { PilotSettings } from '../../hal/pilot/settings.ts';
import { requestsHighLevelCommunication, type PilotBoard, type PilotReading } from '../../hal/pilot/types.ts';
import { SystemdNotifier, takeNotifyEnvironment } from '../../hal/systemd/notify.ts';
import { MainLoopWatchdog } from '../../hal/systemd/watchdog.ts';
import { dashboardSettings } from '../../firmware/dashboard/settings.ts';
import type { ServiceDashboard } from '../dashboard.ts';
import type { VehicleUpdates } from '../vehicle-update.ts';
import type { GlobalOptions } from '../runtime.ts';
import { addStackOptions, logSessionEnd, openEvPort, openVehicleStack, runRealSession, type StackFlags } from './charge.ts';

interface RunFlags extends StackFlags {
  trigger?: 'pilot' | 'now';
  pilot?: string;
  pilotBaud?: number;
}

/**
 * Test hook (test/integration/systemd-units.test.ts): block the main loop this many ms after READY, as a hung
 * synchronous call would, so the watchdog test can show systemd restarting the service.
 */
const BLOCK_MAIN_LOOP_ENV = 'EVCC_TEST_BLOCK_MAIN_LOOP_MS';

/** Resolves when `pred` holds for the board's reading (now or at a later change); rejects on abort. */
function waitForPilot(board: PilotBoard, pred: (r: PilotReading) => boolean, signal: AbortSignal): Promise<PilotReading> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const now = board.read();
    if (pred(now)) return resolve(now);
    const off = board.onChange((r) => {
      if (!pred(r)) return;
      off();
      signal.removeEventListener('abort', onAbort);
      resolve(r);
    });
    const onAbort = () => {
      off();
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export function registerRun(program: Command, globals: () => GlobalOptions): void {
  addStackOptions(program.command('run'))
    .description('the EVCC service: OEM link, key service, and one session per plug-in reported by the pilot board, until SIGTERM')
    .addOption(new Option('--trigger <mode>', 'pilot: a session per plug-in with 5 % duty; now: one session at once (no pilot board); default: config pilot.trigger').choices(['pilot', 'now']))
    .option('--pilot <path>', 'serial device of the pilot board (protocol evcc-pilot/1); default: config pilot.serialPath')
    .addOption(new Option('--pilot-baud <rate>', 'pilot board baud rate; default: config pilot.baudRate').argParser(Number))
    .action(async (opts: RunFlags) => {
      // Before any child process starts: they must not inherit the notify socket.
      const notifyEnv = takeNotifyEnvironment(process.env);
      const shutdown = new AbortController();
      const stop = (sig: string) => shutdown.abort(new EvccError('ABORTED', `${sig}: service stopping`));
      const onTerm = () => stop('SIGTERM');
      const onInt = () => stop('SIGINT');
      process.once('SIGTERM', onTerm);
      process.once('SIGINT', onInt);
      const stack = await openVehicleStack(globals(), opts, { reclaim: true });
      const { rt } = stack;
      const log = rt.log('EVCC');
      const pilotLog = rt.log('PILOT');
      const manager = SystemdNotifier.forManager(notifyEnv, rt.log('SYSTEMD'));
      const watchdog = new MainLoopWatchdog(manager, rt.clock);
      const mode = stack.keyReadiness.ready ? 'Plug & Charge' : `EIM only (${stack.keyReadiness.code})`;
      let scheduler: RootSyncScheduler | undefined;
      let board: PilotBoard | undefined;
      let lost: EvccError | undefined;
      const ev = openEvPort(stack);
      let dash: ServiceDashboard | undefined;
      let updates: VehicleUpdates | undefined;
      /** A session charges from here until the returned function runs: an update's reboot waits for its end. */
      const charging = (): (() => void) => updates?.gate.sessionStarted() ?? (() => undefined);
      try {
        watchdog.start();
        if (watchdog.intervalMs !== undefined) rt.log('SYSTEMD').info({ watchdogMs: manager.watchdogMs, pingMs: watchdog.intervalMs }, `watchdog: pinging every ${watchdog.intervalMs} ms`);
        const pilotSettings = parseSettings(PilotSettings, {
          ...((rt.rawConfig.pilot as object | undefined) ?? {}),
          ...(opts.trigger ? { trigger: opts.trigger } : {}), ...(opts.pilot ? { serialPath: opts.pilot } : {}), ...(opts.pilotBaud ? { baudRate: opts.pilotBaud } : {}),
        }, 'pilot');

        // Proactive root sync while online (Solution C's complement: the root is usually there before the charger asks).
        const ota = stack.ota;
        const syncSettings = ota?.settings.proactiveSync;
        if (ota && stack.store && syncSettings?.enabled && stack.backendTrust) {
          scheduler = new RootSyncScheduler({
            client: ota.link.client, intervalMs: syncSettings.intervalMs, budgetMs: syncSettings.budgetMs, rpc: ota.link.rootListRpc,
            vehicleId: ota.vehicleId, trust: stack.backendTrust, store: rootStoreOf(stack.store, { log: rt.log('PKI') }), clock: rt.clock, log: rt.log('OTA'),
          });
          scheduler.start();
        }

        if (pilotSettings.trigger === 'pilot') {
          const serial = await SerialPilotBoard.open({ path: pilotSettings.serialPath, baudRate: pilotSettings.baudRate, log: pilotLog });
          board = serial;
          // Without the board the plug state is unknown: stop with a typed failure (systemd restarts the service).
          serial.onLost((err) => {
            lost = err;
            shutdown.abort(err);
          });
        }
        const dashSettings = dashboardSettings(rt.rawConfig);
        if (dashSettings.enabled) {
          // Loaded only when configured (the WebSocket server and the view model are not part of a cold start).
          const { ServiceDashboard } = await import('../dashboard.ts');
          dash = await ServiceDashboard.open({
            rt, keyReadiness: stack.keyReadiness, trustSource: stack.trustSource, config: stack.config as unknown as Record<string, unknown>,
            tcti: stack.config.tpm.tcti, ...(stack.store ? { store: stack.store } : {}),
          }, {
            settings: dashSettings, trigger: pilotSettings.trigger,
            runSession: async (signal, onMessage) => {
              const ended = charging();
              try {
                const report = await runRealSession(stack, opts, {
                  signal: AbortSignal.any([signal, shutdown.signal]), ev, onMessage, waitForPlugIn: async () => pilotLog.info('trigger: now (dashboard, no pilot board)'),
                });
                logSessionEnd(log, report);
                return report;
              } finally {
                ended();
              }
            },
            // The battery model takes a driver's stop request (SessionStop in order); a port without one is aborted.
            requestStop: () => ('requestStop' in ev && typeof ev.requestStop === 'function' ? (ev.requestStop(), true) : false),
            socPercent: () => ev.status().socPercent,
          });
        }
        log.info({ trigger: pilotSettings.trigger, mode: stack.keyReadiness.ready ? 'pnc' : 'eim-only', iface: stack.iface }, `service running: ${pilotSettings.trigger === 'pilot' ? `waiting for plug-in on ${pilotSettings.serialPath}` : 'one session now'}`);
        manager.ready(pilotSettings.trigger === 'pilot' ? `waiting for plug-in, ${mode}` : `one session now, ${mode}`);
        // OTA updates (config update.enabled): loaded after READY; their first pass finishes an update the last boot
        // began (health check, Mark good, counter) before it takes a new job.
        if (stack.config.update.enabled) {
          const { startVehicleUpdates } = await import('../vehicle-update.ts');
          updates = await startVehicleUpdates(stack, stack.config.update).catch((err: unknown) => {
            rt.log('OTA').error({ cp: 'OTA-UPDATES-OFF', code: (err as EvccError).code }, `OTA updates off: ${(err as Error).message}`);
            return undefined;
          });
        }
        const blockMs = Number(process.env[BLOCK_MAIN_LOOP_ENV] ?? 0);
        if (blockMs > 0) {
          // Once READY has reached the manager (a blocked loop would hold it in the queue).
          void manager.close().then(() => {
            log.warn({ ms: blockMs }, `test hook ${BLOCK_MAIN_LOOP_ENV}: blocking the main loop for ${blockMs} ms`);
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, blockMs);
          });
        }

        let sessions = 0;
        while (!shutdown.signal.aborted) {
          if (!board) {
            if (sessions > 0) break;
            sessions++;
            if (dash) {
              dash.startNow(); // under the dashboard's control: Stop ends it, Start runs the next
              break;
            }
            const ended = charging();
            const report = await runRealSession(stack, opts, {
              signal: shutdown.signal, ev, waitForPlugIn: async () => pilotLog.info('trigger: now (no pilot board)'),
            }).finally(ended);
            logSessionEnd(log, report);
            continue;
          }
          const b = board;
          // Waiting happens here, not in the orchestrator's WaitForPlugIn: a SIGTERM while nobody is plugged in is a
          // normal stop, not a failed session.
          const plugged = await waitForPilot(b, requestsHighLevelCommunication, shutdown.signal).catch(() => undefined);
          if (!plugged) break;
          const n = ++sessions;
          manager.status(`session ${n}: plugged in (state ${plugged.state}, ${plugged.dutyPercent} % duty), ${mode}`);
          // Unplug (state A) ends the session, also while its setup is still under way.
          const session = new AbortController();
          const onShutdown = () => session.abort(shutdown.signal.reason);
          shutdown.signal.addEventListener('abort', onShutdown, { once: true });
          const offUnplug = b.onChange((r) => {
            if (r.state === 'A') session.abort(new EvccError('ABORTED', 'unplugged (state A)'));
          });
          const shown = dash?.observe(() => session.abort(new EvccError('ABORTED', 'stopped from the dashboard')));
          // Plugged in counts as charging until unplug (below): no update reboot while the cable is in.
          const ended = charging();
          const report = await runRealSession(stack, opts, {
            signal: session.signal, ev, pilot: b, ...(dash ? { onMessage: dash.onMessage } : {}),
            waitForPlugIn: async () => pilotLog.info({ state: plugged.state, duty: plugged.dutyPercent, session: n }, `state ${plugged.state}, ${plugged.dutyPercent} % duty: high-level communication requested (session ${n})`),
          }).catch((err: unknown) => {
            ended();
            throw err;
          });
          offUnplug();
          shown?.(report);
          shutdown.signal.removeEventListener('abort', onShutdown);
          if (!report.ok && session.signal.aborted) {
            const why = (session.signal.reason as Error | undefined)?.message ?? 'aborted';
            log.warn({ session: n, state: report.timeline.at(-1)?.state, reason: why }, `session ${n} setup aborted in ${report.timeline.at(-1)?.state}: ${why}`);
          } else {
            logSessionEnd(log, report);
          }
          // The session ended (SessionStop, or a typed failure): the next one needs a new plug-in.
          manager.status(`session ${n} ended (${report.ok ? 'ok' : report.endReason.code}): waiting for unplug`);
          await waitForPilot(b, (r) => r.state === 'A', shutdown.signal).catch(() => undefined);
          ended();
          if (!shutdown.signal.aborted) {
            pilotLog.info({ session: n }, `unplugged (state A): session ${n} ended`);
            manager.status(`waiting for plug-in, ${mode} (${n} session(s) so far)`);
          }
        }
        if (!shutdown.signal.aborted) {
          // `--trigger now`: the session is done; the service stays up (OEM link, root sync) until it is stopped.
          // A timer holds the event loop open: with no OEM link nothing else would, and node would exit (code 13).
          manager.status(`session done, ${mode}: OEM link up until stopped`);
          const keepAlive = setInterval(() => undefined, 3_600_000);
          await new Promise<void>((resolve) => shutdown.signal.addEventListener('abort', () => resolve(), { once: true }));
          clearInterval(keepAlive);
        }
        log.info({ reason: (shutdown.signal.reason as Error | undefined)?.message, sessions }, 'service stopping');
      } finally {
        manager.stopping(`stopping: ${(shutdown.signal.reason as Error | undefined)?.message ?? 'done'}`);
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        scheduler?.stop();
        await updates?.close().catch(() => undefined);
        await dash?.close().catch(() => undefined);
        await board?.close().catch(() => undefined);
        await ev.close().catch(() => undefined);
        log.info('service stopped: OEM link closed (state offline), TPM released');
        watchdog.stop();
        await manager.close();
        await stack.close();
      }
      if (lost) throw lost;
    });
}
