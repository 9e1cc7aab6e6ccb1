import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../hal/clock/types.ts';
import { sharedFilter, type MqttClient, type MqttConnector, type MqttMessage, type MqttTlsIdentity } from '../../hal/mqtt/types.ts';
import type { Logger } from '../../core/logger.ts';
import {
  BACKEND_FILTERS, BACKEND_SHARE_GROUP, OTA_MAX_REQUEST_BYTES, OTA_MAX_ROOT_LIST_BYTES, OTA_MAX_ROOTS_PER_LIST, VEHICLE_ID_PATTERN, vehicleTopics,
} from '../../firmware/ota/constants.ts';
import { isEvccError } from '../../core/errors.ts';
import { decodeMessage, encodeMessage, RootCaRequest, RootListRequest, type AnswerStatus } from '../../firmware/ota/messages.ts';
import { rootCaSigningInput, rootListDigest, rootListSigningInput } from '../../firmware/ota/signing.ts';
import { ROOT_APPROVAL_WIRE_BYTES } from '../../firmware/ota/approved-answers.ts';
import { ApprovalCache } from './approvals.ts';
import type { RootCertificatePool } from './pool.ts';
import type { AnswerSigner } from './signer.ts';
import type { JobService } from './jobs.ts';
import type { SecurityLogService } from './security-log.ts';
import { BACKEND_LOG_FILTER } from '../../firmware/log/mqtt-upload.ts';
import { BACKEND_JOB_FILTERS } from '../../firmware/ota/update/job.ts';

/**
 * The OEM backend reference service (Kilic 2023 Solution C, backend half): connected to the broker with its own
 * client certificate, it answers every vehicle's root-CA and root-list requests from the Root Certificate Pool and
 * signs each answer (vehicle id, request id, nonce, status, certificate digest) with the OEM answer key. Each root
 * it serves also carries the OEM's approved-V2G-root statement (approvals.ts), which the vehicle stores with the
 * root so a degraded vehicle can still verify it without its TPM-derived store key.
 *
 * Per-vehicle authorization, on top of the broker ACL: the vehicle id is taken from the topic (which the ACL ties
 * to the client certificate), the reply topic must be that vehicle's own answer topic (a vehicle cannot make the
 * backend write into another vehicle's topics), and an optional fleet list refuses unknown vehicles with a signed
 * `denied`. Every request is logged on one line with its outcome and latency.
 *
 * Scale-out: any number of instances subscribe in one shared-subscription group; each request reaches one of them.
 * Answering is stateless (the request carries id, nonce and reply topic), so it does not matter which instance
 * answers, or that a re-published request is answered by another one (README "Scaling out").
 */
export interface OemBackendOptions {
  connector: MqttConnector;
  url: string;
  protocolVersion: 4 | 5;
  tls?: MqttTlsIdentity;
  /** Unique per instance (two instances with one id would take each other's session); default oem-backend-<random>. */
  clientId?: string;
  /**
   * Shared-subscription group (default BACKEND_SHARE_GROUP): every instance subscribes `$share/<group>/…`, so the
   * broker gives each request to one instance. `false` = plain subscriptions (each instance sees every request).
   */
  shareGroup?: string | false;
  /**
   * MQTT keepalive (default BACKEND_KEEPALIVE_SECONDS). A hung or cut-off instance keeps its share of the requests
   * until the broker gives up on it after 1.5 × keepalive; a crashed one is dropped at once (its socket closes).
   */
  keepaliveSeconds?: number;
  pool: RootCertificatePool;
  signer: AnswerSigner;
  clock: Clock;
  log: Logger;
  /** When set, only these vehicle ids are served. */
  fleet?: ReadonlySet<string>;
  /**
   * Persistent MQTT session: the broker keeps subscriptions and queues requests across reconnects. Default false
   * when sharing: mosquitto goes on routing a group's share to a member whose session outlives its connection, so
   * a dead instance would hold requests until its session expires; with a clean session its subscription ends with
   * its connection, the others take all new requests, and the vehicle's re-publish (rpc.ts) recovers the few that
   * were in flight to it (README "Scaling out"). Default true without sharing.
   */
  persistentSession?: boolean;
  /**
   * Per-vehicle request budget (token bucket): a vehicle fetches a root at a charger or syncs a list now and then,
   * so a flood is a fault or an attack and must not starve the fleet. Default 5 requests/s, burst 20.
   */
  rateLimit?: { perSecond: number; burst: number };
  /** Update campaigns (jobs.ts): job get/update topics of every vehicle, answered from the job store. */
  jobs?: JobService;
  /** Vehicles' security-log uploads (security-log.ts): `log/req` of every vehicle, verified and stored by the collector. */
  securityLogs?: SecurityLogService;
}

/** The broker drops a silent instance after 1.5 × this (7.5 s, inside a root fetch budget); until then it still gets its share (README). */
export const BACKEND_KEEPALIVE_SECONDS = 5;

export interface OemBackendStats {
  requests: number;
  answered: Record<AnswerStatus, number>;
  dropped: number;
  /** Requests dropped by the per-vehicle rate limit. */
  rateLimited: number;
  /** Answers the broker acknowledged (QoS 1). */
  published: number;
}

export class OemBackend {
  private client: MqttClient | undefined;
  private detach: (() => void)[] = [];
  readonly stats: OemBackendStats = { requests: 0, answered: { ok: 0, 'not-found': 0, denied: 0 }, dropped: 0, rateLimited: 0, published: 0 };
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private ready: Promise<void> | undefined;
  private readonly approvals: ApprovalCache;

  readonly clientId: string;
  readonly shareGroup: string | undefined;

  constructor(private readonly o: OemBackendOptions) {
    this.approvals = new ApprovalCache(o.signer);
    this.clientId = o.clientId ?? `oem-backend-${randomBytes(4).toString('hex')}`;
    this.shareGroup = o.shareGroup === false ? undefined : (o.shareGroup ?? BACKEND_SHARE_GROUP);
  }

  /** The subscription filters: shared in the instances' group unless sharing is off. */
  filters(plain: string[]): string[] {
    const group = this.shareGroup;
    return group === undefined ? plain : plain.map((f) => sharedFilter(group, f));
  }

  /** Connects and subscribes; resolves once the subscriptions are acknowledged. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    const o = this.o;
    const client = o.connector.connect({
      url: o.url,
      clientId: this.clientId,
      protocolVersion: o.protocolVersion,
      ...(o.tls ? { tls: o.tls } : {}),
      reconnectPeriodMs: 1_000,
      keepaliveSeconds: o.keepaliveSeconds ?? BACKEND_KEEPALIVE_SECONDS,
      cleanSession: !(o.persistentSession ?? o.shareGroup === false),
    });
    this.client = client;
    this.detach.push(client.onMessage((m) => this.onMessage(m)));
    let outage = false;
    this.ready = new Promise<void>((resolve) => {
      this.detach.push(
        client.onStatus((status, err) => {
          if (status === 'connected') {
            o.log.info({ url: o.url, clientId: this.clientId, shareGroup: this.shareGroup ?? null, pool: o.pool.size, keyId: o.signer.keyId.slice(0, 16) }, 'OEM backend connected to broker');
            client
              .subscribe(this.filters([BACKEND_FILTERS.rootCaRequest, BACKEND_FILTERS.rootListRequest, BACKEND_FILTERS.state, ...(o.jobs ? [BACKEND_JOB_FILTERS.get, BACKEND_JOB_FILTERS.update] : []), ...(o.securityLogs ? [BACKEND_LOG_FILTER] : [])]), 1)
              .then(async (granted) => {
                if (granted.some((g) => g >= 0x80)) o.log.error({ granted }, 'broker refused a backend subscription');
                await o.jobs?.attach(client).catch((e: unknown) => o.log.error({ error: String(e) }, 'jobs: attach failed'));
                o.securityLogs?.attach(client);
                resolve();
              })
              .catch((e: unknown) => o.log.error({ error: String(e) }, 'subscribe failed'));
            outage = false;
          } else if (err) {
            // One warning per outage; the reconnect attempts that follow are debug lines.
            o.log[outage ? 'debug' : 'warn']({ url: o.url, error: err.message, status }, 'broker connection problem');
            outage = true;
          }
        }),
      );
    });
    return this.ready;
  }

  private onMessage(m: MqttMessage): void {
    const parts = m.topic.split('/');
    // evcc/v1/<vehicle>/…
    const vehicleId = parts[2] ?? '';
    if (!VEHICLE_ID_PATTERN.test(vehicleId)) return;
    const rest = parts.slice(3).join('/');
    if (rest === 'state') {
      this.o.log.debug({ vehicleId, state: safeText(m.payload) }, 'vehicle state');
      return;
    }
    if (rest.startsWith('jobs/')) {
      this.o.jobs?.onMessage(vehicleId, rest, m);
      return;
    }
    if (rest.startsWith('log/')) {
      this.o.securityLogs?.onMessage(vehicleId, rest, m);
      return;
    }
    if (m.retain) return;
    if ((rest === 'pki/rootca/req' || rest === 'pki/roots/req') && !this.admit(vehicleId)) return;
    if (rest === 'pki/rootca/req') void this.serveRootCa(vehicleId, m.payload);
    else if (rest === 'pki/roots/req') void this.serveRootList(vehicleId, m.payload);
  }

  private admit(vehicleId: string): boolean {
    const { perSecond, burst } = this.o.rateLimit ?? { perSecond: 5, burst: 20 };
    const now = this.o.clock.now();
    let b = this.buckets.get(vehicleId);
    if (!b) {
      // Bounded: forget the idle half when the table grows past a fleet-sized limit.
      if (this.buckets.size >= 100_000) for (const k of [...this.buckets.keys()].slice(0, 50_000)) this.buckets.delete(k);
      b = { tokens: burst, at: now };
      this.buckets.set(vehicleId, b);
    }
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    this.stats.rateLimited++;
    if (this.stats.rateLimited % 100 === 1) this.o.log.warn({ vehicleId, rateLimited: this.stats.rateLimited }, 'request dropped: vehicle over its request rate');
    return false;
  }

  private decodeOrDrop<T>(what: string, vehicleId: string, decode: () => T): T | undefined {
    try {
      return decode();
    } catch (err) {
      this.stats.dropped++;
      this.o.log.warn({ vehicleId, code: isEvccError(err) ? err.code : 'INTERNAL' }, `${what} dropped: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** The reply topic must be the vehicle's own; anything else would let one vehicle write into another's topics. */
  private replyAllowed(vehicleId: string, replyTo: string, expected: string, requestId: string): boolean {
    if (replyTo === expected) return true;
    this.stats.dropped++;
    this.o.log.warn({ vehicleId, requestId, replyTo }, 'request dropped: reply topic outside the vehicle\'s own topics');
    return false;
  }

  private async serveRootCa(vehicleId: string, payload: Uint8Array): Promise<void> {
    const t0 = this.o.clock.now();
    this.stats.requests++;
    const req = this.decodeOrDrop('root-CA request', vehicleId, () => decodeMessage(RootCaRequest, payload, OTA_MAX_REQUEST_BYTES));
    if (!req) return;
    if (!this.replyAllowed(vehicleId, req.replyTo, vehicleTopics(vehicleId).rootCaResponse, req.requestId)) return;
    let status: AnswerStatus;
    let der: Uint8Array | undefined;
    let subject: string | undefined;
    if (this.o.fleet && !this.o.fleet.has(vehicleId)) status = 'denied';
    else {
      const entry = this.o.pool.lookup(req.issuer, req.aki);
      status = entry ? 'ok' : 'not-found';
      der = entry?.der;
      subject = entry?.subject;
    }
    const certDigest = der ? sha256(der) : '';
    const sig = this.o.signer.sign(rootCaSigningInput({ vehicleId, requestId: req.requestId, nonce: req.nonce, status, certDigest }));
    const answer = {
      v: 1, type: 'rootca.resp', requestId: req.requestId, nonce: req.nonce, status,
      ...(der ? { cert: Buffer.from(der).toString('base64'), approval: this.approvals.of(der) } : {}),
      keyId: this.o.signer.keyId, sig: Buffer.from(sig).toString('base64'),
    };
    await this.answer(req.replyTo, answer, { vehicleId, requestId: req.requestId, status, issuer: req.issuer, subject, t0 });
  }

  private async serveRootList(vehicleId: string, payload: Uint8Array): Promise<void> {
    const t0 = this.o.clock.now();
    this.stats.requests++;
    const req = this.decodeOrDrop('root-list request', vehicleId, () => decodeMessage(RootListRequest, payload, OTA_MAX_REQUEST_BYTES));
    if (!req) return;
    if (!this.replyAllowed(vehicleId, req.replyTo, vehicleTopics(vehicleId).rootListResponse, req.requestId)) return;
    const denied = this.o.fleet !== undefined && !this.o.fleet.has(vehicleId);
    const status: AnswerStatus = denied ? 'denied' : 'ok';
    const certs = denied ? [] : this.listForVehicle(vehicleId);
    const sig = this.o.signer.sign(
      rootListSigningInput({ vehicleId, requestId: req.requestId, nonce: req.nonce, status, certDigest: rootListDigest(certs) }),
    );
    const answer = {
      v: 1, type: 'roots.resp', requestId: req.requestId, nonce: req.nonce, status,
      certs: certs.map((d) => Buffer.from(d).toString('base64')), approvals: certs.map((d) => this.approvals.of(d)),
      keyId: this.o.signer.keyId, sig: Buffer.from(sig).toString('base64'),
    };
    await this.answer(req.replyTo, answer, { vehicleId, requestId: req.requestId, status, roots: certs.length, t0 });
  }

  /** The pool's roots within what a vehicle accepts in one list (count and bytes); the rest is logged. */
  private listForVehicle(vehicleId: string): Uint8Array[] {
    const out: Uint8Array[] = [];
    let bytes = 1024; // envelope, ids, signature
    for (const e of this.o.pool.all()) {
      const size = Math.ceil(e.der.byteLength / 3) * 4 + 3 + ROOT_APPROVAL_WIRE_BYTES;
      if (out.length >= OTA_MAX_ROOTS_PER_LIST || bytes + size > OTA_MAX_ROOT_LIST_BYTES) {
        this.o.log.warn({ vehicleId, pool: this.o.pool.size, sent: out.length }, 'root list truncated to the vehicle limits');
        break;
      }
      out.push(e.der);
      bytes += size;
    }
    return out;
  }

  private async answer(topic: string, body: object, f: { t0: number; status: AnswerStatus } & Record<string, unknown>): Promise<void> {
    this.stats.answered[f.status]++;
    const { t0, ...fields } = f;
    try {
      const ack = await this.client!.publish(topic, encodeMessage(body), { qos: 1 });
      if (ack.reasonCode !== undefined && ack.reasonCode >= 0x80) throw new Error(`broker refused (reason ${ack.reasonCode})`);
      this.stats.published++;
      this.o.log.info({ ...fields, ms: Math.round((this.o.clock.now() - t0) * 10) / 10 }, `request answered: ${f.status}`);
    } catch (err) {
      this.o.log.error({ ...fields, error: (err as Error).message }, 'answer not delivered');
    }
  }

  async stop(): Promise<void> {
    for (const d of this.detach.splice(0)) d();
    this.o.jobs?.detach();
    this.o.securityLogs?.detach();
    await this.client?.close();
  }
}

function sha256(d: Uint8Array): string {
  return createHash('sha256').update(d).digest('hex');
}

function safeText(p: Uint8Array): string {
  return new TextDecoder().decode(p.subarray(0, 200));
}
