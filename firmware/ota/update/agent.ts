import { isEvccError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/logger.ts';
import type { BundleInfo } from '../../../hal/rauc/types.ts';
import { acknowledgeUpdate, afterBoot, confirmBootedSlot, installRelease, releaseBundle, type AfterBootOutcome, type SlotUpdateDeps } from './after-boot.ts';
import type { DownloadedBundle, DownloadProgress } from './download.ts';
import type { VerifiedJob } from './job.ts';
import type { JobsClient } from './jobs-client.ts';
import type { SecurityDetail, SecurityEvents } from '../../log/security-log.ts';

/**
 * The vehicle's update agent (issue #10; ARCHITECTURE.md §4): one pass of
 *
 *   after boot (finish or report the update the record names) → next job → verifyJob (OEM signature, vehicle,
 *   anti-rollback, compatible) → download (HTTPS, Range resume, size cap, SHA-256) → `rauc info` against the OEM
 *   keyring (signature, version, compatible) → installRelease (policy ticket, RAUC InstallBundle over D-Bus,
 *   progress) → reboot hook … after the reboot, the next pass: afterBoot (boot check approved it, health check:
 *   the contract key signs through the new policy, Mark good, counter raised) → job report.
 *
 * Every step is logged (`OTA` subsystem, checkpoint ids OTA-AGENT-*) and resumable after a power loss at any point:
 * the backend keeps the job in progress (next() returns it again), the download resumes from its fsynced partial
 * file, the slot half keeps its update record (after-boot.ts) including the outcome until its report went out.
 * The counter is only ever raised inside afterBoot, after Mark good of a slot that booted and proved itself.
 */
export interface UpdateAgentDeps {
  jobs: JobsClient;
  /** verifyJob (job.ts) bound to this vehicle's context (trust, id, running version, counter, compatible, clock). */
  verifyJob(document: Uint8Array): Promise<VerifiedJob> | VerifiedJob;
  /** downloadBundle (download.ts) with the vehicle's HTTPS port: to releases/v<N>/bundle.raucb, SHA-256 checked. */
  download(job: VerifiedJob, onProgress: (p: DownloadProgress) => void): Promise<Pick<DownloadedBundle, 'path' | 'sha256'>>;
  /** `rauc info` against the OEM keyring (hal/rauc/bundle.ts verifyBundle). */
  verifyBundle(path: string): Promise<BundleInfo>;
  /** The slot half (installer, reboot hook, policy, health check, commit). */
  slot: SlotUpdateDeps;
  log: Logger;
  /** The security log (firmware/log/security-log.ts): one `ota.update-step` entry per step and outcome. */
  events?: SecurityEvents;
  /**
   * Why new jobs must wait, or undefined to take them. The runtime holds them while its boot was not approved
   * (degraded): an unmeasured runtime does not drive the installer, and the jobs stay queued at the backend (not
   * rejected) until a measured boot. The update a record names is still finished (afterBoot) in any state.
   */
  holdJobs?(): Promise<string | undefined>;
}

export type AgentOutcome =
  | { status: 'idle' }
  /** New jobs are held (holdJobs): nothing asked of the backend. */
  | { status: 'held'; reason: string }
  /** A job was refused before anything was installed (reported `rejected`). */
  | { status: 'rejected'; jobId: string; code: string; reason: string }
  /** Installed, reboot requested: the next pass after the reboot continues. */
  | { status: 'rebooting'; jobId: string; version: number; slot: string }
  /** An update finished after a reboot and was reported. */
  | { status: 'reported'; outcome: AfterBootOutcome };

/** One update step in the security log (never throws: SecurityEvents.record logs its own failure). */
const step = async (d: UpdateAgentDeps, detail: SecurityDetail): Promise<void> => {
  await d.events?.record('ota.update-step', detail);
};

const errCode = (err: unknown): string => (isEvccError(err) ? err.code : 'UNKNOWN');
const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Percent of the whole job: download 0–50, install 50–100 (RAUC's own percentage scaled). */
const downloadPercent = (p: DownloadProgress): number => Math.min(50, Math.floor((p.bytes / Math.max(1, p.total)) * 50));

export async function runUpdateAgent(d: UpdateAgentDeps): Promise<AgentOutcome> {
  const log = d.log;
  // 1. The update a previous run left: finished after this boot, or its reboot still pending.
  const after = await afterBoot(d.slot);
  if (after?.status === 'rebooting') {
    log.info({ cp: 'OTA-AGENT-REBOOT-PENDING', jobId: after.jobId, version: after.version }, `job ${after.jobId}: ${after.reason}`);
    return { status: 'rebooting', jobId: after.jobId, version: after.version, slot: after.slot };
  }
  if (after) {
    await reportOutcome(d, after);
    await acknowledgeUpdate(d.slot.data, after.jobId);
  }
  if (await confirmBootedSlot(d.slot)) log.debug({ cp: 'OTA-AGENT-SLOT-GOOD' }, 'approved boot: booted slot marked good');
  if (after) {
    // A succeeded or failed update is the job's end; an interrupted install is retried below (the job is still open).
    if (after.status !== 'interrupted') return { status: 'reported', outcome: after };
  }

  // 2. The next job.
  const held = await d.holdJobs?.();
  if (held) {
    log.warn({ cp: 'OTA-AGENT-JOBS-HELD', reason: held }, `update jobs held: ${held}`);
    return { status: 'held', reason: held };
  }
  const next = await d.jobs.next();
  if (!next) {
    log.debug({ cp: 'OTA-AGENT-IDLE' }, 'no pending update job');
    return { status: 'idle' };
  }
  log.info({ cp: 'OTA-AGENT-JOB', jobId: next.jobId }, `update job ${next.jobId} received`);
  let job: VerifiedJob;
  try {
    job = await d.verifyJob(next.document);
  } catch (err) {
    return reject(d, next.jobId, err, 'job refused');
  }
  log.info({ cp: 'OTA-AGENT-JOB-VERIFIED', jobId: job.jobId, version: job.version, size: job.bundle.size }, `job ${job.jobId}: release v${job.version} (${job.bundle.size} bytes), OEM signature verified`);
  await step(d, { job: job.jobId, version: job.version, step: 'job-verified', bundleSha256: job.bundle.sha256 });
  await d.jobs.report(job.jobId, 'in_progress', { progress: 0 });

  // 3. Download (resumes a partial file of an earlier run).
  let lastReported = 0;
  const progress = (percent: number): void => {
    if (percent < lastReported + 10) return;
    lastReported = percent;
    void d.jobs.report(job.jobId, 'in_progress', { progress: percent }).catch((err: unknown) => log.warn({ cp: 'OTA-AGENT-REPORT-FAILED', err: errText(err) }, 'progress report failed'));
  };
  let bundle: Pick<DownloadedBundle, 'path' | 'sha256'>;
  try {
    log.info({ cp: 'OTA-AGENT-DOWNLOAD', jobId: job.jobId, url: job.bundle.url }, `job ${job.jobId}: downloading ${job.bundle.url}`);
    bundle = await d.download(job, (p) => progress(downloadPercent(p)));
  } catch (err) {
    if (isDownloadRefusal(err)) return reject(d, job.jobId, err, 'download refused');
    throw err; // network trouble: the job stays in progress, the partial file stays, the next pass resumes
  }
  log.info({ cp: 'OTA-AGENT-DOWNLOADED', jobId: job.jobId, sha256: bundle.sha256 }, `job ${job.jobId}: bundle downloaded, SHA-256 matches the job`);
  await step(d, { job: job.jobId, version: job.version, step: 'downloaded', sha256: bundle.sha256 });

  // 4. The bundle's own signature (RAUC, OEM keyring) and that it is the release the job names.
  try {
    const info = await d.verifyBundle(bundle.path);
    if (info.version !== String(job.version) || info.compatible !== job.compatible) {
      await d.slot.data.remove(releaseBundle(job.version));
      return reject(d, job.jobId, Object.assign(new Error(`bundle is v${info.version} for '${info.compatible}', the job names v${job.version} for '${job.compatible}'`), { code: 'BUNDLE_INVALID' }), 'bundle refused');
    }
  } catch (err) {
    await d.slot.data.remove(releaseBundle(job.version));
    return reject(d, job.jobId, err, 'bundle refused');
  }
  log.info({ cp: 'OTA-AGENT-BUNDLE-VERIFIED', jobId: job.jobId, version: job.version }, `job ${job.jobId}: RAUC verified the bundle signature (OEM keyring)`);
  await step(d, { job: job.jobId, version: job.version, step: 'bundle-verified' });
  progress(50);

  // 5. Install through RAUC, then the reboot hook.
  try {
    const { slot } = await installRelease(d.slot, {
      jobId: job.jobId, version: job.version, policy: job.policy,
      onProgress: (p) => progress(50 + Math.floor(p.percentage / 2)),
    });
    await step(d, { job: job.jobId, version: job.version, step: 'installed', slot });
    return { status: 'rebooting', jobId: job.jobId, version: job.version, slot };
  } catch (err) {
    if (errCode(err) === 'RAUC_INSTALL_FAILED' || errCode(err) === 'BOOT_POLICY_MISMATCH' || errCode(err) === 'BUNDLE_INVALID') {
      await step(d, { job: job.jobId, version: job.version, step: 'install-failed', code: errCode(err) });
      await d.jobs.report(job.jobId, 'failed', { code: errCode(err), reason: errText(err) });
      log.warn({ cp: 'OTA-AGENT-INSTALL-FAILED', jobId: job.jobId, code: errCode(err) }, `job ${job.jobId}: install failed: ${errText(err)}`);
      return { status: 'rejected', jobId: job.jobId, code: errCode(err), reason: errText(err) };
    }
    throw err;
  }
}

/** Refusals of the download that no retry fixes (wrong digest, oversized, TLS identity): the job is rejected. */
function isDownloadRefusal(err: unknown): boolean {
  return ['OTA_DOWNLOAD_SHA256_MISMATCH', 'OTA_DOWNLOAD_OVERSIZED', 'OTA_DOWNLOAD_TLS', 'OTA_DOWNLOAD_URL_REFUSED', 'OTA_DOWNLOAD_HTTP'].includes(errCode(err));
}

async function reject(d: UpdateAgentDeps, jobId: string, err: unknown, what: string): Promise<AgentOutcome> {
  const code = errCode(err);
  const reason = errText(err);
  d.log.warn({ cp: 'OTA-AGENT-REJECTED', jobId, code }, `job ${jobId}: ${what} (${code}): ${reason}`);
  await step(d, { job: jobId, step: 'rejected', code, what });
  await d.jobs.report(jobId, 'rejected', { code, reason });
  return { status: 'rejected', jobId, code, reason };
}

async function reportOutcome(d: UpdateAgentDeps, o: AfterBootOutcome): Promise<void> {
  await step(d, { job: o.jobId, step: o.status, ...('code' in o && typeof o.code === 'string' ? { code: o.code } : {}) });
  if (o.status === 'succeeded') {
    await d.jobs.report(o.jobId, 'succeeded', { progress: 100 });
  } else if (o.status === 'failed') {
    await d.jobs.report(o.jobId, 'failed', { code: o.code, reason: o.reason });
  } else if (o.status === 'interrupted') {
    await d.jobs.report(o.jobId, 'in_progress', { reason: o.reason });
  }
  d.log.info({ cp: 'OTA-AGENT-REPORTED', jobId: o.jobId, status: o.status }, `job ${o.jobId}: reported ${o.status}`);
}
