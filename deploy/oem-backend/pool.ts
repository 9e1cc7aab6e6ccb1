import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSelfSigned, parseCert, pemToDerList, type CertInfo } from '../../firmware/pki/cert.ts';
import type { Logger } from '../../core/logger.ts';
import { EvccError } from '../../core/errors.ts';

/**
 * The Root Certificate Pool (RCP) as the OEM backend sees it: a directory of V2G root certificates (PEM bundles or
 * DER files: *.pem, *.crt, *.cer, *.der), indexed by subject key identifier and by subject DN. Only self-signed CA
 * certificates enter the pool; anything else in the directory is logged and skipped, so the backend never serves a
 * certificate the vehicle would refuse anyway. `reload()` re-reads the directory (SIGHUP in the service).
 */
export interface PoolEntry {
  der: Uint8Array;
  subject: string;
  subjectKeyId?: string;
  fingerprint: string;
}

function normaliseDn(dn: string): string {
  return dn.replace(/\s*([,=+])\s*/g, '$1').replace(/\s+/g, ' ').trim().toLowerCase();
}

export class RootCertificatePool {
  private entries: PoolEntry[] = [];

  constructor(readonly dir: string, private readonly log?: Logger) {}

  static async load(dir: string, log?: Logger): Promise<RootCertificatePool> {
    const p = new RootCertificatePool(dir, log);
    await p.reload();
    return p;
  }

  async reload(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => /\.(pem|crt|cer|der)$/i.test(n)).sort();
    } catch (err) {
      throw new EvccError('CONFIG_INVALID', `cannot read Root Certificate Pool ${this.dir}`, { dir: this.dir }, { cause: err });
    }
    const next: PoolEntry[] = [];
    const seen = new Set<string>();
    for (const name of names) {
      const bytes = await readFile(join(this.dir, name));
      const ders = bytes.includes('-----BEGIN') ? pemToDerList(bytes.toString('utf8')) : [new Uint8Array(bytes)];
      for (const der of ders) {
        let c: CertInfo;
        try {
          c = parseCert(der);
        } catch (err) {
          this.log?.warn({ file: name, code: (err as EvccError).code }, 'pool file skipped: not a certificate');
          continue;
        }
        if (!c.basicConstraints?.ca || !isSelfSigned(c)) {
          this.log?.warn({ file: name, subject: c.subject }, 'pool certificate skipped: not a self-signed CA');
          continue;
        }
        if (seen.has(c.fingerprint)) continue;
        seen.add(c.fingerprint);
        next.push({ der: c.der, subject: c.subject, fingerprint: c.fingerprint, ...(c.subjectKeyId ? { subjectKeyId: c.subjectKeyId } : {}) });
      }
    }
    this.entries = next;
    this.log?.info({ dir: this.dir, roots: next.length }, 'Root Certificate Pool loaded');
  }

  get size(): number {
    return this.entries.length;
  }

  all(): PoolEntry[] {
    return [...this.entries];
  }

  /**
   * The root named by the vehicle: by key identifier when it sent one (and then the DN must match too), by DN
   * otherwise. Undefined when the pool has none.
   */
  lookup(issuer: string, aki?: string): PoolEntry | undefined {
    const dn = normaliseDn(issuer);
    const key = aki?.toLowerCase().replace(/:/g, '');
    return this.entries.find((e) => normaliseDn(e.subject) === dn && (!key || !e.subjectKeyId || e.subjectKeyId === key));
  }
}
