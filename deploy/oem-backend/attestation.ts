import { randomBytes, verify as cryptoVerify } from 'node:crypto';
import { mkdir, open as openFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { EvccError, isEvccError } from '../../core/errors.ts';
import type { TimerId } from '../../hal/clock/types.ts';
import { sharedFilter, type MqttClient, type MqttMessage } from '../../hal/mqtt/types.ts';
import { BACKEND_KEEPALIVE_SECONDS, type OemBackendOptions } from './service.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { RecordLocks, type RecordLockOptions } from './record-lock.ts';
import { parseEventLog, replayEventLog } from '../../firmware/keys/event-log.ts';
import { eccPublicPem, objectName, parseEccPublic } from '../../firmware/keys/duplicate.ts';
import { TPM_LAYOUT } from '../../firmware/keys/layout.ts';
import { nvCounterName, TPMA, toHex } from '../../firmware/keys/policy.ts';
import { checkSignedPolicy, DEFAULT_POLICY_REF, MEASUREMENT_PCR, parseSignedPolicy, type SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import {
  ATTEST_MAX_QUOTE_BYTES, ATTEST_NONCE_BYTES, ATTESTATION_FILTERS, AttestationHello, AttestationQuote, attestationTopics, decodeAttestation,
  parseQuoteAttest, pcrDigestOf, type ReleaseClaim,
} from '../../firmware/ota/attestation.ts';
import { BACKEND_RECONNECT_PERIOD_MS, BACKEND_SHARE_GROUP, VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';

/**
 * The OEM backend's attestation verifier (issue #10 "Remote attestation"). For every registered vehicle it keeps a
 * persisted record (trusted / unknown release / tampered / not answering, why, since when) in a directory:
 *   vehicles/<id>.json   the attestation key registered at production (TPM2B_PUBLIC from the provisioning export)
 *   releases/v<N>.json   the state policies the OEM signed (each re-verified with the OEM policy key when added)
 *   state/<id>.json      the vehicle's attestation state, its open challenge and a short history
 *   claims/<ms>/<id>     which instance sends the vehicle's periodic challenge of the period starting at <ms>
 *   locks/state.<id>.lock  held while an instance reads, changes and writes the vehicle's state (record-lock.ts)
 * A challenge (fresh 128-bit nonce, PCR 14, expiry) goes out after every hello (the vehicle says hello on every
 * connect, so after every boot) and periodically; a challenge is single-use — consumed by the first answer, good or
 * bad — and one that expires unanswered makes the vehicle "not answering". The quote must verify with that vehicle's
 * registered key, carry the nonce inside the signed TPMS_ATTEST, and select exactly the PCRs asked for with a
 * pcrDigest over the values sent; only then the evidence is judged:
 *   event log replay ≠ quoted PCR 14 (or not one rootfs measurement from zero)   → tampered
 *   PCR 14 = the value a signed release predicts                                → trusted (that release)
 *   the claimed release is one the OEM signed, but PCR 14 is not its value       → tampered
 *   otherwise                                                                   → unknown release (never trusted)
 * A refused answer (replayed or unknown nonce, other vehicle's key, malformed) changes no state; it is logged and kept
 * as the record's last refusal. Instances sharing the directory (a shared file system) may share the vehicles'
 * messages ($share group): the open challenge lives in the shared state file, so any instance verifies the quote, and
 * the periodic challenge of each vehicle is claimed per period by an exclusive create, so one instance sends it
 * (README "Scaling out"); a real fleet keeps these records in its database (README "Attestation").
 */
export type AttestationState = 'pending' | 'trusted' | 'unknown-release' | 'tampered' | 'not-answering';

const hexs = z.string().regex(/^([0-9a-f]{2})+$/);
const Reason = z.object({ code: z.string(), message: z.string() });
export const RegisteredVehicle = z.object({
  format: z.literal('evcc-attestation-vehicle/1'), vehicleId: z.string(), akPublic: hexs, akName: hexs, akPublicKeyPem: z.string(), registeredAt: z.string(),
});
export type RegisteredVehicle = z.infer<typeof RegisteredVehicle>;
export const VehicleAttestation = z.object({
  format: z.literal('evcc-attestation-state/1'),
  vehicleId: z.string(),
  state: z.enum(['pending', 'trusted', 'unknown-release', 'tampered', 'not-answering']),
  reason: Reason.optional(),
  /** Release the evidence proves (trusted) or the vehicle claims (otherwise). */
  version: z.number().int().nullable().optional(),
  claim: z.object({ version: z.number().int().nullable(), mode: z.enum(['approved', 'degraded']), reason: z.string().optional() }).optional(),
  pcr14: hexs.optional(),
  /** From the quote's clock info: a new resetCount is a new boot (TPM reset). */
  resetCount: z.number().int().optional(),
  restartCount: z.number().int().optional(),
  attestedAt: z.string().optional(),
  since: z.string(),
  challenge: z.object({ id: z.string(), nonce: hexs, pcrs: z.array(z.number().int()), issuedAt: z.string(), expiresAtMs: z.number() }).optional(),
  lastRefusal: z.object({ code: z.string(), message: z.string(), at: z.string() }).optional(),
  history: z.array(z.object({ at: z.string(), state: z.string(), code: z.string().optional() })),
});
export type VehicleAttestation = z.infer<typeof VehicleAttestation>;

const HISTORY = 20;
/** Default lifetime of a challenge. */
export const ATTEST_CHALLENGE_TTL_MS = 30_000;
/** Default period of the re-attestation of every registered vehicle. */
export const ATTEST_PERIOD_MS = 3_600_000;
/**
 * Periodic claims kept this many periods back: an instance whose tick runs late still finds the claim of its period
 * (a tick more than half a period late counts for the next one), and the directory stays small.
 */
export const ATTEST_CLAIM_KEEP_PERIODS = 3;
const PATHS = {
  vehicle: (id: string) => `vehicles/${id}.json`,
  release: (v: number) => `releases/v${v}.json`,
  state: (id: string) => `state/${id}.json`,
  claims: 'claims',
  oemPolicyKey: 'oem-policy.pub.pem',
};
const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

function checkId(vehicleId: string): void {
  if (!VEHICLE_ID_PATTERN.test(vehicleId)) throw new EvccError('CONFIG_INVALID', `vehicle id ${JSON.stringify(vehicleId)} not allowed`);
}

/** The persisted registry: registered keys, signed releases, vehicle states. */
export class AttestationRegistry {
  private readonly locks: RecordLocks;

  private constructor(readonly files: FsStore, lock: RecordLockOptions) {
    this.locks = new RecordLocks(files.root, lock);
  }

  static async open(dir: string, lock: RecordLockOptions = {}): Promise<AttestationRegistry> {
    return new AttestationRegistry(await FsStore.open(dir), lock);
  }

  /**
   * Runs a read-modify-write of the vehicle's state file holding its record lock, in this process and across the
   * instances sharing the directory (record-lock.ts): without it two instances that get the same quote (a re-delivered
   * message) both read the open challenge and both accept — a challenge must be consumed exactly once.
   */
  withState<T>(vehicleId: string, fn: () => Promise<T>): Promise<T> {
    checkId(vehicleId);
    return this.locks.run(`state:${vehicleId}`, fn);
  }

  private async readJson<S extends z.ZodType>(schema: S, path: string): Promise<z.infer<S> | undefined> {
    const b = await this.files.read(path);
    if (!b) return undefined;
    const r = schema.safeParse(JSON.parse(Buffer.from(b).toString('utf8')));
    if (!r.success) throw new EvccError('STORE_CORRUPT', `${path} is malformed`, { path });
    return r.data;
  }

  /**
   * Production step: registers a vehicle's attestation key from its provisioning export (`attestation.tpm2b_pub`).
   * Refuses anything but a restricted, non-duplicable P-256 signing key (an unrestricted key could sign a forged
   * TPMS_ATTEST), and a different key for an already registered vehicle.
   */
  async registerVehicle(vehicleId: string, akTpm2bPublic: Uint8Array, now = new Date()): Promise<RegisteredVehicle> {
    checkId(vehicleId);
    const area = parseEccPublic(akTpm2bPublic);
    const need = TPMA.restricted | TPMA.sign | TPMA.fixedTPM | TPMA.fixedParent | TPMA.sensitiveDataOrigin;
    if ((area.attributes & need) !== need || area.attributes & TPMA.decrypt) {
      throw new EvccError('ATTEST_KEY_NOT_RESTRICTED', 'attestation key is not a restricted, TPM-bound signing key: not registered', { vehicleId });
    }
    const akName = toHex(objectName(akTpm2bPublic));
    const existing = await this.vehicle(vehicleId);
    if (existing && existing.akName !== akName) throw new EvccError('ATTEST_KEY_CONFLICT', `vehicle ${vehicleId} is registered with another attestation key`, { vehicleId, registered: existing.akName });
    if (existing) return existing;
    const rec: RegisteredVehicle = { format: 'evcc-attestation-vehicle/1', vehicleId, akPublic: toHex(akTpm2bPublic), akName, akPublicKeyPem: eccPublicPem(area), registeredAt: now.toISOString() };
    await this.files.writeAtomic(PATHS.vehicle(vehicleId), json(rec), { mode: 0o644 });
    await this.withState(vehicleId, async () => {
      if (!(await this.state(vehicleId))) await this.saveState(newState(vehicleId, now));
    });
    return rec;
  }

  vehicle(vehicleId: string): Promise<RegisteredVehicle | undefined> {
    checkId(vehicleId);
    return this.readJson(RegisteredVehicle, PATHS.vehicle(vehicleId));
  }

  async vehicles(): Promise<string[]> {
    return (await this.files.list('vehicles')).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  }

  async setOemPolicyKey(pem: string): Promise<void> {
    await this.files.writeAtomic(PATHS.oemPolicyKey, pem, { mode: 0o644 });
  }

  /** Adds a release the OEM signed: the signed state policy, re-verified with the OEM policy key first. */
  async addRelease(raw: unknown): Promise<SignedPolicy> {
    const pem = await this.files.read(PATHS.oemPolicyKey);
    if (!pem) throw new EvccError('CONFIG_INVALID', 'attestation registry has no OEM policy key (oem-policy.pub.pem): set it first');
    const p = parseSignedPolicy(raw);
    checkSignedPolicy(p, {
      oemPolicyKeyPem: Buffer.from(pem).toString('utf8'), nvIndex: TPM_LAYOUT.nvCounterIndex, nvName: nvCounterName(TPM_LAYOUT.nvCounterIndex),
      policyRef: new TextEncoder().encode(DEFAULT_POLICY_REF), pcr: MEASUREMENT_PCR,
    });
    await this.files.writeAtomic(PATHS.release(p.version), json(p), { mode: 0o644 });
    return p;
  }

  async releases(): Promise<SignedPolicy[]> {
    const out: SignedPolicy[] = [];
    for (const f of await this.files.list('releases')) {
      const b = await this.files.read(`releases/${f}`);
      if (b) out.push(parseSignedPolicy(JSON.parse(Buffer.from(b).toString('utf8'))));
    }
    return out.sort((a, b) => a.version - b.version);
  }

  state(vehicleId: string): Promise<VehicleAttestation | undefined> {
    checkId(vehicleId);
    return this.readJson(VehicleAttestation, PATHS.state(vehicleId));
  }

  async saveState(s: VehicleAttestation): Promise<void> {
    await this.files.writeAtomic(PATHS.state(s.vehicleId), json(s), { mode: 0o644 });
  }

  /**
   * Claims the periodic challenge of `vehicleId` for the period starting at `periodStartMs`: true for exactly one
   * caller among all instances sharing this directory. An exclusive create (O_EXCL) is atomic on a local file system
   * and on NFSv4, so no coordinator is needed; FsStore has no such call, hence the direct open.
   */
  async claimPeriod(vehicleId: string, periodStartMs: number, owner: string): Promise<boolean> {
    checkId(vehicleId);
    const dir = join(this.files.root, PATHS.claims, String(periodStartMs));
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const fh = await openFile(join(dir, vehicleId), 'wx', 0o644);
      try {
        await fh.writeFile(`${owner} ${new Date().toISOString()}\n`); // who won, for an operator; the file's existence is the claim
      } finally {
        await fh.close();
      }
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw new EvccError('IO_FAILED', `cannot claim the periodic challenge of ${vehicleId}`, { vehicleId, periodStartMs }, { cause: err });
    }
  }

  /** Removes the claims of the periods that started before `beforeMs`; returns how many periods went. */
  async pruneClaims(beforeMs: number): Promise<number> {
    let n = 0;
    for (const d of await this.files.list(PATHS.claims)) {
      if (!/^\d{1,16}$/.test(d) || Number(d) >= beforeMs) continue;
      await this.files.remove(`${PATHS.claims}/${d}`);
      n++;
    }
    return n;
  }
}

function newState(vehicleId: string, now: Date): VehicleAttestation {
  return { format: 'evcc-attestation-state/1', vehicleId, state: 'pending', since: now.toISOString(), history: [] };
}

export interface Verdict {
  state: 'trusted' | 'unknown-release' | 'tampered';
  reason: EvccError;
  version: number | null;
}

/**
 * Judges verified evidence: the quoted PCR 14, the event log the vehicle sent, its release claim, the signed releases.
 * Pure. The event log is only believed when its replay equals the quoted PCR (the quote is the evidence).
 */
export function judgeEvidence(pcr14: Uint8Array, eventLog: string, claim: ReleaseClaim, releases: readonly SignedPolicy[]): Verdict {
  const value = toHex(pcr14);
  let events;
  try {
    events = parseEventLog(eventLog);
  } catch (err) {
    return { state: 'tampered', version: claim.version, reason: new EvccError('ATTEST_EVENT_LOG_MISMATCH', `the measured-boot event log does not parse (${(err as Error).message}): PCR ${MEASUREMENT_PCR} is unexplained`) };
  }
  const mine = events.filter((e) => e.pcr === MEASUREMENT_PCR);
  if (toHex(replayEventLog(mine, MEASUREMENT_PCR)) !== value) {
    return { state: 'tampered', version: claim.version, reason: new EvccError('ATTEST_EVENT_LOG_MISMATCH', `the event log's replay is not the quoted PCR ${MEASUREMENT_PCR}: something extended it outside the initramfs hook, or the log was edited`) };
  }
  const release = releases.find((r) => r.pcrs.value === value);
  if (release) return { state: 'trusted', version: release.version, reason: new EvccError('ATTEST_TRUSTED', `PCR ${MEASUREMENT_PCR} is the measurement of signed release v${release.version}`) };
  if (mine.length !== 1 || mine[0]!.event !== 'rootfs') {
    return { state: 'tampered', version: claim.version, reason: new EvccError('ATTEST_PCR_UNEXPECTED', `PCR ${MEASUREMENT_PCR} holds ${mine.length} event(s), an approved boot exactly one root file system measurement`) };
  }
  const rootfs = toHex(mine[0]!.digest);
  const claimed = claim.version === null ? undefined : releases.find((r) => r.version === claim.version);
  if (claimed) {
    return { state: 'tampered', version: claim.version, reason: new EvccError('ATTEST_ROOTFS_NOT_RELEASED', `the root file system that booted (${rootfs.slice(0, 16)}…) is not the one of signed release v${claimed.version} (${claimed.rootfs.sha256.slice(0, 16)}…)`) };
  }
  return { state: 'unknown-release', version: claim.version, reason: new EvccError('ATTEST_RELEASE_UNKNOWN', `root file system ${rootfs.slice(0, 16)}… (claimed v${claim.version ?? '?'}) is no release the OEM signed for this backend`) };
}

/**
 * Checks a quote against the open challenge and the vehicle's registered key; returns the verified PCR 14 and clock
 * info, or throws the refusal (ATTEST_NONCE_UNKNOWN / _MISMATCH / _EXPIRED, ATTEST_SIGNATURE_INVALID, ATTEST_QUOTE_MALFORMED,
 * ATTEST_PCR_DIGEST_MISMATCH). Pure apart from `nowMs`.
 */
export function verifyQuote(q: AttestationQuote, challenge: VehicleAttestation['challenge'], vehicle: RegisteredVehicle, nowMs: number) {
  if (!challenge || challenge.id !== q.challengeId) throw new EvccError('ATTEST_NONCE_UNKNOWN', 'quote for no open challenge (replayed, already answered or unsolicited)', { challengeId: q.challengeId });
  if (challenge.nonce !== q.nonce) throw new EvccError('ATTEST_NONCE_MISMATCH', 'quote names another nonce than its challenge');
  if (nowMs > challenge.expiresAtMs) throw new EvccError('ATTEST_NONCE_EXPIRED', 'quote arrived after its challenge expired');
  const attest = Buffer.from(q.attest, 'base64');
  const signature = Buffer.from(q.signature, 'base64');
  let ok = false;
  try {
    ok = cryptoVerify('sha256', attest, vehicle.akPublicKeyPem, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new EvccError('ATTEST_SIGNATURE_INVALID', `quote signature does not verify with the attestation key registered for ${vehicle.vehicleId}`, { akName: vehicle.akName });
  const info = parseQuoteAttest(attest);
  if (toHex(info.extraData) !== challenge.nonce) throw new EvccError('ATTEST_NONCE_MISMATCH', 'the nonce inside the signed quote is not the challenge\'s (a replayed quote)');
  const asked = [...challenge.pcrs].sort((a, b) => a - b);
  const sent = [...q.pcrs].sort((a, b) => a.index - b.index);
  if (info.pcrs.join(',') !== asked.join(',') || sent.map((p) => p.index).join(',') !== asked.join(',')) {
    throw new EvccError('ATTEST_PCR_DIGEST_MISMATCH', `quote selects PCRs ${info.pcrs.join(',')}, the challenge asked for ${asked.join(',')}`);
  }
  const values = sent.map((p) => new Uint8Array(Buffer.from(p.value, 'hex')));
  if (toHex(pcrDigestOf(values)) !== toHex(info.pcrDigest)) throw new EvccError('ATTEST_PCR_DIGEST_MISMATCH', 'PCR values sent do not match the quoted digest');
  const pcr14 = values[sent.findIndex((p) => p.index === MEASUREMENT_PCR)];
  if (!pcr14) throw new EvccError('ATTEST_PCR_DIGEST_MISMATCH', `quote lacks PCR ${MEASUREMENT_PCR}`);
  return { pcr14, resetCount: info.resetCount, restartCount: info.restartCount };
}

/** Broker connection, identity, sharing and keepalive as the root-CA service's (service.ts): the same instance, a second client. */
export type AttestationServiceOptions = Pick<OemBackendOptions, 'connector' | 'url' | 'protocolVersion' | 'tls' | 'clientId' | 'shareGroup' | 'keepaliveSeconds' | 'clock' | 'log'> & {
  registry: AttestationRegistry;
  /** Pause between reconnect attempts (default BACKEND_RECONNECT_PERIOD_MS). */
  reconnectPeriodMs?: number;
  /**
   * Wall clock (ms since the epoch) for expiries persisted across instances and for the periods; default Date.now.
   * `clock` arms the timers: both must run at the same rate (tests pass the virtual clock's `now`).
   */
  wallNow?: () => number;
  /** How long a challenge stays open (default ATTEST_CHALLENGE_TTL_MS). */
  challengeTtlMs?: number;
  /**
   * Periodic re-attestation of every registered vehicle (default ATTEST_PERIOD_MS; 0 = only after hellos). Periods
   * are aligned to the wall clock (multiples of periodMs since the epoch) so that instances sharing the registry
   * agree on them: give every instance the same period.
   */
  periodMs?: number;
  /** PCRs asked for (default [14]). */
  pcrs?: number[];
};

export class AttestationService {
  private client: MqttClient | undefined;
  private readonly detach: (() => void)[] = [];
  private readonly timers = new Set<TimerId>();
  private periodic: TimerId | undefined;
  private ready: Promise<void> | undefined;
  readonly stats = { challenges: 0, verdicts: 0, refused: 0, notAnswering: 0 };
  /** Called after every recorded outcome (tests, bench). */
  onRecord?: (s: VehicleAttestation) => void;
  private readonly wallNow: () => number;
  readonly clientId: string;
  readonly shareGroup: string | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: AttestationServiceOptions) {
    this.wallNow = o.wallNow ?? Date.now;
    this.clientId = o.clientId ?? `oem-attestation-${randomBytes(4).toString('hex')}`;
    this.shareGroup = o.shareGroup === false ? undefined : (o.shareGroup ?? BACKEND_SHARE_GROUP);
  }

  start(): Promise<void> {
    if (this.ready) return this.ready;
    const o = this.o;
    // Clean session always: a shared member's persistent session would keep receiving its share after it died (README
    // "Scaling out"), and without sharing nothing is lost either — a vehicle says hello again on its next connect.
    const client = o.connector.connect({
      url: o.url, clientId: this.clientId, protocolVersion: o.protocolVersion, ...(o.tls ? { tls: o.tls } : {}),
      reconnectPeriodMs: o.reconnectPeriodMs ?? BACKEND_RECONNECT_PERIOD_MS, keepaliveSeconds: o.keepaliveSeconds ?? BACKEND_KEEPALIVE_SECONDS, cleanSession: true,
    });
    this.client = client;
    this.detach.push(client.onMessage((m) => this.serial(() => this.onMessage(m))));
    this.ready = new Promise<void>((resolve) => {
      this.detach.push(client.onStatus((status) => {
        if (status !== 'connected') return;
        const filters = [ATTESTATION_FILTERS.hello, ATTESTATION_FILTERS.quote].map((f) => (this.shareGroup ? sharedFilter(this.shareGroup, f) : f));
        client.subscribe(filters, 1).then((granted) => {
          if (granted.some((g) => g >= 0x80)) o.log.error({ granted }, 'broker refused an attestation subscription');
          o.log.info({ clientId: client.clientId, cp: 'ATTEST-READY' }, 'attestation verifier subscribed');
          resolve();
        }, (e: unknown) => o.log.error({ error: String(e) }, 'attestation subscribe failed'));
      }));
    });
    const period = o.periodMs ?? ATTEST_PERIOD_MS;
    if (period > 0) {
      // Ticks at the wall clock's period boundaries, the same on every instance, so all of them claim the same period.
      const arm = (index: number) => {
        this.periodic = o.clock.setTimer(() => {
          // Rounding absorbs a tick a little early (timer granularity) or late (a busy process): it is still the period
          // it was armed for, and the other instances' claims for it count.
          const at = Math.max(index, Math.round(this.wallNow() / period));
          arm(at + 1);
          void this.serial(() => this.periodicChallenges(at * period, period));
        }, Math.max(0, index * period - this.wallNow()));
      };
      arm(Math.floor(this.wallNow() / period) + 1);
    }
    return this.ready;
  }

  /** One period's re-attestation: every registered vehicle whose claim for the period this instance wins is challenged. */
  private async periodicChallenges(startMs: number, period: number): Promise<void> {
    const { registry, log } = this.o;
    let challenged = 0;
    let skipped = 0;
    for (const id of await registry.vehicles()) {
      try {
        if (!(await registry.claimPeriod(id, startMs, this.clientId))) {
          skipped++; // another instance has it
          continue;
        }
        if (await this.challenge(id)) challenged++;
      } catch (err) {
        // A failed claim is not sent (the next period retries); one vehicle's failure does not stop the others'.
        log.error({ vehicleId: id, code: isEvccError(err) ? err.code : 'INTERNAL', cp: 'ATTEST-PERIODIC-FAILED' }, `periodic attestation challenge failed: ${(err as Error).message}`);
      }
    }
    const pruned = await registry.pruneClaims(startMs - ATTEST_CLAIM_KEEP_PERIODS * period).catch((err: unknown) => {
      log.warn({ error: String(err) }, 'old periodic attestation claims not pruned');
      return 0;
    });
    log.info({ period: new Date(startMs).toISOString(), challenged, skipped, pruned, cp: 'ATTEST-PERIODIC' }, `periodic re-attestation: ${challenged} challenged here, ${skipped} claimed by other instances`);
  }

  /** One message at a time: a vehicle's state file is read, changed and written without interleaving. */
  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn, fn).catch((err: unknown) => this.o.log.error({ error: String(err) }, 'attestation handler failed'));
    this.chain = next;
    return next;
  }

  private async onMessage(m: MqttMessage): Promise<void> {
    if (m.retain) return;
    const parts = m.topic.split('/');
    const vehicleId = parts[2] ?? '';
    if (!VEHICLE_ID_PATTERN.test(vehicleId) || parts[3] !== 'attest') return;
    if (parts[4] === 'hello') {
      try {
        const hello = decodeAttestation(AttestationHello, m.payload, 4096);
        this.o.log.info({ vehicleId, version: hello.release.version, mode: hello.release.mode, cp: 'ATTEST-HELLO' }, 'vehicle hello: challenging');
        await this.challenge(vehicleId, hello.release);
      } catch (err) {
        this.o.log.warn({ vehicleId, code: isEvccError(err) ? err.code : 'INTERNAL' }, `attestation hello dropped: ${(err as Error).message}`);
      }
    } else if (parts[4] === 'quote') {
      await this.onQuote(vehicleId, m.payload);
    }
  }

  /** Sends a fresh challenge (and records it); an unregistered vehicle is not challenged. */
  async challenge(vehicleId: string, claim?: ReleaseClaim): Promise<string | undefined> {
    const { registry, log, clock } = this.o;
    if (!(await registry.vehicle(vehicleId))) {
      log.warn({ vehicleId, cp: 'ATTEST-UNREGISTERED' }, 'attestation: vehicle has no registered attestation key');
      return undefined;
    }
    const ttl = this.o.challengeTtlMs ?? ATTEST_CHALLENGE_TTL_MS;
    const pcrs = this.o.pcrs ?? [MEASUREMENT_PCR];
    // Decided and recorded under the vehicle's state lock (another instance may be challenging it or consuming its
    // answer), published after it: the lock covers only the state file's read-modify-write.
    const decided = await registry.withState(vehicleId, async () => {
      const now = this.wallNow();
      const s = (await registry.state(vehicleId)) ?? newState(vehicleId, new Date(now));
      const open = claim ? s.challenge : undefined;
      // A hello while a challenge is open (reconnects, or a flood of hellos): the same unanswered challenge again, so
      // hellos cannot make the backend mint nonces and timers without bound, nor replace a challenge being answered.
      if (open && open.expiresAtMs > now) return { again: true, challenge: open };
      if (s.challenge && now > s.challenge.expiresAtMs) {
        // Expired unanswered and never recorded: the instance that sent it stopped before its expiry timer ran (or
        // that timer is still queued). Recorded here, or replacing it would hide that the vehicle did not answer.
        this.recordNotAnswering(s, s.challenge.id);
        this.onRecord?.(structuredClone(s));
      }
      s.challenge = { id: randomBytes(9).toString('base64url'), nonce: randomBytes(ATTEST_NONCE_BYTES).toString('hex'), pcrs, issuedAt: new Date(now).toISOString(), expiresAtMs: now + ttl };
      if (claim) s.claim = claim;
      await registry.saveState(s);
      return { again: false, challenge: s.challenge };
    });
    const { id, nonce, expiresAtMs } = decided.challenge;
    const message = JSON.stringify({ v: 1, type: 'attest.challenge', challengeId: id, nonce, pcrs: decided.challenge.pcrs, expiresAt: new Date(expiresAtMs).toISOString() });
    if (decided.again) {
      await this.client!.publish(attestationTopics(vehicleId).challenge, message, { qos: 1 });
      log.info({ vehicleId, challengeId: id, cp: 'ATTEST-CHALLENGE-AGAIN' }, 'attestation challenge sent again (still open)');
      return id;
    }
    this.stats.challenges++;
    const timer = clock.setTimer(() => {
      this.timers.delete(timer);
      void this.serial(() => this.expire(vehicleId, id));
    }, ttl + 50);
    this.timers.add(timer);
    await this.client!.publish(attestationTopics(vehicleId).challenge, message, { qos: 1 });
    log.info({ vehicleId, challengeId: id, cp: 'ATTEST-CHALLENGE' }, 'attestation challenge sent');
    return id;
  }

  private async expire(vehicleId: string, id: string): Promise<void> {
    const { registry } = this.o;
    const s = await registry.withState(vehicleId, async () => {
      const s = await registry.state(vehicleId);
      if (!s?.challenge || s.challenge.id !== id) return undefined; // answered, or replaced, meanwhile (maybe elsewhere)
      this.recordNotAnswering(s, id);
      await registry.saveState(s);
      return s;
    });
    if (s) this.onRecord?.(s);
  }

  private recordNotAnswering(s: VehicleAttestation, id: string): void {
    delete s.challenge;
    this.record(s, 'not-answering', new EvccError('ATTEST_NOT_ANSWERING', 'no valid answer to the attestation challenge before it expired'));
    this.stats.notAnswering++;
    this.o.log.warn({ vehicleId: s.vehicleId, challengeId: id, cp: 'ATTEST-NOT-ANSWERING' }, 'vehicle did not answer its attestation challenge');
  }

  private record(s: VehicleAttestation, state: AttestationState, reason: EvccError): void {
    const at = new Date(this.wallNow()).toISOString();
    if (s.state !== state) s.since = at;
    s.state = state;
    s.reason = { code: reason.code, message: reason.message };
    s.history = [...s.history, { at, state, code: reason.code }].slice(-HISTORY);
  }

  private async onQuote(vehicleId: string, payload: Uint8Array): Promise<void> {
    // The whole check-and-consume under the vehicle's state lock: an answer (or the same quote delivered to two
    // instances) consumes the open challenge exactly once; the second finds none (ATTEST_NONCE_UNKNOWN).
    const s = await this.o.registry.withState(vehicleId, () => this.consumeQuote(vehicleId, payload));
    this.onRecord?.(s);
  }

  private async consumeQuote(vehicleId: string, payload: Uint8Array): Promise<VehicleAttestation> {
    const { registry, log } = this.o;
    const s = (await registry.state(vehicleId)) ?? newState(vehicleId, new Date(this.wallNow()));
    const challenge = s.challenge;
    let challengeId: string | undefined;
    try {
      const vehicle = await registry.vehicle(vehicleId);
      if (!vehicle) throw new EvccError('ATTEST_VEHICLE_UNKNOWN', `vehicle ${vehicleId} has no registered attestation key`);
      const q = decodeAttestation(AttestationQuote, payload, ATTEST_MAX_QUOTE_BYTES);
      challengeId = q.challengeId;
      // Single use: whatever the outcome, an answer to the open challenge consumes it.
      if (challenge && challenge.id === q.challengeId) delete s.challenge;
      const v = verifyQuote(q, challenge, vehicle, this.wallNow());
      const verdict = judgeEvidence(v.pcr14, q.eventLog, q.release, await registry.releases());
      this.record(s, verdict.state, verdict.reason);
      Object.assign(s, { version: verdict.version, claim: q.release, pcr14: toHex(v.pcr14), resetCount: v.resetCount, restartCount: v.restartCount, attestedAt: new Date(this.wallNow()).toISOString() });
      this.stats.verdicts++;
      await registry.saveState(s);
      log[verdict.state === 'trusted' ? 'info' : 'warn']({ vehicleId, challengeId, state: verdict.state, code: verdict.reason.code, version: verdict.version, mode: q.release.mode, cp: 'ATTEST-VERDICT' },
        `vehicle ${verdict.state}: ${verdict.reason.message}`);
    } catch (err) {
      const code = isEvccError(err) ? err.code : 'INTERNAL';
      s.lastRefusal = { code, message: (err as Error).message, at: new Date(this.wallNow()).toISOString() };
      s.history = [...s.history, { at: s.lastRefusal.at, state: 'refused', code }].slice(-HISTORY);
      this.stats.refused++;
      if (await registry.vehicle(vehicleId).catch(() => undefined)) await registry.saveState(s);
      log.warn({ vehicleId, challengeId, code, cp: 'ATTEST-REFUSED' }, `attestation answer refused: ${(err as Error).message}`);
    }
    return s;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) this.o.clock.clearTimer(t);
    this.timers.clear();
    if (this.periodic !== undefined) this.o.clock.clearTimer(this.periodic);
    for (const d of this.detach.splice(0)) d();
    await this.chain;
    await this.client?.close();
  }
}
