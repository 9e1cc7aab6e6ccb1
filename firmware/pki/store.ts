/**
 * The vehicle's certificate store: V2G root CAs (trust anchors for the SECC), the OEM provisioning chain and the
 * contract certificate chains. Certificates only — private keys live in the TPM (firmware/keys), never here.
 *
 * Persistence: one file (`pki/store.json` in a FileStore) written by atomic replace, so a power cut leaves the old
 * or the new store. Two independent proofs protect it (firmware/pki/README.md):
 *   - the integrity tag over the whole body from an `IntegrityGuard`; a file changed on disk is refused with
 *     `PKI_STORE_TAMPERED` at open. Whoever holds the guard's key can forge a store, so production wires
 *     `TpmSealedIntegrity` (firmware/keys/runtime-secret.ts): an HMAC key derived in memory from the runtime secret
 *     the TPM unseals only in an OEM-approved state. A plain `HmacIntegrity` with a key from elsewhere serves tests
 *     and the explicit `--store-key-env` bench arrangement;
 *   - per V2G root, the OEM's approved-V2G-root statement it arrived with (root-approval.ts), verifiable with the
 *     OEM backend's public key alone. This is what a degraded vehicle (TPM refused the state) still has:
 *     `openDegraded` trusts exactly the roots whose statement verifies, so the vehicle can still authenticate
 *     chargers over TLS and charge with EIM, while nothing else of the file (contract chains) is trusted.
 * Roots are stored only in canonical DER (a twin with trailing bytes would get its own fingerprint), and a store
 * file that disappears after it was created is an error (`PKI_STORE_MISSING`), not a silent first boot.
 *
 * Rollback: a valid tag does not make a file current — an older copy put back has one too. With a
 * `StoreVersionCounter` (production: a TPM NV counter only an OEM-approved state can raise, firmware/keys/
 * store-counter.ts) every write carries version = counter + 1 inside the tagged body and raises the counter after
 * the file is durably on disk. At open, version = counter is current, version = counter + 1 is a write whose
 * increment a crash cut off (rolled forward: the counter is raised now), anything older is `PKI_STORE_ROLLED_BACK`.
 * The other crash window (counter raised, file not written) cannot occur: the increment follows the fsynced rename.
  *
 * Mutations are serialised and persisted before they become visible: `installRoot` resolves only after the new
 * file is durably on disk (in degraded mode nothing is written: changes last for the run).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { KeyUsageFlags } from '@peculiar/x509';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import { isSelfSigned, parseCert, type CertInfo } from './cert.ts';
import { ALGORITHMS, type AlgorithmPolicy } from './profiles.ts';
import { RootApproval, type RootApprovalErrorCode, type RootApprovalVerifier } from './root-approval.ts';
import type { SecurityEvents } from '../log/security-log.ts';

export interface IntegrityGuard {
  /** Recorded in the file so a store written under another scheme is refused, not misread. */
  readonly scheme: string;
  tag(data: Uint8Array): Promise<Uint8Array>;
  verify(data: Uint8Array, tag: Uint8Array): Promise<boolean>;
}

/** HMAC-SHA256 with a key held in memory (tests, bench). Production: TpmSealedIntegrity, keyed from the TPM-sealed secret. */
export class HmacIntegrity implements IntegrityGuard {
  readonly scheme = 'hmac-sha256';
  private readonly key: Buffer;
  constructor(key: Uint8Array) {
    if (key.length < 32) throw new EvccError('CONFIG_INVALID', 'store integrity key must be at least 32 bytes');
    this.key = Buffer.from(key);
  }
  async tag(data: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(createHmac('sha256', this.key).update(data).digest());
  }
  async verify(data: Uint8Array, tag: Uint8Array): Promise<boolean> {
    const expect = await this.tag(data);
    return tag.length === expect.length && timingSafeEqual(expect, tag);
  }
}

export interface RootEntry {
  der: Uint8Array;
  fingerprint: string;
  subject: string;
  subjectKeyId?: string;
  notAfter: Date;
  installedAt: string;
  /** Where it came from: 'factory', 'ota:<request id>', 'cli', … */
  source: string;
  /** The OEM's approved-V2G-root statement the root arrived with (root-approval.ts); absent: trusted in full mode only. */
  approval?: RootApproval;
  /** Origin of the key that verified `approval` in this store ('release', 'tpm-tagged', …); absent when unverified. */
  approvedBy?: string;
}

/**
 * How the store was verified. `full`: the integrity tag over the whole file (TPM-derived key), plus every root's
 * OEM approval when a verifier is given. `degraded`: no integrity key exists in this state, so each root entry is
 * verified alone by its OEM approval; everything else in the file (OEM provisioning and contract chains, roots
 * without a verifying approval) is not trusted, and the file is never rewritten.
 */
export type StoreMode = 'full' | 'degraded';

/** Codes of the store beyond those in errors.ts (listed here until errors.ts carries them). */
export type StoreErrorCode = 'PKI_STORE_MISSING' | 'PKI_STORE_READ_ONLY' | 'PKI_STORE_ROLLED_BACK' | 'PKI_STORE_CONFLICT' | RootApprovalErrorCode;

/**
 * A monotonic counter outside the file that binds the file's version (production: TpmStoreCounter, a TPM NV counter).
 * Nobody can lower it; raising it without writing the file only makes the store unopenable, so who may raise it
 * is the implementation's choice (the TPM's: only the OEM-approved state).
 */
export interface StoreVersionCounter {
  /** For logs and errors, e.g. 'tpm-nv:0x1800102'. */
  readonly id: string;
  /** Its value before any store write was bound to it: a file without a version is accepted only while it still reads this. */
  readonly initial: bigint;
  read(): Promise<bigint>;
  increment(): Promise<void>;
}

export interface CertificateStoreOptions {
  integrity: IntegrityGuard;
  /**
   * Verifies each root's OEM approval at open and install; an entry whose approval does not verify is dropped (PKI
   * error line). Without a verifier, approvals are kept as they came and verified by the next open that has one.
   */
  approvals?: RootApprovalVerifier;
  /** Refuse to install a root without an OEM approval (PKI_ROOT_UNAPPROVED); default: allowed, trusted in full mode only. */
  requireApproval?: boolean;
  /** Upper bound of installed V2G roots (default DEFAULT_MAX_ROOTS). */
  maxRoots?: number;
  /**
   * Binds the file's version to this counter (full mode): an older copy of the file is PKI_STORE_ROLLED_BACK.
   * Without it (bench `--store-key-env`, tests) an old file with a valid tag is accepted.
   */
  version?: StoreVersionCounter;
  /**
   * Recovery after PKI_STORE_MISSING, a deliberate act (never a default): a missing file starts an empty store
   * although the marker or the counter says one existed. An existing file is opened as always (no rollback this way).
   */
  startOver?: boolean;
  /** Store-relative file path (default `pki/store.json`). */
  path?: string;
  algorithms?: AlgorithmPolicy;
  log?: Logger;
  now?: () => Date;
  /** The security log (firmware/log/security-log.ts): root installs and removals are security events. */
  events?: SecurityEvents;
}

/** Opening without the integrity key: the approvals verifier is what verifies (CertificateStore.openDegraded). */
export interface DegradedStoreOptions extends Omit<CertificateStoreOptions, 'integrity' | 'approvals' | 'requireApproval' | 'version'> {
  approvals: RootApprovalVerifier;
}

/** A root entry of the file that the open did not trust, and why (also logged as a PKI line). */
export interface DroppedRoot {
  subject?: string;
  fingerprint?: string;
  source?: string;
  reason: string;
}

/** A bounded trust store: OTA installs cannot grow it without limit. */
export const DEFAULT_MAX_ROOTS = 20;
const FORMAT = 'evcc-pki-store/1';
const DEFAULT_PATH = 'pki/store.json';

/**
 * Written next to the store file once the store exists. Store file missing while the marker is there: the store was
 * lost or deleted (PKI_STORE_MISSING) — not a first boot, so the vehicle does not quietly start with no roots.
 * Recovery is a deliberate act: remove the marker and install the roots again.
 */
export function storeMarkerPath(path = DEFAULT_PATH): string {
  return `${path.replace(/\.json$/, '')}.initialised`;
}

interface StoredRoot { der: string; installedAt: string; source: string; approval?: RootApproval }
interface StoreBody {
  roots: StoredRoot[];
  oemProvisioningChain: string[] | null;
  contractChains: Record<string, string[]>;
  /** Decimal value of the version counter this file was written for (absent: written without a counter). */
  version?: string;
}

interface InternalOptions extends Omit<CertificateStoreOptions, 'integrity'> {
  mode: StoreMode;
  integrity?: IntegrityGuard;
}

const b64 = (d: Uint8Array): string => Buffer.from(d).toString('base64');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));
const emptyBody = (): StoreBody => ({ roots: [], oemProvisioningChain: null, contractChains: {} });

/**
 * Why `der` is not the canonical DER of the certificate it parses to, or undefined. OpenSSL re-encodes the parsed
 * certificate (`X509Certificate.raw`); any other byte string for the same certificate — trailing bytes, a
 * non-minimal length — would be a twin with its own fingerprint, so it is refused.
 */
function nonCanonical(c: CertInfo, der: Uint8Array): string | undefined {
  const raw = c.node.raw;
  const given = Buffer.from(der);
  if (given.equals(raw)) return undefined;
  if (given.length > raw.length && given.subarray(0, raw.length).equals(raw)) return `${given.length - raw.length} byte(s) after the certificate`;
  return 'not canonical DER';
}

export class CertificateStore {
  private body: StoreBody;
  private readonly approvedBy: Map<string, string>;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly maxRoots: number;
  private readonly path: string;
  /** The version counter's value the file on disk is bound to (counter bound stores only). */
  private version: bigint | undefined;
  /** Root entries of the file this open did not trust (empty when every entry verified). */
  readonly dropped: readonly DroppedRoot[];

  private constructor(private readonly files: FileStore, private readonly o: InternalOptions, body: StoreBody, approvedBy: Map<string, string>, dropped: DroppedRoot[], version?: bigint) {
    this.body = body;
    this.version = version;
    this.approvedBy = approvedBy;
    this.dropped = dropped;
    this.maxRoots = o.maxRoots ?? DEFAULT_MAX_ROOTS;
    this.path = o.path ?? DEFAULT_PATH;
  }

  /**
   * Opens the store with its integrity key (full mode). A missing file starts an empty store on first boot only
   * (no marker yet); with the marker it is PKI_STORE_MISSING. Throws PKI_STORE_TAMPERED when the integrity tag does
   * not match, PKI_STORE_CORRUPT when the file does not parse. Roots whose approval fails the verifier are dropped.
   */
  static async open(files: FileStore, options: CertificateStoreOptions): Promise<CertificateStore> {
    const path = options.path ?? DEFAULT_PATH;
    const o: InternalOptions = { ...options, mode: 'full' };
    const raw = await files.read(path);
    const counted = options.version ? await options.version.read() : undefined;
    if (!raw) {
      if (options.startOver) options.log?.error({ path, cp: 'PKI-STORE-START-OVER' }, 'certificate store missing: starting an empty store as requested (start over); install the roots again');
      else await refuseLostStore(files, path, options.log, options.version && counted !== options.version.initial ? { counter: options.version, value: counted! } : undefined);
      return new CertificateStore(files, o, emptyBody(), new Map(), [], counted);
    }
    const envelope = parseEnvelope(raw, path);
    if (envelope.scheme !== options.integrity.scheme) {
      throw new EvccError('PKI_STORE_TAMPERED', `certificate store ${path} integrity scheme ${String(envelope.scheme)} != ${options.integrity.scheme}`, { path });
    }
    const bodyBytes = new TextEncoder().encode(envelope.body);
    const tag = /^[0-9a-f]{1,256}$/.test(envelope.tag) ? new Uint8Array(Buffer.from(envelope.tag, 'hex')) : new Uint8Array();
    if (!(await options.integrity.verify(bodyBytes, tag))) {
      options.log?.error({ path, cp: 'PKI-STORE-TAMPERED' }, 'certificate store integrity check failed: refusing it');
      throw new EvccError('PKI_STORE_TAMPERED', `certificate store ${path} failed its integrity check`, { path });
    }
    const { version, ...body } = parseBody(envelope.body, path);
    const bound = options.version ? await bindVersion(version, options.version, counted!, path, options.log) : undefined;
    for (const r of body.roots) {
      // Under a verified tag every entry is ours: one that does not parse is a corrupt store, not an attack to skip.
      try {
        parseCert(unb64(r.der));
      } catch (err) {
        throw new EvccError('PKI_STORE_CORRUPT', `certificate store ${path} content is invalid`, { path }, { cause: err });
      }
    }
    const screened = screenRoots(body.roots, o);
    const store = new CertificateStore(files, o, { ...body, roots: screened.kept }, screened.approvedBy, screened.dropped, bound);
    const marker = storeMarkerPath(path);
    if (!(await files.exists(marker))) await writeMarker(files, marker);
    return store;
  }

  /**
   * Opens the store without its integrity key (degraded mode: the TPM refused the state-bound secret). Only V2G
   * roots whose OEM approval verifies with `approvals` are trusted; each other entry is dropped with a PKI line.
   * OEM provisioning and contract chains are not available (nothing vouches for them). Changes stay in memory: the
   * file keeps its full-mode tag for the next good boot. Throws PKI_STORE_CORRUPT when the file is not a store at
   * all, PKI_STORE_MISSING as `open` does.
   */
  static async openDegraded(files: FileStore, options: DegradedStoreOptions): Promise<CertificateStore> {
    const path = options.path ?? DEFAULT_PATH;
    const o: InternalOptions = { ...options, mode: 'degraded' };
    const raw = await files.read(path);
    if (!raw) {
      await refuseLostStore(files, path, options.log);
      return new CertificateStore(files, o, emptyBody(), new Map(), []);
    }
    // No integrity key here, so the body's version is unauthenticated and checking it against the counter proves
    // nothing; the roots are trusted by their OEM approvals alone (an approval's own expiry bounds a restored root).
    const body = parseBody(parseEnvelope(raw, path).body, path);
    const screened = screenRoots(body.roots, o);
    const total = body.roots.length;
    options.log?.[screened.kept.length ? 'info' : 'warn']({ path, trusted: screened.kept.length, dropped: screened.dropped.length, keys: options.approvals.keyIds.map((k) => k.slice(0, 16)) },
      `certificate store opened in degraded mode: ${screened.kept.length} of ${total} V2G root(s) verified by their OEM approval; OEM and contract chains not trusted`);
    return new CertificateStore(files, o, { ...emptyBody(), roots: screened.kept }, screened.approvedBy, screened.dropped);
  }

  get mode(): StoreMode {
    return this.o.mode;
  }

  /** Installed V2G roots (copies). */
  listRoots(): RootEntry[] {
    return this.body.roots.map((r) => {
      const c = parseCert(unb64(r.der));
      const by = this.approvedBy.get(c.fingerprint);
      return {
        der: Uint8Array.from(c.der), fingerprint: c.fingerprint, subject: c.subject, notAfter: c.notAfter,
        installedAt: r.installedAt, source: r.source, ...(c.subjectKeyId ? { subjectKeyId: c.subjectKeyId } : {}),
        ...(r.approval ? { approval: { ...r.approval } } : {}), ...(by ? { approvedBy: by } : {}),
      };
    });
  }

  /** DER of the installed roots: the trust anchors for `validateChain`. */
  anchors(): Uint8Array[] {
    return this.body.roots.map((r) => unb64(r.der));
  }

  get rootCount(): number {
    return this.body.roots.length;
  }

  /**
   * Installs a V2G root CA atomically (persisted before it is used), with the OEM approval it arrived with.
   * Idempotent for an installed root (a newer or first verified approval is attached to it). Throws PKI_NOT_A_ROOT
   * (not a canonical DER self-signed CA of the allowed algorithms, or outside its validity), PKI_ROOT_APPROVAL_INVALID,
   * PKI_ROOT_UNAPPROVED (no approval where one is required: always in degraded mode), PKI_STORE_FULL, IO_FAILED.
   * In degraded mode the root is trusted for this run only (memory), the file is not rewritten.
   */
  installRoot(der: Uint8Array, meta: { source: string; approval?: RootApproval }): Promise<RootEntry> {
    return this.serialised(async () => {
      const c = this.checkRoot(der);
      const approvedBy = this.checkApproval(c, meta.approval);
      const entryOf = () => this.listRoots().find((r) => r.fingerprint === c.fingerprint)!;
      const existing = this.body.roots.find((r) => parseCert(unb64(r.der)).fingerprint === c.fingerprint);
      if (existing) {
        if (meta.approval && this.isBetterApproval(c.fingerprint, existing.approval, meta.approval, approvedBy)) {
          const roots = this.body.roots.map((r) => (r === existing ? { ...r, approval: meta.approval! } : r));
          await this.commit({ ...this.body, roots }, () => this.setApprovedBy(c.fingerprint, approvedBy));
          this.o.log?.info({ subject: c.subject, fingerprint: c.fingerprint, approvedBy: approvedBy ?? 'unverified', validUntil: meta.approval.validUntil, persisted: this.mode === 'full' },
            'OEM approval attached to installed V2G root');
        }
        return entryOf();
      }
      if (this.body.roots.length >= this.maxRoots) {
        throw new EvccError('PKI_STORE_FULL', `root store holds ${this.body.roots.length} roots (max ${this.maxRoots})`, { max: this.maxRoots });
      }
      const installedAt = this.now().toISOString();
      const stored: StoredRoot = { der: b64(c.der), installedAt, source: meta.source, ...(meta.approval ? { approval: meta.approval } : {}) };
      await this.commit({ ...this.body, roots: [...this.body.roots, stored] }, () => this.setApprovedBy(c.fingerprint, approvedBy));
      const fields = { subject: c.subject, keyId: c.subjectKeyId, fingerprint: c.fingerprint, source: meta.source, approvedBy: approvedBy ?? (meta.approval ? 'unverified' : 'none') };
      if (this.mode === 'degraded') this.o.log?.warn(fields, 'V2G root trusted for this run only (degraded mode: verified by its OEM approval, the store file is not rewritten)');
      else this.o.log?.info(fields, 'V2G root installed');
      await this.o.events?.record('pki.root-installed', { fingerprint: c.fingerprint, subject: c.subject, source: meta.source, approvedBy: fields.approvedBy, persisted: this.mode === 'full' });
      if (!meta.approval) this.o.log?.warn({ subject: c.subject, fingerprint: c.fingerprint, cp: 'PKI-ROOT-UNAPPROVED' }, 'V2G root has no OEM approval: trusted only while the store integrity key is available (not in degraded mode)');
      return entryOf();
    });
  }

  /** Removes a root by SHA-256 fingerprint (hex) or subject key id; resolves true when one was removed. */
  removeRoot(fingerprintOrKeyId: string): Promise<boolean> {
    return this.serialised(async () => {
      const id = fingerprintOrKeyId.toLowerCase().replace(/:/g, '');
      const keep = this.listRoots().filter((r) => r.fingerprint !== id && r.subjectKeyId !== id);
      if (keep.length === this.body.roots.length) return false;
      const keepSet = new Set(keep.map((r) => b64(r.der)));
      await this.commit({ ...this.body, roots: this.body.roots.filter((r) => keepSet.has(r.der)) });
      if (this.mode === 'degraded') this.o.log?.warn({ id }, 'V2G root removed for this run only (degraded mode: the store file is not rewritten)');
      else this.o.log?.info({ id }, 'V2G root removed');
      await this.o.events?.record('pki.root-removed', { id, persisted: this.mode === 'full' });
      return true;
    });
  }

  /** The OEM provisioning chain; undefined when none is stored, and always in degraded mode (unverified there). */
  getOemProvisioningChain(): Uint8Array[] | undefined {
    return this.body.oemProvisioningChain?.map(unb64);
  }

  setOemProvisioningChain(chain: Uint8Array[]): Promise<void> {
    return this.serialised(async () => {
      this.refuseReadOnly('the OEM provisioning chain');
      chain.forEach(parseCert);
      await this.commit({ ...this.body, oemProvisioningChain: chain.map(b64) });
    });
  }

  /** Contract certificate chains; none in degraded mode (unverified there, and PnC is off anyway). */
  listContractChains(): { id: string; chain: Uint8Array[] }[] {
    return Object.entries(this.body.contractChains).map(([id, chain]) => ({ id, chain: chain.map(unb64) }));
  }

  /** Stores a contract certificate chain under its id (EMAID). */
  putContractChain(id: string, chain: Uint8Array[]): Promise<void> {
    return this.serialised(async () => {
      this.refuseReadOnly('a contract chain');
      if (!/^[A-Za-z0-9*_-]{1,64}$/.test(id)) throw new EvccError('CONFIG_INVALID', `contract id not allowed: ${id}`);
      chain.forEach(parseCert);
      await this.commit({ ...this.body, contractChains: { ...this.body.contractChains, [id]: chain.map(b64) } });
    });
  }

  removeContractChain(id: string): Promise<boolean> {
    return this.serialised(async () => {
      this.refuseReadOnly('a contract chain');
      if (!(id in this.body.contractChains)) return false;
      const next = { ...this.body.contractChains };
      delete next[id];
      await this.commit({ ...this.body, contractChains: next });
      return true;
    });
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  private refuseReadOnly(what: string): void {
    if (this.mode === 'degraded') {
      throw new EvccError<StoreErrorCode>('PKI_STORE_READ_ONLY', `certificate store is open in degraded mode (no integrity key): ${what} cannot be stored`);
    }
  }

  private checkRoot(der: Uint8Array): CertInfo {
    let c: CertInfo;
    try {
      c = parseCert(der);
    } catch (err) {
      throw new EvccError('PKI_NOT_A_ROOT', 'root candidate is not a certificate', {}, { cause: err });
    }
    const now = this.now().getTime();
    const why = rootProblem(c, der, this.o.algorithms)
      ?? (now < c.notBefore.getTime() || now > c.notAfter.getTime() ? 'outside its validity period' : undefined);
    if (why) throw new EvccError('PKI_NOT_A_ROOT', `refusing to install "${c.subject}": ${why}`, { subject: c.subject, reason: why });
    return c;
  }

  /** The origin of the key that verified `approval` (undefined: none given, or kept unverified without a verifier). */
  private checkApproval(c: CertInfo, approval: RootApproval | undefined): string | undefined {
    if (!approval) {
      if (this.mode === 'degraded' || this.o.requireApproval) {
        throw new EvccError<StoreErrorCode>('PKI_ROOT_UNAPPROVED', `refusing to install "${c.subject}" without an OEM approval${this.mode === 'degraded' ? ' (degraded mode: the approval is the only proof)' : ''}`, { subject: c.subject });
      }
      return undefined;
    }
    if (this.o.approvals) return this.o.approvals.assert(c.der, approval, this.now(), c.subject).origin;
    if (!RootApproval.safeParse(approval).success) {
      throw new EvccError<StoreErrorCode>('PKI_ROOT_APPROVAL_INVALID', `OEM approval of "${c.subject}" refused: malformed approval statement`, { subject: c.subject });
    }
    return undefined;
  }

  /** A new approval replaces the stored one when it is the first, the first verified one, or lasts longer. */
  private isBetterApproval(fingerprint: string, current: RootApproval | undefined, next: RootApproval, nextVerifiedBy: string | undefined): boolean {
    if (!current) return true;
    if (nextVerifiedBy && !this.approvedBy.has(fingerprint)) return true;
    return Date.parse(next.validUntil) > Date.parse(current.validUntil) && (nextVerifiedBy !== undefined || !this.approvedBy.has(fingerprint));
  }

  private setApprovedBy(fingerprint: string, origin: string | undefined): void {
    if (origin) this.approvedBy.set(fingerprint, origin);
  }

  /** Persists `next` (full mode) and then makes it visible; in degraded mode it only becomes visible (memory). */
  private async commit(next: StoreBody, alsoOnSuccess?: () => void): Promise<void> {
    if (this.mode === 'full') {
      const integrity = this.o.integrity!;
      const counter = this.o.version;
      let version: bigint | undefined;
      if (counter) {
        const now = await counter.read();
        if (now !== this.version) {
          throw new EvccError<StoreErrorCode>('PKI_STORE_CONFLICT', `certificate store ${this.path}: version counter ${counter.id} reads ${now}, this process opened it at ${String(this.version)} (another writer): reopen the store`, { path: this.path, counter: counter.id });
        }
        version = now + 1n;
      }
      const body = JSON.stringify(version === undefined ? next : { ...next, version: String(version) });
      const tag = await integrity.tag(new TextEncoder().encode(body));
      const envelope = JSON.stringify({ format: FORMAT, scheme: integrity.scheme, body, tag: Buffer.from(tag).toString('hex') });
      await this.files.writeAtomic(this.path, envelope, { mode: 0o600 });
      const marker = storeMarkerPath(this.path);
      if (!(await this.files.exists(marker))) await writeMarker(this.files, marker);
      if (counter) {
        // After the durable write: a crash here leaves version = counter + 1, which the next open rolls forward. A
        // failed increment is therefore not undone (the TPM may have counted it): the change is not acknowledged
        // now and takes effect at the next open.
        await counter.increment();
        this.version = version;
      }
    }
    this.body = next;
    const live = new Set(next.roots.map((r) => parseCert(unb64(r.der)).fingerprint));
    for (const fp of [...this.approvedBy.keys()]) if (!live.has(fp)) this.approvedBy.delete(fp);
    alsoOnSuccess?.();
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** Structural V2G-root checks (not the validity period): canonical DER, self-signed CA with keyCertSign, algorithms. */
function rootProblem(c: CertInfo, der: Uint8Array, policy: AlgorithmPolicy | undefined): string | undefined {
  const algs = ALGORITHMS[policy ?? 'iso15118-2'];
  return nonCanonical(c, der)
    ?? (!isSelfSigned(c) ? 'not self-signed'
    : !c.basicConstraints?.ca ? 'not a CA'
    : c.keyUsage === undefined || (c.keyUsage & KeyUsageFlags.keyCertSign) === 0 ? 'lacks keyCertSign'
    : !c.namedCurve || !algs.curves.includes(c.namedCurve) || !c.signatureHash || !algs.hashes.includes(c.signatureHash) ? 'algorithm not allowed'
    : undefined);
}

/**
 * The roots of a file this open trusts. Both modes drop what is not a canonical V2G root and what carries an
 * approval that fails (bad signature, another root's statement, expired); degraded mode also drops what does not
 * parse, duplicates, roots without an approval and approvals by a key it does not hold (the approval is the only
 * proof there). Every drop is a PKI line.
 */
function screenRoots(roots: readonly unknown[], o: InternalOptions): { kept: StoredRoot[]; approvedBy: Map<string, string>; dropped: DroppedRoot[] } {
  const kept: StoredRoot[] = [];
  const approvedBy = new Map<string, string>();
  const dropped: DroppedRoot[] = [];
  const seen = new Set<string>();
  const now = o.now?.() ?? new Date();
  const degraded = o.mode === 'degraded';
  const drop = (d: DroppedRoot, level: 'warn' | 'error', cp: string) => {
    dropped.push(d);
    o.log?.[level]({ ...d, mode: o.mode, cp }, `V2G root entry not trusted: ${d.reason}`);
  };
  for (const entry of roots) {
    const r = entry as Partial<StoredRoot> | null;
    if (!r || typeof r.der !== 'string' || typeof r.source !== 'string' || typeof r.installedAt !== 'string') {
      drop({ reason: 'malformed store entry' }, 'error', 'PKI-ROOT-MALFORMED');
      continue;
    }
    let c: CertInfo;
    try {
      c = parseCert(unb64(r.der));
    } catch {
      drop({ source: r.source, reason: 'not a certificate' }, 'error', 'PKI-ROOT-MALFORMED');
      continue;
    }
    const id = { subject: c.subject, fingerprint: c.fingerprint, source: r.source };
    if (seen.has(c.fingerprint)) {
      drop({ ...id, reason: 'duplicate entry' }, 'warn', 'PKI-ROOT-DUPLICATE');
      continue;
    }
    const problem = rootProblem(c, unb64(r.der), o.algorithms);
    if (problem) {
      drop({ ...id, reason: problem }, 'error', 'PKI-ROOT-NOT-A-ROOT');
      continue;
    }
    if (r.approval === undefined) {
      if (degraded) {
        drop({ ...id, reason: 'no OEM approval (trusted only with the store integrity key)' }, 'warn', 'PKI-ROOT-UNAPPROVED');
        continue;
      }
    } else if (o.approvals) {
      const check = o.approvals.check(c.der, r.approval, now);
      if (!check.ok && check.kind === 'unknown-key' && !degraded) {
        // Under a verified tag this entry was written by our own runtime in an approved state: a statement by a key
        // we do not hold (an OEM key rotation) is no forgery. Kept, unverified, and not available in degraded mode.
        o.log?.warn({ ...id, cp: 'PKI-ROOT-APPROVAL-UNVERIFIED' }, `V2G root kept, its OEM approval unverified: ${check.reason} (not trusted in degraded mode)`);
      } else if (!check.ok) {
        drop({ ...id, reason: check.reason }, 'error', 'PKI-ROOT-APPROVAL-INVALID');
        continue;
      } else {
        approvedBy.set(c.fingerprint, check.key.origin);
      }
    }
    seen.add(c.fingerprint);
    kept.push({ der: r.der, installedAt: r.installedAt, source: r.source, ...(r.approval !== undefined ? { approval: r.approval } : {}) });
  }
  const unapproved = kept.filter((r) => r.approval === undefined).length;
  if (unapproved && !degraded) {
    o.log?.warn({ unapproved, cp: 'PKI-ROOT-UNAPPROVED' }, `${unapproved} V2G root(s) carry no OEM approval: trusted only while the store integrity key is available (not in degraded mode)`);
  }
  return { kept, approvedBy, dropped };
}

function parseEnvelope(raw: Uint8Array, path: string): { scheme?: unknown; body: string; tag: string } {
  let envelope: { format?: unknown; scheme?: unknown; body?: unknown; tag?: unknown };
  try {
    envelope = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw)) as typeof envelope;
  } catch (err) {
    throw new EvccError('PKI_STORE_CORRUPT', `certificate store ${path} is not JSON`, { path }, { cause: err });
  }
  if (envelope?.format !== FORMAT || typeof envelope.body !== 'string' || typeof envelope.tag !== 'string') {
    throw new EvccError('PKI_STORE_CORRUPT', `certificate store ${path} has an unknown format`, { path });
  }
  return { scheme: envelope.scheme, body: envelope.body, tag: envelope.tag };
}

function parseBody(text: string, path: string): StoreBody {
  try {
    const body = JSON.parse(text) as StoreBody;
    if (!body || !Array.isArray(body.roots) || typeof body.contractChains !== 'object' || body.contractChains === null) throw new Error('shape');
    return body;
  } catch (err) {
    throw new EvccError('PKI_STORE_CORRUPT', `certificate store ${path} content is invalid`, { path }, { cause: err });
  }
}

/**
 * The open's verdict on the tagged body's version against the counter: the counter value the file is bound to now,
 * or PKI_STORE_ROLLED_BACK / PKI_STORE_TAMPERED. A file one ahead was written by a run that crashed before raising
 * the counter: the counter is raised now (only the integrity-key holder can have written it).
 */
async function bindVersion(version: unknown, counter: StoreVersionCounter, value: bigint, path: string, log: Logger | undefined): Promise<bigint> {
  const refuse = (code: StoreErrorCode | 'PKI_STORE_TAMPERED', why: string, fileVersion: string): never => {
    log?.error({ path, counter: counter.id, counterValue: String(value), fileVersion, cp: code === 'PKI_STORE_ROLLED_BACK' ? 'PKI-STORE-ROLLED-BACK' : 'PKI-STORE-TAMPERED' }, `certificate store refused: ${why}`);
    throw new EvccError(code, `certificate store ${path}: ${why}`, { path, counter: counter.id, counterValue: String(value), fileVersion });
  };
  if (version === undefined) {
    if (value === counter.initial) return value; // written before the counter bound it (or never since provisioning)
    return refuse('PKI_STORE_ROLLED_BACK', `the file carries no version but counter ${counter.id} was raised to ${value} since provisioning (${counter.initial}): an older copy`, 'none');
  }
  if (typeof version !== 'string' || !/^\d{1,20}$/.test(version)) throw new EvccError('PKI_STORE_CORRUPT', `certificate store ${path} content is invalid (version)`, { path });
  const v = BigInt(version);
  if (v === value) return value;
  if (v < value) return refuse('PKI_STORE_ROLLED_BACK', `the file is version ${v}, counter ${counter.id} is at ${value}: an older copy of the store`, version);
  if (v > value + 1n) return refuse('PKI_STORE_TAMPERED', `the file is version ${v}, ahead of counter ${counter.id} at ${value} by more than one write`, version);
  log?.warn({ path, counter: counter.id, from: String(value), to: version, cp: 'PKI-STORE-ROLL-FORWARD' }, 'certificate store written by a run that ended before raising its version counter: raising it now');
  await counter.increment();
  const after = await counter.read();
  if (after !== v) {
    throw new EvccError<StoreErrorCode>('PKI_STORE_CONFLICT', `certificate store ${path}: counter ${counter.id} reads ${after} after raising it for version ${v} (another writer)`, { path, counter: counter.id });
  }
  return v;
}

async function refuseLostStore(files: FileStore, path: string, log: Logger | undefined, written?: { counter: StoreVersionCounter; value: bigint }): Promise<void> {
  const marker = storeMarkerPath(path);
  if (written) {
    // Deleting the marker with the file does not make a first boot: the counter proves stores were written.
    log?.error({ path, counter: written.counter.id, counterValue: String(written.value), cp: 'PKI-STORE-MISSING' }, 'certificate store file is missing but its version counter was raised: refusing to start with no roots');
    throw new EvccError<StoreErrorCode>('PKI_STORE_MISSING', `certificate store ${path} is missing although its version counter ${written.counter.id} was raised to ${written.value} since provisioning (${written.counter.initial}): the store was lost or deleted; to start over deliberately, open it with startOver and install the roots again`, { path, counter: written.counter.id });
  }
  if (!(await files.exists(marker))) return; // first boot: the store starts empty
  log?.error({ path, marker, cp: 'PKI-STORE-MISSING' }, 'certificate store file is missing but the store was initialised: refusing to start with no roots');
  throw new EvccError<StoreErrorCode>('PKI_STORE_MISSING', `certificate store ${path} is missing although ${marker} says it was created (lost or deleted); to start over deliberately, remove ${marker} and install the roots again`, { path, marker });
}

async function writeMarker(files: FileStore, marker: string): Promise<void> {
  await files.writeAtomic(marker, 'evcc certificate store initialised: a missing store file is an error from now on\n', { mode: 0o644 });
}
