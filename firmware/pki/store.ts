/**
 * The vehicle's certificate store: V2G root CAs (trust anchors for the SECC), the OEM provisioning chain and the
 * contract certificate chains. Certificates only — private keys live in the TPM (firmware/keys), never here.
 *
 * Persistence: one file (`pki/store.json` in a FileStore) written by atomic replace, so a power cut leaves the old
 * or the new store. The body is protected by an integrity tag from an `IntegrityGuard`; a file changed on disk is
 * refused with `PKI_STORE_TAMPERED` at open (and the store is not used). Whoever holds the guard's key can forge a
 * store, so production wires `TpmSealedIntegrity` (firmware/keys/runtime-secret.ts): an HMAC key derived in memory
 * (HKDF) from the runtime secret the TPM unseals only in an OEM-approved state; the key is never on disk. A plain
 * `HmacIntegrity` with a key from elsewhere serves tests and the explicit `--store-key-env` bench arrangement.
 *
 * Mutations are serialised and persisted before they become visible: `installRoot` resolves only after the new
 * file is durably on disk.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { KeyUsageFlags } from '@peculiar/x509';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import { isSelfSigned, parseCert, type CertInfo } from './cert.ts';
import { ALGORITHMS, type AlgorithmPolicy } from './profiles.ts';

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
}

export interface CertificateStoreOptions {
  integrity: IntegrityGuard;
  /** Upper bound of installed V2G roots (default DEFAULT_MAX_ROOTS). */
  maxRoots?: number;
  /** Store-relative file path (default `pki/store.json`). */
  path?: string;
  algorithms?: AlgorithmPolicy;
  log?: Logger;
  now?: () => Date;
}

/** A bounded trust store: OTA installs cannot grow it without limit. */
export const DEFAULT_MAX_ROOTS = 20;
const FORMAT = 'evcc-pki-store/1';

interface StoredRoot { der: string; installedAt: string; source: string }
interface StoreBody {
  roots: StoredRoot[];
  oemProvisioningChain: string[] | null;
  contractChains: Record<string, string[]>;
}

const b64 = (d: Uint8Array): string => Buffer.from(d).toString('base64');
const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

export class CertificateStore {
  private body: StoreBody;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly maxRoots: number;
  private readonly path: string;

  private constructor(private readonly files: FileStore, private readonly o: CertificateStoreOptions, body: StoreBody) {
    this.body = body;
    this.maxRoots = o.maxRoots ?? DEFAULT_MAX_ROOTS;
    this.path = o.path ?? 'pki/store.json';
  }

  /**
   * Opens (or, when absent, starts empty) the store. Throws PKI_STORE_TAMPERED when the integrity tag does not
   * match, PKI_STORE_CORRUPT when the file does not parse.
   */
  static async open(files: FileStore, options: CertificateStoreOptions): Promise<CertificateStore> {
    const path = options.path ?? 'pki/store.json';
    const raw = await files.read(path);
    const empty: StoreBody = { roots: [], oemProvisioningChain: null, contractChains: {} };
    if (!raw) return new CertificateStore(files, options, empty);
    let envelope: { format?: unknown; scheme?: unknown; body?: unknown; tag?: unknown };
    try {
      envelope = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw)) as typeof envelope;
    } catch (err) {
      throw new EvccError('PKI_STORE_CORRUPT', `certificate store ${path} is not JSON`, { path }, { cause: err });
    }
    if (envelope?.format !== FORMAT || typeof envelope.body !== 'string' || typeof envelope.tag !== 'string') {
      throw new EvccError('PKI_STORE_CORRUPT', `certificate store ${path} has an unknown format`, { path });
    }
    if (envelope.scheme !== options.integrity.scheme) {
      throw new EvccError('PKI_STORE_TAMPERED', `certificate store ${path} integrity scheme ${String(envelope.scheme)} != ${options.integrity.scheme}`, { path });
    }
    const bodyBytes = new TextEncoder().encode(envelope.body);
    const tag = /^[0-9a-f]{1,256}$/.test(envelope.tag) ? new Uint8Array(Buffer.from(envelope.tag, 'hex')) : new Uint8Array();
    if (!(await options.integrity.verify(bodyBytes, tag))) {
      options.log?.error({ path, cp: 'PKI-STORE-TAMPERED' }, 'certificate store integrity check failed: refusing it');
      throw new EvccError('PKI_STORE_TAMPERED', `certificate store ${path} failed its integrity check`, { path });
    }
    let body: StoreBody;
    try {
      body = JSON.parse(envelope.body) as StoreBody;
      if (!Array.isArray(body.roots) || typeof body.contractChains !== 'object') throw new Error('shape');
      for (const r of body.roots) parseCert(unb64(r.der));
    } catch (err) {
      throw new EvccError('PKI_STORE_CORRUPT', `certificate store ${path} content is invalid`, { path }, { cause: err });
    }
    return new CertificateStore(files, options, body);
  }

  /** Installed V2G roots (copies). */
  listRoots(): RootEntry[] {
    return this.body.roots.map((r) => {
      const c = parseCert(unb64(r.der));
      return {
        der: Uint8Array.from(c.der), fingerprint: c.fingerprint, subject: c.subject, notAfter: c.notAfter,
        installedAt: r.installedAt, source: r.source, ...(c.subjectKeyId ? { subjectKeyId: c.subjectKeyId } : {}),
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
   * Installs a V2G root CA atomically (persisted before it is used). Idempotent for an already installed root.
   * Throws PKI_NOT_A_ROOT (not a valid self-signed CA of the allowed algorithms, or outside its validity),
   * PKI_STORE_FULL (maxRoots reached), IO_FAILED.
   */
  installRoot(der: Uint8Array, meta: { source: string }): Promise<RootEntry> {
    return this.serialised(async () => {
      const c = this.checkRoot(der);
      const existing = this.listRoots().find((r) => r.fingerprint === c.fingerprint);
      if (existing) return existing;
      if (this.body.roots.length >= this.maxRoots) {
        throw new EvccError('PKI_STORE_FULL', `root store holds ${this.body.roots.length} roots (max ${this.maxRoots})`, { max: this.maxRoots });
      }
      const installedAt = this.now().toISOString();
      await this.commit({ ...this.body, roots: [...this.body.roots, { der: b64(c.der), installedAt, source: meta.source }] });
      this.o.log?.info({ subject: c.subject, keyId: c.subjectKeyId, fingerprint: c.fingerprint, source: meta.source }, 'V2G root installed');
      return this.listRoots().find((r) => r.fingerprint === c.fingerprint)!;
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
      this.o.log?.info({ id }, 'V2G root removed');
      return true;
    });
  }

  getOemProvisioningChain(): Uint8Array[] | undefined {
    return this.body.oemProvisioningChain?.map(unb64);
  }

  setOemProvisioningChain(chain: Uint8Array[]): Promise<void> {
    return this.serialised(async () => {
      chain.forEach(parseCert);
      await this.commit({ ...this.body, oemProvisioningChain: chain.map(b64) });
    });
  }

  listContractChains(): { id: string; chain: Uint8Array[] }[] {
    return Object.entries(this.body.contractChains).map(([id, chain]) => ({ id, chain: chain.map(unb64) }));
  }

  /** Stores a contract certificate chain under its id (EMAID). */
  putContractChain(id: string, chain: Uint8Array[]): Promise<void> {
    return this.serialised(async () => {
      if (!/^[A-Za-z0-9*_-]{1,64}$/.test(id)) throw new EvccError('CONFIG_INVALID', `contract id not allowed: ${id}`);
      chain.forEach(parseCert);
      await this.commit({ ...this.body, contractChains: { ...this.body.contractChains, [id]: chain.map(b64) } });
    });
  }

  removeContractChain(id: string): Promise<boolean> {
    return this.serialised(async () => {
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

  private checkRoot(der: Uint8Array): CertInfo {
    let c: CertInfo;
    try {
      c = parseCert(der);
    } catch (err) {
      throw new EvccError('PKI_NOT_A_ROOT', 'root candidate is not a certificate', {}, { cause: err });
    }
    const algs = ALGORITHMS[this.o.algorithms ?? 'iso15118-2'];
    const now = this.now().getTime();
    const why =
      !isSelfSigned(c) ? 'not self-signed'
      : !c.basicConstraints?.ca ? 'not a CA'
      : c.keyUsage === undefined || (c.keyUsage & KeyUsageFlags.keyCertSign) === 0 ? 'lacks keyCertSign'
      : !c.namedCurve || !algs.curves.includes(c.namedCurve) || !c.signatureHash || !algs.hashes.includes(c.signatureHash) ? 'algorithm not allowed'
      : now < c.notBefore.getTime() || now > c.notAfter.getTime() ? 'outside its validity period'
      : undefined;
    if (why) throw new EvccError('PKI_NOT_A_ROOT', `refusing to install "${c.subject}": ${why}`, { subject: c.subject, reason: why });
    return c;
  }

  private async commit(next: StoreBody): Promise<void> {
    const body = JSON.stringify(next);
    const tag = await this.o.integrity.tag(new TextEncoder().encode(body));
    const envelope = JSON.stringify({ format: FORMAT, scheme: this.o.integrity.scheme, body, tag: Buffer.from(tag).toString('hex') });
    await this.files.writeAtomic(this.path, envelope, { mode: 0o600 });
    this.body = next;
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
