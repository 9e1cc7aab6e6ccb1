import type { Clock } from '../../hal/clock/types.ts';
import type { MqttClient } from '../../hal/mqtt/types.ts';
import type { Logger } from '../../core/logger.ts';
import type { RootApproval } from '../pki/root-approval.ts';
import { ApprovedRootListAnswer, assertAnswerApproval } from './approved-answers.ts';
import { OTA_MAX_ROOT_LIST_BYTES, vehicleTopics } from './constants.ts';
import { otaError } from './errors.ts';
import { decodeMessage } from './messages.ts';
import type { ApprovedRootStorePort } from './pki-adapter.ts';
import { checkV2gRootProfile, parseDer } from './root-check.ts';
import type { MqttRpc } from './rpc.ts';
import { rootListDigest, rootListSigningInput, sha256Hex, verifyInput, type BackendTrust } from './signing.ts';

/**
 * Proactive mode: while online (at home, on the road), fetch the Root Certificate Pool's full list of V2G roots
 * and install the ones we lack, so the fetch at the charger is rarely needed. Same trust rules as the single fetch
 * (OEM signature over request id, nonce and the list digest; V2G root profile per certificate). There is no SECC
 * chain to anchor here, so each root is checked for its profile only. Add-only: a root disappearing from the pool
 * is not removed here (removal is a signed policy decision, not a side effect of a sync). Each root's OEM approval
 * (approved-answers.ts) is verified with the same key and stored with it; a root already installed without one
 * gets it attached, so factory roots installed before approvals existed become verifiable in degraded mode too.
 */
export interface RootSyncResult {
  installed: string[];
  alreadyPresent: number;
  rejected: { subject?: string; code: string; message: string }[];
  /** Roots the store refused (bound reached, per its policy). */
  notInstalled: { subject: string; code: string }[];
}

export interface RootSyncOptions {
  rpc: MqttRpc;
  vehicleId: string;
  trust: BackendTrust | undefined;
  store: ApprovedRootStorePort;
  clock: Clock;
  log: Logger;
  budgetMs: number;
  wallTime?: () => Date;
  signal?: AbortSignal;
}

export async function syncRootList(o: RootSyncOptions): Promise<RootSyncResult> {
  const trust = o.trust;
  if (!trust) throw otaError('OTA_BACKEND_KEY_MISSING', 'no OEM backend key installed at production; refusing to sync roots');
  const topics = vehicleTopics(o.vehicleId);
  const requestId = o.rpc.newRequestId();
  const nonce = o.rpc.newNonce();
  o.log.info({ requestId }, 'syncing V2G root list from OEM backend');
  const certs = await o.rpc.call(
    topics.rootListRequest,
    { v: 1, type: 'roots.req', requestId, nonce },
    async (payload) => {
      const a = decodeMessage(ApprovedRootListAnswer, payload, OTA_MAX_ROOT_LIST_BYTES);
      if (a.nonce !== nonce) throw otaError('OTA_ANSWER_REPLAYED', `root list answer to ${requestId} carries a nonce we did not send`);
      if (a.keyId !== trust.keyId) throw otaError('OTA_ANSWER_UNTRUSTED_SIGNER', 'root list signed by a key other than the OEM backend key', { keyId: a.keyId });
      const ders = a.certs.map((c) => new Uint8Array(Buffer.from(c, 'base64')));
      const input = rootListSigningInput({ vehicleId: o.vehicleId, requestId, nonce, status: a.status, certDigest: rootListDigest(ders) });
      if (!verifyInput(trust.publicKey, input, new Uint8Array(Buffer.from(a.sig, 'base64')))) {
        throw otaError('OTA_ANSWER_SIGNATURE_INVALID', `signature of the root list answer to ${requestId} does not verify`);
      }
      if (a.status === 'denied') throw otaError('OTA_REQUEST_DENIED', 'OEM backend refused the root list request');
      if (a.approvals && a.approvals.length !== ders.length) {
        throw otaError('OTA_ANSWER_MALFORMED', `root list answer to ${requestId} carries ${a.approvals.length} approvals for ${ders.length} roots`);
      }
      if (!a.approvals && ders.length) o.log.warn({ requestId }, 'root list carries no OEM approvals: its roots will be trusted in full mode only');
      return ders.map((der, i) => ({ der, approval: a.approvals?.[i] }));
    },
    { deadline: o.clock.now() + o.budgetMs, ...(o.signal ? { signal: o.signal } : {}) },
  );

  const have = new Set((await o.store.list()).map((d) => sha256Hex(d)));
  const result: RootSyncResult = { installed: [], alreadyPresent: 0, rejected: [], notInstalled: [] };
  const now = o.wallTime?.() ?? new Date();
  for (const { der, approval } of certs) {
    const present = have.has(sha256Hex(der));
    if (present && !approval) {
      result.alreadyPresent++;
      continue;
    }
    let subject: string | undefined;
    try {
      const root = parseDer(der, 'root certificate');
      subject = root.subject;
      checkV2gRootProfile(root, now);
      if (approval) assertAnswerApproval(trust, der, approval, now, subject);
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (present) {
        // Installed already (and trusted as it is); only the statement that came along is refused.
        result.alreadyPresent++;
        o.log.warn({ subject, code: e.code }, `OEM approval from the list not attached to the installed root: ${e.message}`);
        continue;
      }
      result.rejected.push({ ...(subject ? { subject } : {}), code: e.code ?? 'INTERNAL', message: e.message ?? String(err) });
      o.log.warn({ subject, code: e.code }, `root from list refused: ${e.message}`);
      continue;
    }
    const meta: { source: string; approval?: RootApproval } = { source: `ota-sync:${requestId}`, ...(approval ? { approval } : {}) };
    if (present) {
      // Idempotent in the store; attaches the approval to a root that has none (or an older one).
      await o.store.install(der, meta).catch((err: unknown) => o.log.warn({ subject, code: (err as { code?: string }).code }, 'OEM approval not attached to the installed root'));
      result.alreadyPresent++;
      continue;
    }
    try {
      await o.store.install(der, meta);
      have.add(sha256Hex(der));
      result.installed.push(subject);
      o.log.info({ subject, sha256: sha256Hex(der) }, 'V2G root installed');
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'INTERNAL';
      result.notInstalled.push({ subject, code });
      o.log.warn({ subject, code }, `V2G root not installed: ${(err as Error).message}`);
    }
  }
  o.log.info({ installed: result.installed.length, alreadyPresent: result.alreadyPresent, rejected: result.rejected.length }, 'V2G root list synced');
  return result;
}

/**
 * Runs the proactive sync whenever the link comes up and then every `intervalMs` while it stays up, one sync at a
 * time. Failures are logged (typed) and retried at the next connect or interval; they never touch the store.
 */
export interface RootSyncSchedulerOptions extends Omit<RootSyncOptions, 'signal'> {
  client: MqttClient;
  intervalMs: number;
}

export class RootSyncScheduler {
  private timer: ReturnType<Clock['setTimer']> | undefined;
  private running: Promise<void> | undefined;
  private detach: (() => void) | undefined;
  private readonly abort = new AbortController();
  /** Outcome of the last sync (result or typed error code). */
  last: { at: number; result?: RootSyncResult; error?: string } | undefined;
  runs = 0;

  constructor(private readonly o: RootSyncSchedulerOptions) {}

  start(): void {
    this.detach = this.o.client.onStatus((s) => {
      if (s === 'connected') this.trigger();
    });
    if (this.o.client.status === 'connected') this.trigger();
  }

  /** Starts a sync now unless one is running. Resolves when that sync has ended. */
  trigger(): Promise<void> {
    if (this.running) return this.running;
    if (this.timer !== undefined) this.o.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.runs++;
    this.running = syncRootList({ ...this.o, signal: this.abort.signal })
      .then((result) => {
        this.last = { at: this.o.clock.now(), result };
      })
      .catch((err: unknown) => {
        const code = (err as { code?: string }).code ?? 'INTERNAL';
        this.last = { at: this.o.clock.now(), error: code };
        this.o.log.warn({ code }, `V2G root list sync failed: ${(err as Error).message}`);
      })
      .finally(() => {
        this.running = undefined;
        if (!this.abort.signal.aborted) {
          this.timer = this.o.clock.setTimer(() => {
            this.timer = undefined;
            if (this.o.client.status === 'connected') void this.trigger();
          }, this.o.intervalMs);
        }
      });
    return this.running;
  }

  stop(): void {
    this.abort.abort(new Error('stopped'));
    this.detach?.();
    if (this.timer !== undefined) this.o.clock.clearTimer(this.timer);
    this.timer = undefined;
  }
}
