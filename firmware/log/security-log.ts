import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';

/**
 * The vehicle's security log (TR-2019-04 §3.3.4): an append-only, hash-chained record of security-relevant events
 * (measured-boot results, TPM policy refusals and lockout, root installs, update steps, attestation answers) whose
 * checkpoints are signed by a TPM-held log key bound to the software state (policy A, like the contract key).
 *
 * Format (`evcc-security-log/1`): JSON lines, one entry each:
 *   { v: 1, seq, time, kind, detail, prev, hash }
 *   hash = SHA-256( canonical JSON of { v, seq, time, kind, detail, prev } )   (keys sorted, no white space: RFC 8785
 *          for the values allowed here — strings, finite numbers, booleans, null, arrays, objects)
 *   prev = the previous entry's hash; 64 zeros for seq 0 (the genesis entry, kind `log.genesis`, names the vehicle).
 * A checkpoint is itself an entry (kind `log.checkpoint`): its detail carries an ECDSA P-256 signature (raw r‖s,
 * base64) over SHA-256(CHECKPOINT_DOMAIN ‖ u64be(seq) ‖ prev), i.e. over every entry before it through the chain.
 * A vehicle whose state the TPM does not approve cannot sign: it writes the checkpoint with `unsigned` = the TPM's
 * reason, so the chain goes on and the gap in signatures is itself in the log.
 *
 * What a verifier holding only the file and the log key's public part can tell: any edit, reordering, removal or
 * insertion before the last signed checkpoint, and a cut through a line. Entries after the last signed checkpoint
 * are chained only (reported as the unsigned tail), and removing whole lines from the end leaves a shorter valid
 * log: that is caught by whoever holds a later head — the OEM backend, which refuses an upload that does not
 * extend the head it stored (deploy/oem-backend/security-log.ts).
 *
 * Sans-I/O apart from the FileStore port; time comes in as `now`, signatures through `CheckpointSigner`.
 */
export const SECURITY_LOG_FORMAT = 'evcc-security-log/1';
export const CHECKPOINT_DOMAIN = 'evcc-security-log-checkpoint/1';
export const GENESIS_PREV = '0'.repeat(64);
/** Where the runtime keeps its log in the data dir. */
export const SECURITY_LOG_PATH = 'log/security.jsonl';

/** Event kinds; a new kind gets a new name (the backend and auditors match on them). */
export const SECURITY_EVENT_KINDS = {
  'log.genesis': 'first entry: the vehicle, the log key, and why an earlier log was set aside (if one was)',
  'log.checkpoint': 'signed (or, in an unapproved state, unsigned with the reason) checkpoint over every entry before it',
  'boot.check': 'measured-boot check of this boot: release, PCR 14, result code',
  'keys.refused': 'the TPM refused a state-bound key (policy, rollback): the reason code and TPM response code',
  'keys.lockout': 'the TPM is in dictionary-attack lockout',
  'pki.root-installed': 'a V2G root was installed (fingerprint, source)',
  'pki.root-removed': 'a V2G root was removed',
  'ota.update-step': 'an OTA update step (job, version, step, result)',
  'attestation.answer': 'an attestation quote was answered (nonce digest, PCRs)',
  'history.unreadable': 'the encrypted session history could not be opened in this state',
} as const;
export type SecurityEventKind = keyof typeof SECURITY_EVENT_KINDS;

export type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };
export type SecurityDetail = { [k: string]: JsonValue };

export interface SecurityLogEntry {
  v: 1;
  seq: number;
  time: string;
  kind: string;
  detail: SecurityDetail;
  prev: string;
  hash: string;
}

/** The port the subsystems that make security events call (boot, keys, pki, OTA, attestation). */
export interface SecurityEvents {
  /** Appends one entry; never throws (a failure to log is logged and returned as undefined). */
  record(kind: SecurityEventKind, detail: SecurityDetail): Promise<SecurityLogEntry | undefined>;
}

/** Drops every event: for commands that run without a data dir (and unit tests that do not look). */
export const NO_SECURITY_EVENTS: SecurityEvents = { record: async () => undefined };

/** The TPM-held log key (KeyService.logKeySigner): ECDSA P-256 over SHA-256(message), raw r‖s. */
export interface CheckpointSigner {
  /** Short id of the public key (hex SHA-256 of its SPKI DER, first 16 bytes): names the key in each checkpoint. */
  keyId: string;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/**
 * The KeyService's log key as a CheckpointSigner (structural: firmware/keys need not know the log). Undefined when
 * the vehicle has no log key yet (provisioned before it existed): checkpoints are then unsigned, LOG_NO_SIGNER.
 */
export function tpmCheckpointSigner(keys: { signWithLogKey(digest32: Uint8Array): Promise<Uint8Array>; provisioning: { logKey?: { publicKeyPem: string } | undefined } }): CheckpointSigner | undefined {
  const pem = keys.provisioning.logKey?.publicKeyPem;
  if (!pem) return undefined;
  return { keyId: logKeyId(pem), sign: (message) => keys.signWithLogKey(new Uint8Array(createHash('sha256').update(message).digest())) };
}

export type SecurityLogErrorCode =
  | 'LOG_ENTRY_MALFORMED' | 'LOG_TRUNCATED' | 'LOG_SEQ_OUT_OF_ORDER' | 'LOG_ENTRY_ALTERED' | 'LOG_CHAIN_BROKEN'
  | 'LOG_CHECKPOINT_INVALID' | 'LOG_KEY_INVALID' | 'LOG_DETAIL_INVALID'
  /** The reason an unsigned checkpoint carries when the process has no log key at all. */
  | 'LOG_NO_SIGNER';

// ---- encoding ---------------------------------------------------------------------------------------------------

/** Canonical JSON (sorted keys, no white space); refuses what JSON cannot carry exactly. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new EvccError('LOG_DETAIL_INVALID', 'a non-finite number cannot be logged', { value: String(value) });
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  throw new EvccError('LOG_DETAIL_INVALID', `a ${typeof value} cannot be logged`, { type: typeof value });
}

export function entryHash(e: Omit<SecurityLogEntry, 'hash'>): string {
  const body = canonicalJson({ v: e.v, seq: e.seq, time: e.time, kind: e.kind, detail: e.detail, prev: e.prev });
  return createHash('sha256').update(body).digest('hex');
}

/** The bytes a checkpoint at `seq` with predecessor hash `prev` signs (the signer hashes them: SHA-256). */
export function checkpointMessage(seq: number, prev: string): Uint8Array {
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigUInt64BE(BigInt(seq));
  return Buffer.concat([Buffer.from(CHECKPOINT_DOMAIN, 'utf8'), Buffer.from([0]), seqBytes, Buffer.from(prev, 'hex')]);
}

/** Key id of a P-256 public key (PEM): hex of the first 16 bytes of SHA-256(SPKI DER). */
export function logKeyId(publicKeyPem: string): string {
  const der = parseLogKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 32);
}

function parseLogKey(publicKeyPem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(publicKeyPem);
  } catch (err) {
    throw new EvccError('LOG_KEY_INVALID', 'the log key is not a PEM public key', {}, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new EvccError('LOG_KEY_INVALID', 'the log key must be an EC P-256 public key', { type: key.asymmetricKeyType });
  }
  return key;
}

export const encodeEntry = (e: SecurityLogEntry): string => `${canonicalJson(e)}\n`;

// ---- verification -----------------------------------------------------------------------------------------------

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const EntrySchema = z.object({
  v: z.literal(1),
  seq: z.number().int().nonnegative(),
  time: z.string(),
  kind: z.string().min(1),
  detail: z.record(z.string(), z.unknown()),
  prev: hex64,
  hash: hex64,
}).strict();
const SignedCheckpoint = z.object({ key: z.string(), sig: z.string() });
const UnsignedCheckpoint = z.object({ unsigned: z.string(), message: z.string().optional() });

export interface LogVerification {
  entries: number;
  /** Hash of the last entry (the head an upload must extend). */
  head: string;
  signedCheckpoints: number;
  /** Checkpoints the vehicle could not sign (degraded state), with the reason it wrote. */
  unsignedCheckpoints: { seq: number; reason: string }[];
  /** Seq of the last signed checkpoint (every entry before it is authenticated); -1 when there is none. */
  signedThrough: number;
  /** Entries after the last signed checkpoint: chained, not yet covered by a signature. */
  unsignedTail: number;
  /** Signed checkpoints not checked because no key was given. */
  uncheckedSignatures: number;
}

function bad(code: SecurityLogErrorCode, seq: number, line: number, why: string, extra: Record<string, unknown> = {}): EvccError {
  return new EvccError(code, `security log: entry seq ${seq} (line ${line}): ${why}`, { seq, line, ...extra });
}

/**
 * Verifies a whole log (the file's text) with the log key's public part alone. Returns what it proved; throws the
 * typed error that names the first bad entry (`details.seq`, `details.line`). Without a key (the runtime's own file
 * on a vehicle provisioned before the log key existed) only the chain is checked and signatures count as unchecked.
 * `from` verifies a continuation (an upload): its first entry must have seq `from.seq` and extend `from.head`.
 */
export function verifySecurityLog(text: string, publicKeyPem: string | undefined, from?: { seq: number; head: string }): LogVerification {
  const key = publicKeyPem === undefined ? undefined : parseLogKey(publicKeyPem);
  const keyId = publicKeyPem === undefined ? undefined : logKeyId(publicKeyPem);
  const lines = text.split('\n');
  const complete = lines.pop() === '';
  let expectedSeq = from?.seq ?? 0;
  let prev = from?.head ?? GENESIS_PREV;
  const res: LogVerification = { entries: 0, head: prev, signedCheckpoints: 0, unsignedCheckpoints: [], signedThrough: -1, unsignedTail: 0, uncheckedSignatures: 0 };
  const all = complete ? lines : [...lines, text.slice(text.lastIndexOf('\n') + 1)];
  if (all.length === 0 && !from) throw bad('LOG_TRUNCATED', 0, 1, 'the log is empty (no genesis entry)');
  let lastSignedAt = -1;
  for (let i = 0; i < all.length; i++) {
    const lineNo = i + 1;
    const raw = all[i]!;
    const cut = !complete && i === all.length - 1;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw cut ? bad('LOG_TRUNCATED', expectedSeq, lineNo, 'the last line is cut short (no complete entry)')
        : bad('LOG_ENTRY_MALFORMED', expectedSeq, lineNo, 'not a JSON entry');
    }
    const r = EntrySchema.safeParse(parsed);
    if (!r.success) throw bad(cut ? 'LOG_TRUNCATED' : 'LOG_ENTRY_MALFORMED', expectedSeq, lineNo, `not an ${SECURITY_LOG_FORMAT} entry (${r.error.issues[0]?.path.join('.') ?? ''}: ${r.error.issues[0]?.message ?? ''})`);
    if (cut) throw bad('LOG_TRUNCATED', expectedSeq, lineNo, 'the last entry has no line end (file cut short)');
    const e = r.data as SecurityLogEntry;
    if (e.seq !== expectedSeq) {
      throw bad('LOG_SEQ_OUT_OF_ORDER', expectedSeq, lineNo, e.seq > expectedSeq ? `missing or moved: found seq ${e.seq} in its place` : `found seq ${e.seq} again (reordered or duplicated)`, { found: e.seq });
    }
    if (entryHash(e) !== e.hash) throw bad('LOG_ENTRY_ALTERED', e.seq, lineNo, 'its content does not match its hash (edited)');
    if (e.prev !== prev) throw bad('LOG_CHAIN_BROKEN', e.seq, lineNo, 'does not chain to the entry before it (inserted, removed or replaced)');
    if (e.seq === 0 && e.kind !== 'log.genesis') throw bad('LOG_ENTRY_MALFORMED', 0, lineNo, 'the first entry is not the genesis entry');
    if (e.kind === 'log.checkpoint') {
      const signed = SignedCheckpoint.safeParse(e.detail);
      if (signed.success && !key) {
        res.uncheckedSignatures++;
      } else if (signed.success && key) {
        if (signed.data.key !== keyId) throw bad('LOG_CHECKPOINT_INVALID', e.seq, lineNo, `signed with another key (${signed.data.key}, expected ${keyId})`);
        const ok = cryptoVerify('sha256', checkpointMessage(e.seq, e.prev), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signed.data.sig, 'base64'));
        if (!ok) {
          throw bad('LOG_CHECKPOINT_INVALID', e.seq, lineNo, `the checkpoint signature does not verify: entries ${lastSignedAt + 1}–${e.seq - 1} were altered or the checkpoint forged`, { since: lastSignedAt + 1 });
        }
        res.signedCheckpoints++;
        lastSignedAt = e.seq;
      } else {
        const unsigned = UnsignedCheckpoint.safeParse(e.detail);
        if (!unsigned.success) throw bad('LOG_CHECKPOINT_INVALID', e.seq, lineNo, 'a checkpoint with neither a signature nor the reason it has none');
        res.unsignedCheckpoints.push({ seq: e.seq, reason: unsigned.data.unsigned });
      }
    }
    prev = e.hash;
    expectedSeq++;
    res.entries++;
  }
  res.head = prev;
  res.signedThrough = lastSignedAt;
  res.unsignedTail = lastSignedAt >= 0 ? expectedSeq - lastSignedAt - 1 : res.entries;
  return res;
}

/** Parses entries already verified (the runtime's own file, an upload after verifySecurityLog). */
export function parseEntries(text: string): SecurityLogEntry[] {
  return text.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as SecurityLogEntry);
}

// ---- the writer -------------------------------------------------------------------------------------------------

export interface SecurityLogDeps {
  store: FileStore;
  /** Epoch ms. */
  now: () => number;
  /** The TPM log key; absent or refusing (degraded state) → unsigned checkpoints with the reason. */
  signer?: CheckpointSigner;
  log: Logger;
}

export interface SecurityLogOptions {
  vehicleId: string;
  /** The log key's public part (provisioning record): the runtime's own file is verified with it at open. */
  publicKeyPem?: string;
  path?: string;
  /** A checkpoint after this many entries since the last one (and at every explicit `checkpoint()`). */
  checkpointEvery?: number;
}

/**
 * The runtime's writer. Entries are kept in memory and the file is replaced atomically on each append (FileStore:
 * old or new content after a power cut, never a torn line); security events are few (tens per boot).
 * At open the existing file is verified; one that does not verify is set aside (`…rejected-<time>.jsonl`, kept for
 * the auditor) and a new log starts whose genesis entry records why and the old head — nothing is silently lost.
 */
export class SecurityLog implements SecurityEvents {
  private chain: Promise<unknown> = Promise.resolve();
  private sinceCheckpoint = 0;
  private signer: CheckpointSigner | undefined;
  private noSigner: { code: string; message: string } = { code: 'LOG_NO_SIGNER', message: 'no log key in this process' };

  private constructor(private readonly d: SecurityLogDeps, private readonly path: string, private entries: SecurityLogEntry[], private readonly every: number) {
    this.signer = d.signer;
  }

  /**
   * The log key, once the key service is open (the runtime opens the log first, so the key service and the store
   * can record into it while they open).
   */
  useSigner(signer: CheckpointSigner | undefined, whyNone?: { code: string; message: string }): void {
    this.signer = signer;
    if (whyNone) this.noSigner = whyNone;
  }

  static async open(deps: SecurityLogDeps, opts: SecurityLogOptions): Promise<SecurityLog> {
    const path = opts.path ?? SECURITY_LOG_PATH;
    const every = opts.checkpointEvery ?? 32;
    const raw = await deps.store.read(path);
    const logger = deps.log;
    let genesisNote: SecurityDetail | undefined;
    if (raw) {
      const text = Buffer.from(raw).toString('utf8');
      try {
        verifySecurityLog(text, opts.publicKeyPem);
        const log = new SecurityLog(deps, path, parseEntries(text), every);
        log.sinceCheckpoint = log.entries.length - 1 - lastIndexOfKind(log.entries, 'log.checkpoint');
        return log;
      } catch (err) {
        const e = err as EvccError;
        const aside = `${path.replace(/\.jsonl$/, '')}.rejected-${new Date(deps.now()).toISOString().replace(/[-:.]/g, '')}.jsonl`;
        await deps.store.writeAtomic(aside, raw, { mode: 0o600 });
        await deps.store.remove(path);
        genesisNote = { rejected: { code: e.code ?? 'INTERNAL', message: e.message, keptAs: aside } };
        logger.error({ code: e.code, seq: e.details?.seq, keptAs: aside, cp: 'LOG-REJECTED' }, `security log did not verify (${e.message}): kept aside, a new log starts`);
      }
    }
    const log = new SecurityLog(deps, path, [], every);
    await log.appendNow('log.genesis', {
      format: SECURITY_LOG_FORMAT, vehicleId: opts.vehicleId,
      ...(opts.publicKeyPem ? { logKey: logKeyId(opts.publicKeyPem) } : {}),
      ...(genesisNote ?? {}),
    });
    return log;
  }

  get head(): { seq: number; hash: string } {
    const last = this.entries.at(-1)!;
    return { seq: last.seq, hash: last.hash };
  }

  /** Entries with seq ≥ `seq` (what an upload sends after the backend's head). */
  entriesFrom(seq: number): SecurityLogEntry[] {
    return this.entries.filter((e) => e.seq >= seq);
  }

  /** The whole file as written. */
  text(): string {
    return this.entries.map(encodeEntry).join('');
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Appends one event (and a checkpoint when `checkpointEvery` is reached); throws on a write failure. */
  append(kind: SecurityEventKind, detail: SecurityDetail): Promise<SecurityLogEntry> {
    return this.serial(async () => {
      const e = await this.appendNow(kind, detail);
      if (++this.sinceCheckpoint >= this.every) await this.checkpointNow();
      return e;
    });
  }

  async record(kind: SecurityEventKind, detail: SecurityDetail): Promise<SecurityLogEntry | undefined> {
    try {
      return await this.append(kind, detail);
    } catch (err) {
      this.d.log.error({ kind, code: (err as EvccError).code, cp: 'LOG-APPEND-FAILED' }, `security log: ${kind} not recorded (${(err as Error).message})`);
      return undefined;
    }
  }

  /** A checkpoint now: signed with the TPM log key, or unsigned with the TPM's reason in an unapproved state. */
  checkpoint(): Promise<SecurityLogEntry> {
    return this.serial(() => this.checkpointNow());
  }

  private async checkpointNow(): Promise<SecurityLogEntry> {
    const seq = this.entries.length;
    const prev = this.entries.at(-1)!.hash;
    let detail: SecurityDetail;
    if (!this.signer) {
      // Without a key service (degraded: the TPM refused the state at start) the checkpoint carries that reason.
      detail = { unsigned: this.noSigner.code, message: this.noSigner.message };
    } else {
      try {
        const sig = await this.signer.sign(checkpointMessage(seq, prev));
        detail = { key: this.signer.keyId, sig: Buffer.from(sig).toString('base64') };
      } catch (err) {
        const e = err as EvccError;
        detail = { unsigned: e.code ?? 'INTERNAL', message: e.message, ...(typeof e.details?.rc === 'string' ? { rc: e.details.rc } : {}) };
        this.d.log.warn({ code: e.code, seq, cp: 'LOG-CHECKPOINT-UNSIGNED' }, `security log: checkpoint ${seq} unsigned (${e.message})`);
      }
    }
    const e = await this.appendNow('log.checkpoint', detail);
    this.sinceCheckpoint = 0;
    return e;
  }

  private async appendNow(kind: SecurityEventKind, detail: SecurityDetail): Promise<SecurityLogEntry> {
    const last = this.entries.at(-1);
    const body = { v: 1 as const, seq: last ? last.seq + 1 : 0, time: new Date(this.d.now()).toISOString(), kind, detail: JSON.parse(canonicalJson(detail)) as SecurityDetail, prev: last?.hash ?? GENESIS_PREV };
    const entry: SecurityLogEntry = { ...body, hash: entryHash(body) };
    const next = [...this.entries, entry];
    await this.d.store.writeAtomic(this.path, next.map(encodeEntry).join(''), { mode: 0o640 });
    this.entries = next;
    return entry;
  }
}

function lastIndexOfKind(entries: SecurityLogEntry[], kind: string): number {
  for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.kind === kind) return i;
  return -1;
}
