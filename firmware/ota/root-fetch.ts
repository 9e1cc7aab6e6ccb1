import type { Clock } from '../../hal/clock/types.ts';
import type { Logger } from '../../core/logger.ts';
import type { RootApproval } from '../pki/root-approval.ts';
import { ApprovedRootCaAnswer, assertAnswerApproval } from './approved-answers.ts';
import { OTA_MAX_ROOT_ANSWER_BYTES, vehicleTopics } from './constants.ts';
import { otaError } from './errors.ts';
import { decodeMessage, type RootCaRequest } from './messages.ts';
import type { PathValidatorPort, UnknownRootInfo } from './ports.ts';
import { checkAnchors, checkV2gRootProfile, parseDer } from './root-check.ts';
import type { MqttRpc } from './rpc.ts';
import { rootCaSigningInput, sha256Hex, verifyInput, type BackendTrust } from './signing.ts';

/**
 * Solution C, the vehicle's half (Kilic 2023 §3.2, Fig. 9): ask the OEM backend for the V2G root the SECC's chain
 * ends in, and accept the answer only if
 *  1. it is signed by the OEM backend key installed at production (key id, then signature),
 *  2. it answers this very request (request id) with this request's fresh nonce,
 *  3. the certificate is a self-signed CA with the V2G root profile, and
 *  4. it anchors the chain the SECC presented (and the whole path then validates), and
 *  5. the OEM's approved-V2G-root statement that came with it, if any, verifies with the same key (a statement
 *     that does not verify refuses the root, typed as the answer checks are). The caller stores the statement with
 *     the root, which keeps it verifiable without the TPM (degraded mode).
 * Installing is the caller's step (connectWithRootFetch), so a verified root can also be shown or refused first.
 *
 * Anybody who can publish on the reply topic can send an answer with our request id, so an answer that fails a
 * check it could fail without the backend key (1, 2, malformed, and 5: the statement is not covered by the answer's
 * signature) is refused and the fetch waits on within its budget for a valid one — a forgery must not abort a fetch
 * while the real backend is slow. A correctly signed answer is the backend's own verdict and ends the fetch, whatever
 * it says (not found, denied, a root that fails 3 or 4). Only refused answers: OTA_BACKEND_SILENT naming their count.
 */
export interface VerifiedRoot {
  der: Uint8Array;
  subject: string;
  sha256: string;
  requestId: string;
  /** The verified statement to store with the root; absent when the backend sent none (older backend). */
  approval?: RootApproval;
}

export interface RootFetcherOptions {
  rpc: MqttRpc;
  vehicleId: string;
  /** Undefined when no backend key was installed at production: every fetch then fails closed. */
  trust: BackendTrust | undefined;
  clock: Clock;
  log: Logger;
  /** Full path validation with the candidate as the only anchor (firmware/pki). */
  validatePath?: PathValidatorPort;
  /** Wall-clock time for certificate validity (the monotonic Clock has no calendar). */
  wallTime?: () => Date;
}

export interface RootFetcher {
  fetchRoot(presented: UnknownRootInfo, options: { budgetMs: number; signal?: AbortSignal }): Promise<VerifiedRoot>;
}

export class OemRootFetcher implements RootFetcher {
  private readonly topics;

  constructor(private readonly o: RootFetcherOptions) {
    this.topics = vehicleTopics(o.vehicleId);
  }

  async fetchRoot(presented: UnknownRootInfo, options: { budgetMs: number; signal?: AbortSignal }): Promise<VerifiedRoot> {
    const { rpc, clock, log } = this.o;
    const trust = this.o.trust;
    if (!trust) throw otaError('OTA_BACKEND_KEY_MISSING', 'no OEM backend key installed at production; refusing to fetch roots');
    const requestId = rpc.newRequestId();
    const nonce = rpc.newNonce();
    const request: Omit<RootCaRequest, 'replyTo'> = {
      v: 1,
      type: 'rootca.req',
      requestId,
      nonce,
      issuer: presented.issuer,
      ...(presented.aki ? { aki: presented.aki } : {}),
    };
    log.info({ requestId, issuer: presented.issuer, aki: presented.aki, budgetMs: options.budgetMs }, 'requesting V2G root from OEM backend');
    const forgeable = new WeakSet<object>();
    return rpc.call(
      this.topics.rootCaRequest,
      request,
      (payload) => this.verifyAnswer(payload, { requestId, nonce, presented, trust }, forgeable),
      { deadline: clock.now() + options.budgetMs, keepWaiting: (err) => typeof err === 'object' && err !== null && forgeable.has(err), ...(options.signal ? { signal: options.signal } : {}) },
    );
  }

  /** Every check of the answer, in the order that costs least first; each failure is its own typed error. */
  async verifyAnswer(
    payload: Uint8Array,
    expected: { requestId: string; nonce: string; presented: UnknownRootInfo; trust: BackendTrust },
    forgeable?: WeakSet<object>,
  ): Promise<VerifiedRoot> {
    /** Failures anybody without the backend key can cause: noted in `forgeable` (the fetch then waits on). */
    const unauthenticated = <T>(check: () => T): T => {
      try {
        return check();
      } catch (err) {
        if (typeof err === 'object' && err !== null) forgeable?.add(err);
        throw err;
      }
    };
    const { answer, der } = unauthenticated(() => this.authenticate(payload, expected));
    const { requestId } = expected;
    if (answer.status === 'not-found') {
      throw otaError('OTA_ROOT_NOT_FOUND', `Root Certificate Pool has no root for ${expected.presented.issuer}`, { issuer: expected.presented.issuer });
    }
    if (answer.status === 'denied') throw otaError('OTA_REQUEST_DENIED', 'OEM backend refused the root-CA request', { requestId });
    if (!der) throw otaError('OTA_ANSWER_MALFORMED', 'answer with status ok carries no certificate', { requestId });
    const root = parseDer(der, 'root certificate');
    const now = this.o.wallTime?.() ?? new Date();
    checkV2gRootProfile(root, now);
    checkAnchors(root, expected.presented.chain);
    if (this.o.validatePath) {
      try {
        await this.o.validatePath(expected.presented.chain, [der], now);
      } catch (err) {
        throw otaError('OTA_ROOT_DOES_NOT_ANCHOR', `the SECC chain does not validate to ${root.subject}`, { subject: root.subject }, err);
      }
    }
    const approval = answer.approval;
    if (approval) {
      unauthenticated(() => assertAnswerApproval(expected.trust, der, approval, now, root.subject));
    } else {
      this.o.log.warn({ requestId, subject: root.subject }, 'answer carries no OEM approval for the root: it will be trusted in full mode only');
    }
    return { der, subject: root.subject, sha256: root.fingerprint, requestId, ...(approval ? { approval } : {}) };
  }

  /** The checks that need no more than the reply topic to fail: shape, request id, nonce, signer and signature. */
  private authenticate(payload: Uint8Array, expected: { requestId: string; nonce: string; trust: BackendTrust }) {
    const answer = decodeMessage(ApprovedRootCaAnswer, payload, OTA_MAX_ROOT_ANSWER_BYTES);
    const { requestId, nonce, trust } = expected;
    if (answer.requestId !== requestId) {
      throw otaError('OTA_ANSWER_UNKNOWN_REQUEST', `answer for request ${answer.requestId}, expected ${requestId}`, { requestId: answer.requestId });
    }
    if (answer.nonce !== nonce) throw otaError('OTA_ANSWER_REPLAYED', `answer to ${requestId} carries a nonce we did not send`, { requestId });
    if (answer.keyId !== trust.keyId) {
      throw otaError('OTA_ANSWER_UNTRUSTED_SIGNER', `answer signed by key ${answer.keyId.slice(0, 16)}…, not the OEM backend key`, { keyId: answer.keyId });
    }
    const der = answer.cert === undefined ? undefined : new Uint8Array(Buffer.from(answer.cert, 'base64'));
    const input = rootCaSigningInput({
      vehicleId: this.o.vehicleId, requestId, nonce, status: answer.status, certDigest: der ? sha256Hex(der) : '',
    });
    if (!verifyInput(trust.publicKey, input, new Uint8Array(Buffer.from(answer.sig, 'base64')))) {
      throw otaError('OTA_ANSWER_SIGNATURE_INVALID', `signature of the answer to ${requestId} does not verify`, { requestId });
    }
    return { answer, der };
  }
}
