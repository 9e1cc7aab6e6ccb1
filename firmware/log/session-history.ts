import { createCipheriv, createDecipheriv } from 'node:crypto';
import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';

/**
 * The vehicle's session history (TR-2019-04 §3.3.4, private data): one record per plug-in with what identifies the
 * driver and where they charged — eMAID, EVSE / charger id, energy, times — encrypted at rest with AES-256-GCM.
 *
 * Key: HKDF-SHA256(TPM-sealed runtime secret, 'evcc session-history aes-256-gcm v1') (firmware/keys/runtime-secret.ts).
 * The runtime secret is sealed under the storage key with policy A, so this key exists only in memory of a runtime
 * whose measured state the OEM approved — exactly what a separately sealed key would give, without a second unseal
 * (two more tpm2-tools processes and a TPM object slot at every start). Its own HKDF label makes it independent of the
 * other derived keys (store integrity, link passphrase): knowing one tells nothing about the others.
 * A degraded vehicle (tampered bundle, rollback) has no runtime secret, hence no key: it cannot read the history and
 * does not add to it; it says so (HISTORY_UNAVAILABLE, and a `history.unreadable` security-log entry by the caller).
 *
 * Each record (a JSON line) has its own random 96-bit nonce (injected randomness port; 2^32 records per key stay far
 * below the GCM bound); the additional data binds the record to the format, the vehicle and its position
 * (`evcc-session-history/1 ‖ vehicleId ‖ n`), so a record moved, reordered or copied from another vehicle fails
 * authentication like an edited one. Only the newest `keep` records are kept.
 */
export const SESSION_HISTORY_PATH = 'history/sessions.jsonl';
export const SESSION_HISTORY_FORMAT = 'evcc-session-history/1';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export type SessionHistoryErrorCode = 'HISTORY_UNAVAILABLE' | 'HISTORY_RECORD_INVALID';

/** What the runtime keeps per plug-in. */
export interface SessionHistoryRecord {
  startedAt: string;
  endedAt: string;
  ok: boolean;
  endCode: string;
  protocol?: string;
  payment?: string;
  /** Contract id (PnC). */
  emaid?: string;
  /** EVSEID / charger id as the SECC sent it. */
  evseId?: string;
  /** SECC address (IPv6) of the charger. */
  charger?: string;
  energyWh?: number;
  soc?: { start: number; end: number };
}

const Line = z.object({ n: z.number().int().nonnegative(), nonce: z.string(), ct: z.string(), tag: z.string() }).strict();
type Line = z.infer<typeof Line>;

export interface SessionHistoryDeps {
  store: FileStore;
  /** The 32-byte key (VehicleTrust.historyKey); undefined in a degraded state. */
  key: Uint8Array | undefined;
  /** Why there is no key (the degraded reason code), for the refusal. */
  unavailableReason?: string;
  random: (n: number) => Uint8Array;
  log: Logger;
}

const aad = (vehicleId: string, n: number): Buffer => Buffer.from(`${SESSION_HISTORY_FORMAT}\u0000${vehicleId}\u0000${n}`, 'utf8');

export class SessionHistory {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: SessionHistoryDeps, private readonly o: { vehicleId: string; path?: string; keep?: number }) {
    if (d.key && d.key.length !== 32) throw new EvccError('HISTORY_UNAVAILABLE', 'the session-history key must be 32 bytes', { length: d.key.length });
  }

  private get path(): string {
    return this.o.path ?? SESSION_HISTORY_PATH;
  }

  get readable(): boolean {
    return this.d.key !== undefined;
  }

  private requireKey(what: string): Uint8Array {
    if (!this.d.key) {
      throw new EvccError('HISTORY_UNAVAILABLE', `session history cannot be ${what} in this state: its key exists only in an OEM-approved software state (${this.d.unavailableReason ?? 'no key'})`,
        { reason: this.d.unavailableReason ?? 'no key' });
    }
    return this.d.key;
  }

  private async lines(): Promise<Line[]> {
    const raw = await this.d.store.read(this.path);
    if (!raw) return [];
    return Buffer.from(raw).toString('utf8').split('\n').filter((l) => l.length > 0).map((l, i) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(l);
      } catch {
        throw new EvccError('HISTORY_RECORD_INVALID', `session history: line ${i + 1} is not a record`, { line: i + 1 });
      }
      const r = Line.safeParse(parsed);
      if (!r.success) throw new EvccError('HISTORY_RECORD_INVALID', `session history: line ${i + 1} is not a record`, { line: i + 1 });
      return r.data;
    });
  }

  /** Every record, decrypted and authenticated; the first that fails is named (HISTORY_RECORD_INVALID, details.n). */
  async read(): Promise<(SessionHistoryRecord & { n: number })[]> {
    const key = this.requireKey('read');
    return (await this.lines()).map((l) => ({ n: l.n, ...this.open(key, l) }));
  }

  private open(key: Uint8Array, l: Line): SessionHistoryRecord {
    try {
      const d = createDecipheriv('aes-256-gcm', key, Buffer.from(l.nonce, 'base64'), { authTagLength: TAG_BYTES });
      d.setAAD(aad(this.o.vehicleId, l.n));
      d.setAuthTag(Buffer.from(l.tag, 'base64'));
      const pt = Buffer.concat([d.update(Buffer.from(l.ct, 'base64')), d.final()]);
      return JSON.parse(pt.toString('utf8')) as SessionHistoryRecord;
    } catch (err) {
      throw new EvccError('HISTORY_RECORD_INVALID', `session history: record ${l.n} does not authenticate (altered, moved, or written under another key)`, { n: l.n }, { cause: err });
    }
  }

  /** Encrypts and appends one record (atomic replace of the file); drops the oldest beyond `keep`. */
  append(record: SessionHistoryRecord): Promise<number> {
    return this.serial(async () => {
      const key = this.requireKey('written');
      const lines = await this.lines();
      const n = (lines.at(-1)?.n ?? -1) + 1;
      const nonce = this.d.random(NONCE_BYTES);
      if (nonce.length !== NONCE_BYTES) throw new EvccError('HISTORY_UNAVAILABLE', 'the randomness port returned a short nonce', { length: nonce.length });
      const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
      c.setAAD(aad(this.o.vehicleId, n));
      const ct = Buffer.concat([c.update(JSON.stringify(record), 'utf8'), c.final()]);
      const line: Line = { n, nonce: Buffer.from(nonce).toString('base64'), ct: ct.toString('base64'), tag: c.getAuthTag().toString('base64') };
      const kept = [...lines, line].slice(-(this.o.keep ?? 1000));
      await this.d.store.writeAtomic(this.path, kept.map((x) => `${JSON.stringify(x)}\n`).join(''), { mode: 0o600 });
      this.d.log.info({ n, cp: 'HISTORY-APPENDED' }, `session history: record ${n} added (encrypted)`);
      return n;
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }
}
