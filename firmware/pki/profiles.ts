/**
 * ISO 15118-2 certificate profiles (the standard's certificate-profile annex), as the vehicle checks them and as the test
 * PKI generator (`generate.ts`) issues them. One table so issuing and checking can never drift apart.
 */
import { KeyUsageFlags } from '@peculiar/x509';

/** The certificate roles of the ISO 15118 PKI that the vehicle meets. */
export type CertRole =
  | 'v2g-root' | 'cpo-sub-ca-1' | 'cpo-sub-ca-2' | 'secc-leaf'
  | 'oem-root' | 'oem-sub-ca-1' | 'oem-sub-ca-2' | 'oem-provisioning' | 'vehicle'
  | 'mo-root' | 'mo-sub-ca-1' | 'mo-sub-ca-2' | 'contract'
  | 'cps-sub-ca-1' | 'cps-sub-ca-2' | 'cps-leaf'
  | 'cross-root';

export interface CertProfile {
  ca: boolean;
  /** pathLenConstraint for CAs; undefined = none (roots). */
  pathLen?: number;
  /** Key usage bits that MUST be set. */
  keyUsage: number;
  /** Days of validity the test PKI issues (our choice for test material, shorter for lower tiers). */
  validityDays: number;
}

const CA_KU = KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign;
const LEAF_KU = KeyUsageFlags.digitalSignature | KeyUsageFlags.keyAgreement;

export const CERT_PROFILES: Readonly<Record<CertRole, CertProfile>> = {
  'v2g-root': { ca: true, keyUsage: CA_KU, validityDays: 3650 },
  'oem-root': { ca: true, keyUsage: CA_KU, validityDays: 3650 },
  'mo-root': { ca: true, keyUsage: CA_KU, validityDays: 3650 },
  // Solution A (ISO 15118-20 cross-certificate): the other PKI's root key under our root's signature.
  // pathLen 2 leaves room for that PKI's Sub-CA 1 and Sub-CA 2 below it.
  'cross-root': { ca: true, pathLen: 2, keyUsage: CA_KU, validityDays: 1825 },
  'cpo-sub-ca-1': { ca: true, pathLen: 1, keyUsage: CA_KU, validityDays: 1460 },
  'oem-sub-ca-1': { ca: true, pathLen: 1, keyUsage: CA_KU, validityDays: 1460 },
  'mo-sub-ca-1': { ca: true, pathLen: 1, keyUsage: CA_KU, validityDays: 1460 },
  'cps-sub-ca-1': { ca: true, pathLen: 1, keyUsage: CA_KU, validityDays: 1460 },
  'cpo-sub-ca-2': { ca: true, pathLen: 0, keyUsage: CA_KU, validityDays: 730 },
  'oem-sub-ca-2': { ca: true, pathLen: 0, keyUsage: CA_KU, validityDays: 730 },
  'mo-sub-ca-2': { ca: true, pathLen: 0, keyUsage: CA_KU, validityDays: 730 },
  'cps-sub-ca-2': { ca: true, pathLen: 0, keyUsage: CA_KU, validityDays: 730 },
  // SECC, contract and OEM provisioning certificates (ISO 15118-2): digitalSignature + keyAgreement (ECDH
  // for the ISO 15118-2 contract-key transport, ECDHE-ECDSA signature in TLS).
  'secc-leaf': { ca: false, keyUsage: LEAF_KU, validityDays: 365 },
  'oem-provisioning': { ca: false, keyUsage: LEAF_KU, validityDays: 1460 },
  'contract': { ca: false, keyUsage: LEAF_KU, validityDays: 730 },
  // ISO 15118-20 vehicle certificate (TLS 1.3 client authentication).
  'vehicle': { ca: false, keyUsage: LEAF_KU, validityDays: 1460 },
  // The CPS leaf signs contract-certificate bundles: signature only.
  'cps-leaf': { ca: false, keyUsage: KeyUsageFlags.digitalSignature, validityDays: 730 },
};

/** Which leaf role a validation is for; decides the leaf's key-usage requirement. */
export type ValidationPurpose = 'secc-tls' | 'vehicle-tls' | 'contract' | 'oem-provisioning' | 'cps';

export const PURPOSE_LEAF_ROLE: Readonly<Record<ValidationPurpose, CertRole>> = {
  'secc-tls': 'secc-leaf',
  'vehicle-tls': 'vehicle',
  contract: 'contract',
  'oem-provisioning': 'oem-provisioning',
  cps: 'cps-leaf',
};

/** Non-critical extension of the OEM provisioning certificate that carries the storage-key data (OCTET STRING). */
export const OID_STORAGE_KEY_EXTENSION = '1.3.36.15.9.2.1.1';

/**
 * Algorithm policies. ISO 15118-2 knows only secp256r1 + ecdsa-with-SHA256; ISO 15118-20 adds
 * secp521r1/SHA-512 (Ed448 is not supported by this runtime yet).
 */
export type AlgorithmPolicy = 'iso15118-2' | 'iso15118-20';
export const ALGORITHMS: Readonly<Record<AlgorithmPolicy, { curves: string[]; hashes: string[] }>> = {
  'iso15118-2': { curves: ['P-256'], hashes: ['SHA-256'] },
  'iso15118-20': { curves: ['P-256', 'P-521'], hashes: ['SHA-256', 'SHA-512'] },
};

/** Hard caps against hostile input: ISO 15118-2 certificates are ≤ 800 bytes; we allow generous room. */
export const MAX_CERT_DER_BYTES = 4096;
export const MAX_PRESENTED_CHAIN = 6;
