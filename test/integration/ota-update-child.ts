/**
 * The vehicle's update agent as its own process, for the SIGKILL test (ota-update-rauc-kill.test.ts): wired as the
 * runtime wires it (FsStore, swtpm driver, RaucDbusInstaller on the rig's bus, HTTPS download, `rauc info`), logging
 * JSON lines with checkpoint ids to stdout; the jobs transport is the parent over IPC (it plays the backend), and the
 * reboot hook asks the parent, which kills this process and power-cycles the rig as a reboot would.
 * Loads its modules, says `ready`, and after `go` opens the vehicle's state and runs agent passes until one is idle
 * or reboots.
 */
import { createLogger } from '../../core/logger.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { BootState, DATA, parseJson, RUN } from '../../firmware/keys/layout.ts';
import { commitRelease } from '../../boot/commit.ts';
import { installReleasePolicy } from '../../boot/measured-boot.ts';
import { backendTrustFromPem } from '../../firmware/ota/signing.ts';
import { runUpdateAgent } from '../../firmware/ota/update/agent.ts';
import { downloadBundle } from '../../firmware/ota/update/download.ts';
import { verifyJob, type JobReportStatus } from '../../firmware/ota/update/job.ts';
import type { JobReportDetail, JobsClient } from '../../firmware/ota/update/jobs-client.ts';
import { HttpsBundleFetch } from '../../hal/http/https-fetch.ts';
import { FsPartialFiles } from '../../hal/http/partial-file.ts';
import { verifyBundle } from '../../hal/rauc/bundle.ts';
import { RaucDbusInstaller } from '../../hal/rauc/dbus.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';

export interface ChildConfig {
  dataDir: string; runDir: string; tpmRunDir: string; tcti: string; busAddress: string; keyring: string;
  oemJobKeyPem: string; bundleCa: string; vehicleId: string; compatible: string;
}

type FromParent = { type: 'go' } | { type: 'job'; id: number; job?: { jobId: string; document: number[] } };

const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
const log = createLogger({ level: 'info', destination: process.stdout }).child({ sub: 'OTA' });
const send = (m: unknown): void => void process.send!(m);
const waiting = new Map<number, (job: { jobId: string; document: number[] } | undefined) => void>();
let seq = 0;
const jobs: JobsClient = {
  next: () => new Promise((resolve) => {
    const id = ++seq;
    waiting.set(id, (j) => resolve(j ? { jobId: j.jobId, document: new Uint8Array(j.document) } : undefined));
    send({ type: 'next', id });
  }),
  report: async (jobId: string, status: JobReportStatus, detail?: JobReportDetail) => send({ type: 'report', jobId, status, detail }),
};

async function main(): Promise<void> {
  // Modules are loaded; the vehicle's state is opened only after `go` (the parent may power-cycle in between).
  send({ type: 'ready' });
  await new Promise<void>((resolve) => {
    process.on('message', (m: FromParent) => {
      if (m.type === 'go') resolve();
      if (m.type === 'job') waiting.get(m.id)?.(m.job);
    });
  });
  log.info({ cp: 'OTA-AGENT-START' }, 'update agent starts');
  const data = await FsStore.open(cfg.dataDir);
  const run = await FsStore.open(cfg.runDir);
  const tpm = await Tpm2Tools.open({ tcti: cfg.tcti, runDir: cfg.tpmRunDir });
  const installer = await RaucDbusInstaller.connect({ busAddress: cfg.busAddress, log });
  const trust = backendTrustFromPem(cfg.oemJobKeyPem);
  const d = { tpm, data, run, log };
  const withKeys = async <T>(fn: (k: KeyService) => Promise<T>): Promise<T> => {
    const keys = await KeyService.open(d);
    try {
      return await fn(keys);
    } finally {
      await keys.close();
    }
  };
  const counter = async (): Promise<number> => {
    const rec = JSON.parse(Buffer.from((await data.read(DATA.record))!).toString('utf8')) as { nvCounter: { index: number } };
    return Number(await tpm.nvReadCounter(rec.nvCounter.index));
  };
  const deps = {
    jobs, log,
    verifyJob: async (document: Uint8Array) => verifyJob(document, {
      oemJobKey: trust, vehicleId: cfg.vehicleId, runningVersion: parseJson(BootState, await run.read(RUN.boot), 'boot state', 'KEYS_NOT_BOOTED').version,
      counterVersion: await counter(), compatible: cfg.compatible, now: new Date(),
    }),
    download: (job: Parameters<typeof downloadBundle>[0], onProgress: (p: { bytes: number; total: number }) => void) => downloadBundle(job, {
      fetch: new HttpsBundleFetch({ ca: cfg.bundleCa, idleTimeoutMs: 10_000 }), data, files: new FsPartialFiles(cfg.dataDir), log, onProgress, retryDelayMs: 50,
    }),
    verifyBundle: (path: string) => verifyBundle(path, cfg.keyring),
    slot: {
      installer, data, run, log,
      reboot: { reboot: async (reason: string) => { send({ type: 'reboot', reason }); await new Promise(() => undefined); } },
      installPolicy: async (policy: unknown, version: number) => void (await installReleasePolicy(d, policy, version)),
      healthCheck: () => withKeys(async (k) => (await k.selfTest()).key),
      commit: () => withKeys(async (keys) => {
        const c = await commitRelease({ ...d, keys });
        return { from: c.from, to: c.to };
      }),
    },
  };
  for (;;) {
    const o = await runUpdateAgent(deps);
    send({ type: 'outcome', outcome: o });
    if (o.status === 'idle' || o.status === 'rebooting') break;
  }
  await installer.close();
  await tpm.close();
  process.exit(0);
}

main().catch((err: unknown) => {
  log.error({ cp: 'OTA-AGENT-CRASH', err: err instanceof Error ? err.message : String(err), code: (err as { code?: string }).code }, 'agent pass failed');
  send({ type: 'crash', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
