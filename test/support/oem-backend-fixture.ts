import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../core/logger.ts';
import { JobService, type JobServiceOptions } from '../../deploy/oem-backend/jobs.ts';
import { SecurityLogCollector, SecurityLogService } from '../../deploy/oem-backend/security-log.ts';
import { OemBackend, type OemBackendOptions } from '../../deploy/oem-backend/service.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttTlsIdentity } from '../../hal/mqtt/types.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { otaFixture, type OtaFixture } from '../integration/ota-fixtures.ts';
import { OEM_BACKEND_USER, startMosquitto, type MosquittoBroker } from './mosquitto.ts';

/**
 * The OEM side of the OTA integration tests in one piece: a real mosquitto (mTLS + per-vehicle ACL), the OTA
 * fixture (test PKI, Root Certificate Pool, answer key), and the in-process OEM backend on the backend's link
 * identity, optionally with a JobService and a security-log collector, each over its own temp dir. In-process, so
 * a test holds the services and can stop or replace the backend (oem-backend-cluster.ts runs `evcc oem-backend`
 * child processes instead, for the scale-out tests).
 */
export interface OemBackendFixtureOptions {
  /** Update campaigns: a JobService over a fresh dir (an object: its further options, e.g. `now`). */
  jobs?: boolean | Omit<JobServiceOptions, 'store' | 'signer' | 'log'>;
  /** Security-log uploads: a collector over a fresh dir, served by the backend. */
  securityLogs?: boolean;
  /** Default: a random id per backend (OemBackend's own). */
  clientId?: string;
  /** For the backend and its services; default silent. */
  log?: Logger;
  /** Further OemBackend options, for every backend the fixture starts. */
  backend?: Partial<OemBackendOptions>;
}

export interface OemBackendFixture {
  readonly broker: MosquittoBroker;
  readonly fx: OtaFixture;
  /** The running backend: the one restartBackend() started last. */
  readonly backend: OemBackend;
  readonly jobService?: JobService;
  readonly jobsDir?: string;
  readonly securityLogs?: { readonly collector: SecurityLogCollector; readonly dir: string };
  /** The link identity of a vehicle (its certificate CN is the id the ACL confines it to). */
  vehicleTls(vehicleId: string): Promise<MqttTlsIdentity>;
  /** The fixture backend's options with `over` on top, for a backend the test runs itself (an impostor). */
  backendOptions(over?: Partial<OemBackendOptions>): OemBackendOptions;
  /** Stops the running backend (a no-op when the test did) and starts a fresh one with the same options. */
  restartBackend(): Promise<OemBackend>;
  /** Stops every backend it started, then the broker, then removes the fixture's files; safe to call twice. */
  close(): Promise<void>;
}

export async function startOemBackendFixture(o: OemBackendFixtureOptions = {}): Promise<OemBackendFixture> {
  const log = o.log ?? silentLogger();
  const backends: OemBackend[] = [];
  const dirs: string[] = [];
  let fx: OtaFixture | undefined;
  let broker: MosquittoBroker | undefined;
  let closing: Promise<void> | undefined;

  // Every step runs even when an earlier one fails (or was never set up); the first failure is reported.
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const errors: unknown[] = [];
      const step = async (f: () => Promise<unknown>) => {
        await f().catch((e: unknown) => void errors.push(e));
      };
      for (const b of backends.splice(0).reverse()) await step(() => b.stop());
      if (broker) await step(() => broker!.stop());
      if (fx) await step(() => fx!.cleanup());
      for (const d of dirs.splice(0)) await step(() => rm(d, { recursive: true, force: true }));
      if (errors.length > 0) throw errors[0];
    })());
  const tempDir = async (prefix: string) => {
    const d = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };

  try {
    fx = await otaFixture();
    broker = await startMosquitto();
    const tls = await broker.identity(OEM_BACKEND_USER);
    const f = fx;

    let jobService: JobService | undefined;
    let jobsDir: string | undefined;
    if (o.jobs) {
      jobsDir = await tempDir('evcc-jobs-');
      jobService = new JobService({ ...(o.jobs === true ? {} : o.jobs), store: await FsStore.open(jobsDir), signer: f.signer, log });
    }
    let securityLogs: { collector: SecurityLogCollector; dir: string } | undefined;
    if (o.securityLogs) {
      const dir = await tempDir('evcc-seclog-');
      securityLogs = { collector: new SecurityLogCollector({ store: await FsStore.open(dir), log }), dir };
    }

    const base: OemBackendOptions = {
      connector: new MqttJsConnector(), url: broker.url, protocolVersion: 5, tls, pool: f.pool, signer: f.signer, clock: new SystemClock(), log,
      ...(o.clientId ? { clientId: o.clientId } : {}), ...o.backend, ...(jobService ? { jobs: jobService } : {}),
    };
    // A service per backend, as a restarted backend process would have; the collector (the stored logs) stays.
    const backendOptions = (over: Partial<OemBackendOptions> = {}): OemBackendOptions => ({
      ...base, ...(securityLogs ? { securityLogs: new SecurityLogService(securityLogs.collector, log) } : {}), ...over,
    });
    const startBackend = async (): Promise<OemBackend> => {
      const b = new OemBackend(backendOptions());
      backends.push(b);
      await b.start();
      return b;
    };
    let backend = await startBackend();

    const b = broker;
    return {
      broker: b, fx: f, jobService, jobsDir, securityLogs,
      get backend() {
        return backend;
      },
      vehicleTls: (vehicleId) => b.identity(vehicleId),
      backendOptions,
      async restartBackend() {
        await backend.stop();
        backend = await startBackend();
        return backend;
      },
      close,
    };
  } catch (err) {
    // Half set up: undo what was made, and report why the set-up failed rather than a teardown error.
    await close().catch(() => undefined);
    throw err;
  }
}
