import { z } from 'zod';
import { EvccError, isEvccError } from '../../../core/errors.ts';
import type { Logger } from '../../../core/logger.ts';
import type { InstallProgress, RebootHook, SlotInstaller } from '../../../hal/rauc/types.ts';
import type { FileStore } from '../../../hal/store/types.ts';
import { BootState, parseJson, RUN } from '../../keys/layout.ts';

/**
 * The slot half of an OTA update (issue #10; ARCHITECTURE.md §4): a verified bundle goes into the other slot through
 * RAUC, the reboot is requested, and after the reboot the new release must prove itself before anything
 * irreversible happens:
 *
 *   installRelease:  record `installing` → the release's signed policy stored (ticket) → RAUC InstallBundle (progress)
 *                    → record `installed` (target slot, now RAUC's primary) → record `rebooting` → reboot hook
 *   afterBoot:       booted the target? the boot check approved this release (run/boot.json)? the health check
 *                    (the contract key signs through the new policy, on the TPM)? → Mark good → commit (NV
 *                    anti-rollback counter raised) → succeeded.  Any refusal → record `failed` with the reason →
 *                    Mark bad → reboot → RAUC/the boot loader boots the other slot → failed, counter unchanged.
 *
 * The update record (data dir, atomic replace) is what makes every step resumable after a power loss: each step is
 * idempotent and the next boot's afterBoot() finds out from the record, the booted slot and RAUC's primary where it
 * stopped. Order matters for "never lock the keys": the slot is marked good BEFORE the counter is raised, so a
 * crash between them leaves a good slot with the counter unraised (the next run commits); raising first could
 * leave a not-yet-good slot that the boot loader gives up on, falling back to a release the counter now refuses.
 * Once committed, the old release in the other slot can no longer use the keys (that is the anti-rollback).
 *
 * The bundle of release N lives at `releases/v<N>/bundle.raucb` in the data dir (the download's destination): the
 * boot check of a later boot verifies the bundle of whichever slot booted (boot/measured-boot.ts bootedReleaseBundle).
 */
export const UPDATE_RECORD = 'ota/update.json';
/** Failure codes of this module's own (the others are the boot check's, the TPM's and RAUC's). */
export type UpdateErrorCode = 'OTA_UPDATE_FELL_BACK';
export const releaseBundle = (version: number): string => `releases/v${version}/bundle.raucb`;

const Phase = z.enum(['installing', 'installed', 'rebooting', 'failed', 'finished']);
export const UpdateRecord = z.object({
  format: z.literal('evcc-update/1'),
  jobId: z.string().min(1),
  version: z.number().int().positive(),
  /** Bootname (A/B) of the slot that ran when the update began. */
  fromSlot: z.string().min(1),
  /** Bootname RAUC installed into (known from `installed` on). */
  targetSlot: z.string().optional(),
  phase: Phase,
  failure: z.object({ code: z.string(), reason: z.string() }).optional(),
  /** Phase `finished`: the outcome, kept until the job's report went out (acknowledgeUpdate). */
  outcome: z.object({ status: z.enum(['succeeded', 'failed', 'interrupted']), slot: z.string(), code: z.string().optional(), reason: z.string().optional(),
    counter: z.object({ from: z.string(), to: z.string() }).optional() }).optional(),
  updatedAt: z.string(),
});
export type UpdateRecord = z.infer<typeof UpdateRecord>;

export interface SlotUpdateDeps {
  installer: SlotInstaller;
  reboot: RebootHook;
  data: FileStore;
  run: FileStore;
  log: Logger;
  /** Verifies the release's OEM-signed state policy in the TPM and caches its ticket (boot/measured-boot.ts installReleasePolicy). */
  installPolicy(policy: unknown, version: number): Promise<void>;
  /** Proves the running release can use the contract key: a signature through its policy on the TPM (KeyService.selfTest). */
  healthCheck(): Promise<string>;
  /** Raises the NV anti-rollback counter to the running release (boot/commit.ts commitRelease). */
  commit(): Promise<{ from: string; to: string }>;
  now?: () => Date;
  /** Pause while RAUC finishes an install a killed runtime had started (the clock port; default setTimeout). */
  sleep?: (ms: number) => Promise<void>;
}

export interface InstallRequest {
  jobId: string;
  version: number;
  /** The release's OEM-signed state policy (from the signed job document). */
  policy: unknown;
  onProgress?: (p: InstallProgress) => void;
}

export type AfterBootOutcome =
  | { status: 'succeeded'; jobId: string; version: number; slot: string; counter: { from: string; to: string } }
  | { status: 'failed'; jobId: string; version: number; slot: string; code: string; reason: string }
  /** The install did not finish before a power loss; nothing changed: the job may retry. */
  | { status: 'interrupted'; jobId: string; version: number; slot: string; reason: string }
  /** A reboot was (re)requested; afterBoot() continues after it. */
  | { status: 'rebooting'; jobId: string; version: number; slot: string; reason: string };

async function readRecord(data: FileStore): Promise<UpdateRecord | undefined> {
  const bytes = await data.read(UPDATE_RECORD);
  return bytes ? parseJson(UpdateRecord, bytes, 'update record', 'STORE_CORRUPT') : undefined;
}

async function writeRecord(d: SlotUpdateDeps, r: Omit<UpdateRecord, 'format' | 'updatedAt'>): Promise<UpdateRecord> {
  const record: UpdateRecord = { format: 'evcc-update/1', ...r, updatedAt: (d.now?.() ?? new Date()).toISOString() };
  await d.data.writeAtomic(UPDATE_RECORD, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  return record;
}

/** The update in progress, if any (for status and for the job's resume). */
export function pendingUpdate(data: FileStore): Promise<UpdateRecord | undefined> {
  return readRecord(data);
}

/** Install → reboot. Resolves once the reboot is requested. A failed install leaves the record removed and rejects. */
export async function installRelease(d: SlotUpdateDeps, req: InstallRequest): Promise<{ slot: string }> {
  const bundle = releaseBundle(req.version);
  if (!(await d.data.exists(bundle))) throw new EvccError('IO_FAILED', `bundle of v${req.version} not at ${bundle} in the data dir`, { bundle });
  const pending = await readRecord(d.data);
  if (pending) throw new EvccError('RAUC_BUSY', `update of job ${pending.jobId} (v${pending.version}) is ${pending.phase}`, { jobId: pending.jobId, phase: pending.phase });
  const fromSlot = await d.installer.bootSlot();
  const base = { jobId: req.jobId, version: req.version, fromSlot };
  await writeRecord(d, { ...base, phase: 'installing' });
  d.log.info({ cp: 'OTA-UPDATE-INSTALL', jobId: req.jobId, version: req.version, fromSlot }, `update v${req.version}: installing (running slot ${fromSlot})`);
  let slot: string;
  try {
    // Before the install: a stored policy for a release that never boots unlocks nothing (PCR 14 decides).
    await d.installPolicy(req.policy, req.version);
    ({ bootname: slot } = await d.installer.install(`${d.data.root}/${bundle}`, { onProgress: req.onProgress }));
  } catch (err) {
    await d.data.remove(UPDATE_RECORD);
    throw err;
  }
  await writeRecord(d, { ...base, targetSlot: slot, phase: 'installed' });
  await writeRecord(d, { ...base, targetSlot: slot, phase: 'rebooting' });
  d.log.info({ cp: 'OTA-UPDATE-REBOOT', jobId: req.jobId, version: req.version, slot }, `update v${req.version} installed into slot ${slot}: rebooting into it`);
  await d.reboot.reboot(`update v${req.version} (job ${req.jobId}) installed into slot ${slot}`);
  return { slot };
}

async function failAndFallBack(d: SlotUpdateDeps, r: UpdateRecord, code: string, reason: string): Promise<AfterBootOutcome> {
  await writeRecord(d, { ...r, phase: 'failed', failure: { code, reason } });
  d.log.warn({ cp: 'OTA-UPDATE-HEALTH-FAILED', jobId: r.jobId, version: r.version, code }, `update v${r.version} failed its health check (${code}): ${reason}; marking slot bad, rebooting`);
  await d.installer.mark('bad', 'booted');
  await d.reboot.reboot(`update v${r.version} failed: ${reason}`);
  return { status: 'rebooting', jobId: r.jobId, version: r.version, slot: r.targetSlot ?? '', reason };
}

function storedOutcome(r: UpdateRecord): AfterBootOutcome {
  const o = r.outcome!;
  const base = { jobId: r.jobId, version: r.version, slot: o.slot };
  if (o.status === 'succeeded') return { status: 'succeeded', ...base, counter: o.counter ?? { from: '?', to: '?' } };
  if (o.status === 'failed') return { status: 'failed', ...base, code: o.code ?? 'UNKNOWN', reason: o.reason ?? '' };
  return { status: 'interrupted', ...base, reason: o.reason ?? '' };
}

/** The outcome of a finished update was reported: the record goes (a new update may start). */
export async function acknowledgeUpdate(data: FileStore, jobId: string): Promise<void> {
  const r = await readRecord(data);
  if (r?.phase === 'finished' && r.jobId === jobId) await data.remove(UPDATE_RECORD);
}

async function waitIdle(d: SlotUpdateDeps, timeoutMs = 600_000): Promise<void> {
  const sleep = d.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let waited = 0; (await d.installer.operation()) !== 'idle'; waited += 200) {
    if (waited >= timeoutMs) throw new EvccError('RAUC_BUSY', `RAUC still installs after ${timeoutMs} ms`, { timeoutMs });
    await sleep(200);
  }
}

/**
 * After every boot (runtime start, after `evcc boot`): finishes or reports the update the record names. Returns
 * undefined when no update is pending. A finished update's outcome is returned again on every call until
 * acknowledgeUpdate() (its report delivered): a power loss before the job report loses nothing.
 */
export async function afterBoot(d: SlotUpdateDeps): Promise<AfterBootOutcome | undefined> {
  const r = await readRecord(d.data);
  if (!r) return undefined;
  const booted = await d.installer.bootSlot();
  if (r.phase === 'finished' && r.outcome) return storedOutcome(r);
  const finish = async (o: AfterBootOutcome): Promise<AfterBootOutcome> => {
    // Kept, not removed: the job's report must survive a power loss between here and its delivery.
    const { status, slot } = o;
    await writeRecord(d, { ...r, phase: 'finished', outcome: { status: status as 'succeeded' | 'failed' | 'interrupted', slot,
      ...('code' in o ? { code: o.code } : {}), ...('reason' in o ? { reason: o.reason } : {}), ...('counter' in o ? { counter: o.counter } : {}) } });
    d.log.info({ cp: `OTA-UPDATE-${o.status.toUpperCase()}`, jobId: o.jobId, version: o.version, slot: o.slot }, `update v${o.version} (job ${o.jobId}): ${o.status}${'reason' in o ? `: ${o.reason}` : ''}`);
    return o;
  };
  const base = { jobId: r.jobId, version: r.version, slot: booted };

  if (r.phase === 'failed') {
    // Marked bad, reboot requested; still running the bad slot means the reboot did not happen: ask again.
    if (booted === r.targetSlot) return failAndFallBack(d, r, r.failure?.code ?? 'UNKNOWN', r.failure?.reason ?? 'health check failed');
    return finish({ status: 'failed', ...base, code: r.failure?.code ?? 'UNKNOWN', reason: `${r.failure?.reason ?? 'health check failed'}; slot ${booted} runs again` });
  }

  if (booted === r.fromSlot) {
    // The runtime restarted while RAUC still installs (only the process died, not the machine): wait for its end.
    await waitIdle(d);
    const primary = await d.installer.primary();
    const primaryBootname = (await d.installer.slots()).find((s) => s.name === primary)?.bootname;
    if (primaryBootname && primaryBootname !== booted && (r.phase !== 'installing' || !r.targetSlot || primaryBootname === r.targetSlot)) {
      // RAUC finished the install (it makes the target primary only after writing it completely), the process died
      // before or during the reboot request, the machine never rebooted: request it again.
      const r2 = r.targetSlot === primaryBootname && r.phase === 'rebooting' ? r : await writeRecord(d, { ...r, targetSlot: primaryBootname, phase: 'rebooting' });
      d.log.info({ cp: 'OTA-UPDATE-REBOOT', jobId: r.jobId, version: r.version, slot: primaryBootname }, `update v${r.version} installed into slot ${primaryBootname}: reboot requested again`);
      await d.reboot.reboot(`update v${r.version} installed into slot ${primaryBootname}: reboot requested again`);
      return { status: 'rebooting', jobId: r2.jobId, version: r2.version, slot: booted, reason: `reboot into slot ${primaryBootname} requested again` };
    }
    if (r.phase === 'installing') {
      return finish({ status: 'interrupted', ...base, reason: `install of v${r.version} interrupted (power loss); slot ${booted} unchanged` });
    }
    return finish({ status: 'failed', ...base, code: 'OTA_UPDATE_FELL_BACK' satisfies UpdateErrorCode, reason: `slot ${r.targetSlot ?? '?'} did not boot: the boot loader fell back to slot ${booted}` });
  }

  // The new slot runs (also when power failed after RAUC finished but before the record said so).
  const r2 = r.targetSlot === booted ? r : await writeRecord(d, { ...r, targetSlot: booted, phase: 'rebooting' });
  let state: BootState;
  try {
    state = parseJson(BootState, await d.run.read(RUN.boot), 'boot state', 'KEYS_NOT_BOOTED');
  } catch (err) {
    return failAndFallBack(d, r2, isEvccError(err) ? err.code : 'UNKNOWN', `the boot check did not approve v${r.version} in slot ${booted} (runtime degraded)`);
  }
  if (state.version !== r.version) {
    return failAndFallBack(d, r2, 'BOOT_POLICY_MISMATCH', `slot ${booted} booted v${state.version}, the update is v${r.version}`);
  }
  try {
    const proof = await d.healthCheck();
    d.log.info({ cp: 'OTA-UPDATE-HEALTHY', version: r.version, proof }, `update v${r.version}: the ${proof} key signs through the new policy`);
  } catch (err) {
    return failAndFallBack(d, r2, isEvccError(err) ? err.code : 'UNKNOWN', `health check: ${err instanceof Error ? err.message : String(err)}`);
  }
  await d.installer.mark('good', 'booted');
  const counter = await d.commit();
  d.log.info({ cp: 'OTA-UPDATE-COMMITTED', version: r.version, ...counter }, `update v${r.version}: slot ${booted} marked good, anti-rollback counter ${counter.from} -> ${counter.to}`);
  return finish({ status: 'succeeded', ...base, counter });
}

/**
 * A boot the boot check approved, with no update of this slot pending: RAUC `Mark good` of the booted slot (what
 * rauc-mark-good.service does on a plain RAUC system), so the boot loader's try counter of the running slot never
 * runs out. A degraded boot (no boot state) is not confirmed. Returns whether it marked.
 */
export async function confirmBootedSlot(d: Pick<SlotUpdateDeps, 'installer' | 'run' | 'log' | 'data'>): Promise<boolean> {
  const pending = await readRecord(d.data);
  if (pending && pending.phase !== 'finished') return false;
  try {
    parseJson(BootState, await d.run.read(RUN.boot), 'boot state', 'KEYS_NOT_BOOTED');
  } catch {
    return false;
  }
  await d.installer.mark('good', 'booted');
  return true;
}
