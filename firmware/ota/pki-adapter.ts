import type { RootApproval } from '../pki/root-approval.ts';
import type { CertificateStore } from '../pki/store.ts';
import { UnknownRootError, validateChain } from '../pki/validate.ts';
import { isEvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { PathValidatorPort, RootStorePort, UnknownRootInfo } from './ports.ts';

/** What an install records with the root: its provenance and the OEM approval it arrived with. */
export interface RootInstallMeta {
  source: string;
  approval?: RootApproval;
}

/** The root store port of the OTA path, taking the OEM approval along (ports.ts RootStorePort, widened). */
export interface ApprovedRootStorePort extends RootStorePort {
  install(der: Uint8Array, meta: RootInstallMeta): Promise<void>;
}

/**
 * firmware/pki's CertificateStore as the OTA path's root store (bounded, atomic, integrity-tagged).
 *
 * Bound policy when the store is full (PKI_STORE_FULL): roots installed at the factory or by hand are never evicted;
 * the OTA-installed root with the oldest install time gives way to the new one (it can be fetched again when a
 * charger needs it). With `evictOta: false`, or when no OTA root is left to evict, the install fails with
 * PKI_STORE_FULL and the session falls back. Each step is its own atomic store write: a crash between them leaves
 * the old set minus the evicted OTA root, never a torn store. The OEM approval goes into the store with the root
 * (verified there when the store has the OEM key; required when the store is open in degraded mode).
 */
export function rootStoreOf(store: CertificateStore, options: { evictOta?: boolean; log?: Logger } = {}): ApprovedRootStorePort {
  return {
    list: async () => store.anchors(),
    install: async (der, meta) => {
      try {
        await store.installRoot(der, meta);
      } catch (err) {
        if (!isEvccError(err, 'PKI_STORE_FULL') || options.evictOta === false) throw err;
        const victim = store.listRoots()
          .filter((r) => r.source.startsWith('ota'))
          .sort((a, b) => a.installedAt.localeCompare(b.installedAt))[0];
        if (!victim) throw err;
        options.log?.warn({ evicted: victim.subject, fingerprint: victim.fingerprint, installedAt: victim.installedAt }, 'root store full: evicting the oldest OTA-installed root');
        await store.removeRoot(victim.fingerprint);
        await store.installRoot(der, meta);
      }
    },
  };
}

/** firmware/pki's path validation for SECC chains ('secc-tls' purpose, ISO 15118-2 algorithms). */
export const validateSeccPath: PathValidatorPort = async (chain, anchors, at) => {
  validateChain(chain, { anchors, now: at, purpose: 'secc-tls' });
};

/**
 * Reads the unknown-root information out of a failed TLS connect: firmware/pki's UnknownRootError (code
 * TLS_UNKNOWN_ROOT from the TLS client, or PKI_UNKNOWN_ROOT from the validator itself). Anything else is not an
 * unknown root and is rethrown by the caller.
 */
export function unknownRootOf(err: unknown): UnknownRootInfo | undefined {
  if (err instanceof UnknownRootError) {
    return {
      issuer: err.issuerDn,
      ...(err.authorityKeyId ? { aki: err.authorityKeyId.toLowerCase() } : {}),
      chain: err.presentedChain,
    };
  }
  if (isEvccError(err, 'TLS_UNKNOWN_ROOT') || isEvccError(err, 'PKI_UNKNOWN_ROOT')) {
    // A wrapped form: details carry the chain as base64.
    const d = err.details as { issuerDn?: unknown; authorityKeyId?: unknown; presentedChainBase64?: unknown };
    if (typeof d.issuerDn !== 'string' || !Array.isArray(d.presentedChainBase64)) return undefined;
    const chain = d.presentedChainBase64.filter((s): s is string => typeof s === 'string').map((s) => new Uint8Array(Buffer.from(s, 'base64')));
    return { issuer: d.issuerDn, ...(typeof d.authorityKeyId === 'string' ? { aki: d.authorityKeyId.toLowerCase() } : {}), chain };
  }
  return undefined;
}
