/**
 * The contract the vehicle presents in PaymentDetailsReq (ISO 15118-2): the contract certificate chain (leaf, MO
 * Sub-CAs) as the ISO-2 type carries it, and the eMAID, which is the leaf's subject common name (ISO 15118-2 Annex F).
 */
import * as x509 from '@peculiar/x509';
import { EvccError } from '../../core/errors.ts';
import { toHex } from '../../core/bytes.ts';
import type { CertificateStore } from '../pki/store.ts';
import type { ContractCredentials } from './session-modules.ts';

export function contractFromChain(chainDer: readonly Uint8Array[]): ContractCredentials {
  const [leafDer, ...subs] = chainDer;
  if (!leafDer) throw new EvccError('KEYS_NO_CONTRACT', 'empty contract certificate chain');
  const leaf = new x509.X509Certificate(Uint8Array.from(leafDer).buffer);
  const cn = /(?:^|,\s*)CN=([^,]+)/.exec(leaf.subject)?.[1]?.trim();
  if (!cn) throw new EvccError('KEYS_NO_CONTRACT', `contract certificate ${leaf.subject} has no CN (eMAID)`);
  return {
    emaid: cn,
    certificateChain: { Certificate: toHex(leafDer), ...(subs.length ? { SubCertificates: { Certificate: subs.map((d) => toHex(d)) } } : {}) },
    notAfter: leaf.notAfter,
  };
}

export function contractFromPem(pem: string): ContractCredentials {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return contractFromChain(blocks.map((b) => new Uint8Array(new x509.X509Certificate(b).rawData)));
}

/** The chain stored for the active contract key (store id = key id), if any. */
export function contractFromStore(store: CertificateStore, contractKeyId: string): ContractCredentials | undefined {
  const entry = store.listContractChains().find((c) => c.id === contractKeyId);
  return entry ? contractFromChain(entry.chain) : undefined;
}
