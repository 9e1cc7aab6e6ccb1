/**
 * The live dashboard at the composition roots (issue #11):
 *
 *   `evcc bench-session --dashboard [port]` (or a bench config with `dashboard.enabled`): the dashboard comes up and
 *   the bench waits; each Start runs one whole bench session (a fresh bench: swtpm vehicle, chargers, OEM backend),
 *   Stop ends it (the vehicle asks for SessionStop; aborted if that takes too long); SIGINT/SIGTERM ends the bench.
 *
 *   `evcc run` with `dashboard.enabled`: the service's sessions on the dashboard; Start runs a session with
 *   `--trigger now` (with a pilot board, a session starts on plug-in), Stop ends the running one.
 *
 * Wiring only: the views are firmware/dashboard, the server deploy/dashboard.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EvccError, isEvccError } from '../core/errors.ts';
import { dashboardSettings, type DashboardSettings } from '../firmware/dashboard/settings.ts';
import type { MessageRecord } from '../firmware/session/driver.ts';
import type { ChargeReport } from '../firmware/vehicle/report.ts';
import type { SessionRunner } from '../deploy/dashboard/control.ts';
import { DashboardHub, type CaptureStreamEvent } from '../deploy/dashboard/hub.ts';
import { startDashboard, type RunningDashboard } from '../deploy/dashboard/start.ts';
import { publishVehicle, type VehicleSnapshot } from '../deploy/dashboard/views.ts';
import { createRuntime, type GlobalOptions, type Runtime } from './runtime.ts';

/** What a bench session tells the dashboard while it runs (bench-session.ts runBenchSession). */
export interface BenchSessionHooks {
  /** Stop: ends the session (typed ABORTED) when the orderly stop did not. */
  signal?: AbortSignal;
  /**
   * Each event of the session capture's stream (firmware/capture/records.ts: decoded messages in order); without a
   * capture the bench emits the same records itself.
   */
  onCaptureEvent?(e: CaptureStreamEvent): void;
  /** The session's runtime is up: its log lines go to the dashboard. */
  onRuntime?(rt: Runtime): void;
  /** 'before': the vehicle is ready and the session starts now; 'after': the session ended (roots, contract may be new). */
  onVehicle?(v: BenchVehicle, when: 'before' | 'after'): void;
  onReport?(report: ChargeReport): void;
}

export type BenchVehicle = VehicleSnapshot & {
  socPercent(): number;
  /** The vehicle asks for SessionStop (as a driver would). */
  requestStop(): void;
};

/** The dashboard section of the config, with the port from `--dashboard PORT`. */
export { dashboardSettings };

/** `--dashboard [port]`: true (configured port) or a port number. */
export function dashboardPortOption(v: string | boolean | undefined): number | undefined {
  if (v === undefined || v === true || v === false) return undefined;
  const port = Number(v);
  if (!/^\d{1,5}$/.test(v) || port > 65_535) throw new EvccError('CONFIG_INVALID', `--dashboard: not a port: ${v}`);
  return port;
}

function summaryOf(r: ChargeReport): string {
  return [
    r.protocol ? (r.protocol === 'din' ? 'DIN SPEC 70121' : 'ISO 15118-2') : undefined,
    r.payment ? (r.payment === 'Contract' ? 'PnC' : 'EIM') : undefined,
    r.channel ? r.channel.kind.toUpperCase() : undefined,
    r.soc ? `SoC ${r.soc.start} → ${r.soc.end} %` : undefined,
    r.energyWh !== undefined ? `${(r.energyWh / 1000).toFixed(2)} kWh` : undefined,
    r.setupMs !== undefined ? `setup ${r.setupMs} ms` : undefined,
    r.ok ? undefined : r.endReason.code,
  ].filter(Boolean).join(', ');
}

export function reportToDashboard(hub: DashboardHub, r: ChargeReport): void {
  hub.sessionEnded({ ok: r.ok, state: r.state, endReason: r.endReason, summary: summaryOf(r) });
}

/** Runs the bench behind the dashboard until SIGINT/SIGTERM. `run` is runBenchSession with the bench's options. */
export async function serveBenchDashboard(g: GlobalOptions, o: { port?: number; label: string }, run: (hooks: BenchSessionHooks) => Promise<unknown>): Promise<void> {
  const rt = await createRuntime(g);
  const log = rt.log('BENCH');
  const hub = new DashboardHub();
  const offOwn = rt.onLogLine((l) => hub.logLine(l));
  const tokenDir = await mkdtemp(join(tmpdir(), 'evcc-dashboard-'));
  let dash: RunningDashboard | undefined;
  try {
    const settings = dashboardSettings(rt.rawConfig, o.port);
    let vehicle: BenchVehicle | undefined;
    const runner: SessionRunner = {
      run: async (signal) => {
        let offLog: (() => void) | undefined;
        let started = false;
        try {
          await run({
            signal,
            onCaptureEvent: (e) => hub.captureEvent(e, vehicle?.socPercent()),
            onRuntime: (srt) => {
              offLog = srt.onLogLine((l) => hub.logLine(l));
            },
            onVehicle: (v, when) => {
              if (when === 'before') {
                hub.sessionStarted(o.label);
                started = true;
                vehicle = v;
              }
              publishVehicle(hub, v);
            },
            onReport: (r) => reportToDashboard(hub, r),
          });
        } catch (err) {
          // The bench failed before or around its session (typed): the screen shows it like a failed session.
          if (!started) hub.sessionStarted(o.label);
          const code = isEvccError(err) ? err.code : 'INTERNAL';
          hub.sessionEnded({ ok: false, state: 'Setup', endReason: { code, message: err instanceof Error ? err.message : String(err), orderly: false } });
          log.error({ code }, `bench session failed: ${err instanceof Error ? err.message : String(err)}`);
        } finally {
          offLog?.();
          vehicle = undefined;
        }
      },
      requestOrderlyStop: () => {
        if (!vehicle) return false;
        vehicle.requestStop();
        return true;
      },
    };
    dash = await startDashboard({ settings, tokenFile: settings.tokenFile ?? join(tokenDir, 'token'), runner, startable: true, printToken: true, log, hub });
    log.info({ cp: 'BENCH_READY' }, 'bench ready: press Start on the dashboard (Ctrl-C ends the bench)');
    await waitForStopSignal();
    log.info('bench stopping');
  } finally {
    await dash?.close();
    offOwn();
    await rm(tokenDir, { recursive: true, force: true });
    await rt.close();
  }
}

function waitForStopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

/** What the service tells the dashboard about its vehicle (charge.ts VehicleStack). */
export interface ServiceVehicle {
  rt: Runtime;
  store?: VehicleSnapshot['store'];
  keyReadiness: VehicleSnapshot['readiness'];
  trustSource: string;
  config: Record<string, unknown>;
  tcti?: string;
}

/**
 * `evcc run` with `dashboard.enabled`: the service's sessions on the screen. With `--trigger now` the sessions run
 * under the dashboard's Start (the first at once); with a pilot board they start on plug-in (`observe`) and Start
 * is refused; Stop ends either.
 */
export class ServiceDashboard {
  private constructor(private readonly dash: RunningDashboard, private readonly v: ServiceVehicle, private readonly soc?: () => number) {}

  /** For runRealSession's `onMessage`: the decoded messages of the running session. */
  readonly onMessage = (r: MessageRecord): void => {
    this.dash.hub.message({ direction: r.direction, name: r.name, document: r.document, ...(r.rttMs !== undefined ? { rttMs: r.rttMs } : {}) }, this.soc?.());
  };

  static async open(v: ServiceVehicle, o: {
    settings: DashboardSettings; trigger: 'pilot' | 'now';
    /** Runs one session (`--trigger now`) to its report; `onMessage` feeds the screen its decoded messages. */
    runSession: (signal: AbortSignal, onMessage: (r: MessageRecord) => void) => Promise<ChargeReport>;
    /** The EV's SoC now, for the chart. */
    socPercent?: () => number;
    /** The vehicle asks for SessionStop; false: not possible (the session is aborted instead). */
    requestStop?: () => boolean;
  }): Promise<ServiceDashboard> {
    const hub = new DashboardHub();
    const offOwn = v.rt.onLogLine((l) => hub.logLine(l));
    let self: ServiceDashboard | undefined;
    const dash = await startDashboard({
      settings: o.settings, tokenFile: o.settings.tokenFile ?? join(v.rt.settings.runDir, 'dashboard.token'),
      startable: o.trigger === 'now', whyNotStartable: 'sessions start on plug-in (pilot board)', printToken: false, log: v.rt.log('EVCC'), hub,
      runner: {
        run: async (signal) => {
          self?.starting();
          reportToDashboard(hub, await o.runSession(signal, (r) => self?.onMessage(r)));
          self?.publish();
        },
        ...(o.requestStop ? { requestOrderlyStop: o.requestStop } : {}),
      },
    });
    self = new ServiceDashboard({ ...dash, close: async () => { await dash.close(); offOwn(); } }, v, o.socPercent);
    self.publish();
    return self;
  }

  /** Starts a session under the dashboard's control (`--trigger now`). */
  startNow(): void {
    this.dash.control.start();
  }

  /** A session the service started on plug-in: on the screen, stoppable by Stop (`abort`). Returns its end. */
  observe(abort: () => void): (report: ChargeReport) => void {
    this.starting();
    const detach = this.dash.control.attachExternal(abort);
    return (report) => {
      detach();
      reportToDashboard(this.dash.hub, report);
      this.publish();
    };
  }

  private starting(): void {
    this.dash.hub.sessionStarted('service session');
    this.publish();
  }

  private publish(): void {
    publishVehicle(this.dash.hub, {
      mode: 'service', config: this.v.config, readiness: this.v.keyReadiness, trustSource: this.v.trustSource,
      ...(this.v.store ? { store: this.v.store } : {}), ...(this.v.tcti ? { tpm: { tcti: this.v.tcti } } : {}),
    });
  }

  close(): Promise<void> {
    return this.dash.close();
  }
}
