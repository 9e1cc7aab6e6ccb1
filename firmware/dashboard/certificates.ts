/**
 * The dashboard's certificate view: the installed V2G roots (fingerprint, expiry, where each came from: factory,
 * proactive sync, Solution C fetch), the OEM provisioning chain and the contract chains, each with an expiry
 * warning. Pure: the composition root hands in what the certificate store lists and the calendar time.
 */
import { parseCert } from '../pki/cert.ts';

/**
 * Days before `notAfter` from which a certificate is flagged. Our choice: a contract or root that ends within a month
 * needs a CertificateUpdate or a new root before the bench notices it as a failed TLS handshake.
 */
export const EXPIRY_WARNING_DAYS = 30;

export type CertificateRole = 'v2g-root' | 'oem-provisioning' | 'contract';
export type ExpiryState = 'valid' | 'expires-soon' | 'expired' | 'not-yet-valid';

export interface CertificateRow {
  role: CertificateRole;
  subject: string;
  issuer: string;
  /** SHA-256 over the DER, hex. */
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  daysLeft: number;
  expiry: ExpiryState;
  /** Where it came from, in words (roots); the store's raw source tag is in `source`. */
  origin?: string;
  source?: string;
  /** Who verified the root's OEM approval in this store ('release', 'tpm-tagged', …); absent: none. */
  approvedBy?: string;
  /** Contract chains: the store id, and whether the key service uses it now. */
  contractId?: string;
  active?: boolean;
  /** Position in its chain (0 = leaf). */
  depth?: number;
}

export interface CertificateView {
  rows: CertificateRow[];
  /** Rows whose expiry is not 'valid', as one line each. */
  warnings: string[];
  /** 'full' (integrity tag verified) or 'degraded' (only OEM-approved roots trusted); absent: no store. */
  storeMode?: string;
}

/** What the store lists (firmware/pki/store.ts RootEntry and chains), without depending on the store itself. */
export interface CertificateSource {
  roots: { der: Uint8Array; source: string; approvedBy?: string }[];
  oemProvisioningChain?: Uint8Array[];
  contractChains: { id: string; chain: Uint8Array[] }[];
  activeContractId?: string;
  storeMode?: string;
}

/** The store's source tag in words: 'factory', 'ota:<request>' (Solution C), 'ota-sync:<request>' (proactive sync). */
export function rootOrigin(source: string): string {
  if (source === 'factory') return 'factory';
  if (source.startsWith('ota-sync:')) return `proactive sync (request ${source.slice(9, 17)})`;
  if (source.startsWith('ota:')) return `Solution C fetch (request ${source.slice(4, 12)})`;
  if (source === 'cli') return 'installed with evcc pki';
  return source;
}

const DAY_MS = 86_400_000;

function row(der: Uint8Array, role: CertificateRole, now: Date, extra: Partial<CertificateRow>): CertificateRow {
  const c = parseCert(der);
  const daysLeft = Math.floor((c.notAfter.getTime() - now.getTime()) / DAY_MS);
  const expiry: ExpiryState = now < c.notBefore ? 'not-yet-valid'
    : now > c.notAfter ? 'expired'
      : daysLeft < EXPIRY_WARNING_DAYS ? 'expires-soon' : 'valid';
  return {
    role, subject: c.subject, issuer: c.issuer, fingerprint: c.fingerprint,
    notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString(), daysLeft, expiry, ...extra,
  };
}

const ROLE_WORDS: Record<CertificateRole, string> = { 'v2g-root': 'V2G root', 'oem-provisioning': 'OEM provisioning certificate', contract: 'contract certificate' };

export function certificateView(s: CertificateSource, now: Date): CertificateView {
  const rows: CertificateRow[] = [];
  for (const r of s.roots) {
    rows.push(row(r.der, 'v2g-root', now, { origin: rootOrigin(r.source), source: r.source, ...(r.approvedBy ? { approvedBy: r.approvedBy } : {}) }));
  }
  (s.oemProvisioningChain ?? []).forEach((der, depth) => rows.push(row(der, 'oem-provisioning', now, { depth })));
  for (const c of s.contractChains) {
    c.chain.forEach((der, depth) => rows.push(row(der, 'contract', now, { contractId: c.id, active: c.id === s.activeContractId, depth })));
  }
  const warnings = rows.filter((r) => r.expiry !== 'valid').map((r) => {
    const what = `${ROLE_WORDS[r.role]} ${r.subject}`;
    switch (r.expiry) {
      case 'expired': return `${what} expired on ${r.notAfter.slice(0, 10)}`;
      case 'not-yet-valid': return `${what} is not valid before ${r.notBefore.slice(0, 10)}`;
      default: return `${what} expires in ${r.daysLeft} day(s) (${r.notAfter.slice(0, 10)})`;
    }
  });
  return { rows, warnings, ...(s.storeMode ? { storeMode: s.storeMode } : {}) };
}
