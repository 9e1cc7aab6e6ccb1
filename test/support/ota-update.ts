import { createHash, generateKeyPairSync, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../core/logger.ts';
import { silentLogger } from '../../core/logger.ts';
import { sha256File } from '../../hal/store/hash.ts';
import { toHex } from '../../firmware/keys/policy.ts';
import { BootState, parseJson, RUN } from '../../firmware/keys/layout.ts';
import { backendTrustFromPem, type BackendTrust } from '../../firmware/ota/signing.ts';
import { runUpdateAgent, type AgentOutcome, type UpdateAgentDeps } from '../../firmware/ota/update/agent.ts';
import type { SlotUpdateDeps } from '../../firmware/ota/update/after-boot.ts';
import { downloadBundle } from '../../firmware/ota/update/download.ts';
import { JOB_DOCUMENT_FORMAT, signJobWithKey, verifyJob, type JobDocument } from '../../firmware/ota/update/job.ts';
import type { JobReportDetail, JobsClient } from '../../firmware/ota/update/jobs-client.ts';
import type { JobReportStatus } from '../../firmware/ota/update/job.ts';
import { HttpsBundleFetch } from '../../hal/http/https-fetch.ts';
import { FsPartialFiles } from '../../hal/http/partial-file.ts';
import { verifyBundle } from '../../hal/rauc/bundle.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { bundleHost, type BundleHost } from '../integration/ota-download-rig.ts';
import { RIG_COMPATIBLE, type RaucRig, type RigRelease } from './rauc-rig.ts';

/**
 * The OEM side of an update for the RAUC tests: the backend's job-signing key, its real HTTPS bundle server behind a
 * relay that can break connections (test/integration/ota-download-rig.ts), signed job documents, and the job list
 * of one vehicle with the reports it received, in order (the backend's job record as JobService keeps it; the MQTT
 * transport of jobs is H-jobs' ota-jobs-broker test).
 */
export const VEHICLE_ID = 'VIN-RAUC-0001';

export interface Report {
  jobId: string;
  status: JobReportStatus;
  detail?: JobReportDetail;
}

/** One vehicle's jobs as the backend holds them: pending until a terminal report. */
export class VehicleJobs implements JobsClient {
  readonly reports: Report[] = [];
  private readonly pending = new Map<string, Uint8Array>();
  add(jobId: string, document: Uint8Array): void {
    this.pending.set(jobId, document);
  }
  async next(): Promise<{ jobId: string; document: Uint8Array } | undefined> {
    const [first] = this.pending.entries();
    return first ? { jobId: first[0], document: first[1] } : undefined;
  }
  async report(jobId: string, status: JobReportStatus, detail?: JobReportDetail): Promise<void> {
    this.reports.push({ jobId, status, ...(detail ? { detail } : {}) });
    if (status !== 'in_progress') this.pending.delete(jobId);
  }
  /** The job's state as the backend records it (the last report). */
  state(jobId: string): Report | undefined {
    return this.reports.filter((r) => r.jobId === jobId).at(-1);
  }
}

export class OemUpdateSide {
  private constructor(readonly host: BundleHost, readonly jobKey: { keyId: string; privateKey: KeyObject }, readonly trust: BackendTrust) {}

  static async create(): Promise<OemUpdateSide> {
    const host = await bundleHost();
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const trust = backendTrustFromPem(publicKey.export({ type: 'spki', format: 'pem' }) as string);
    return new OemUpdateSide(host, { keyId: trust.keyId, privateKey }, trust);
  }

  /** Publishes the release's bundle on the bundle server: the release as a campaign names it. */
  async publish(r: RigRelease): Promise<{ version: number; compatible: string; bundle: JobDocument['bundle']; policy: unknown }> {
    const name = `evcc-v${r.version}-${basename(r.bundle)}`;
    await copyFile(r.bundle, join(this.host.dir, name));
    const size = (await stat(r.bundle)).size;
    return { version: r.version, compatible: RIG_COMPATIBLE, bundle: { url: this.host.url(name), size, sha256: toHex(await sha256File(r.bundle)) }, policy: r.policy };
  }

  /** Publishes the release's bundle and signs a job for the vehicle with this side's job key. */
  async job(jobId: string, r: RigRelease, over: Partial<JobDocument> = {}): Promise<Uint8Array> {
    const release = await this.publish(r);
    const now = Date.now();
    const doc: JobDocument = {
      format: JOB_DOCUMENT_FORMAT, jobId, vehicleId: VEHICLE_ID, ...release,
      issuedAt: new Date(now - 60_000).toISOString(), expiresAt: new Date(now + 86_400_000).toISOString(), ...over,
    };
    return signJobWithKey(doc, this.jobKey);
  }

  async close(): Promise<void> {
    await this.host.close();
  }
}

/** The vehicle's agent wired as the runtime does: real verifyJob, HTTPS download with resume, `rauc info`, RAUC. */
export async function agentDeps(rig: RaucRig, oem: OemUpdateSide, jobs: JobsClient, slot: SlotUpdateDeps, o: { log?: Logger; trust?: BackendTrust } = {}): Promise<UpdateAgentDeps> {
  const log = o.log ?? silentLogger();
  const data = await FsStore.open(rig.dataDir);
  return {
    jobs,
    log,
    slot,
    verifyJob: async (document) => {
      const state = parseJson(BootState, await (await FsStore.open(rig.runDir)).read(RUN.boot), 'boot state', 'KEYS_NOT_BOOTED');
      return verifyJob(document, { oemJobKey: o.trust ?? oem.trust, vehicleId: VEHICLE_ID, runningVersion: state.version, counterVersion: Number(await rig.counter()),
        compatible: RIG_COMPATIBLE, now: new Date() });
    },
    download: (job, onProgress) => downloadBundle(job, {
      fetch: new HttpsBundleFetch({ ca: oem.host.ca.certPem, idleTimeoutMs: 10_000 }), data, files: new FsPartialFiles(rig.dataDir), log, onProgress, retryDelayMs: 50,
    }),
    verifyBundle: (path) => verifyBundle(path, rig.keyring),
  };
}

const SIGNED_MESSAGE = new TextEncoder().encode('SignedInfo of an AuthorizationReq');

/** The contract key signs on the vehicle's TPM now, and the signature verifies with its public key. */
export async function contractKeySigns(rig: RaucRig, contractPublicKeyPem: string): Promise<boolean> {
  const keys = await KeyService.open(await rig.lab.deps());
  try {
    const sig = await keys.signWithContractKey(new Uint8Array(createHash('sha256').update(SIGNED_MESSAGE).digest()));
    return cryptoVerify('sha256', SIGNED_MESSAGE, { key: contractPublicKeyPem, dsaEncoding: 'ieee-p1363' }, sig);
  } finally {
    await keys.close();
  }
}

export type { AgentOutcome };
export { runUpdateAgent };
export const readText = (p: string): Promise<string> => readFile(p, 'utf8');
