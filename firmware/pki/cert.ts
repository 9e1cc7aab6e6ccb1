/**
 * Parsed view of one certificate with exactly the fields path validation needs. Parsing goes through
 * `@peculiar/x509`; signature checks use node:crypto (OpenSSL, synchronous). Never throws a raw exception:
 * anything that is not a DER X.509 v3 certificate within the size cap is `PKI_CERT_MALFORMED`.
 */
import { createHash, X509Certificate as NodeX509 } from 'node:crypto';
import {
  AuthorityKeyIdentifierExtension, BasicConstraintsExtension, KeyUsagesExtension, SubjectKeyIdentifierExtension,
  X509Certificate,
} from '@peculiar/x509';
import { EvccError } from '../../core/errors.ts';
import type { PkiErrorCode } from './errors.ts';
import { MAX_CERT_DER_BYTES } from './profiles.ts';

export interface CertInfo {
  /** Shared with the parse cache: never mutate. */
  readonly der: Uint8Array;
  /** SHA-256 over the DER, hex: the store's identity of a certificate. */
  fingerprint: string;
  subject: string;
  issuer: string;
  /** Hex of the DER-encoded Name, for exact comparison. */
  subjectKey: string;
  issuerKey: string;
  serialNumber: string;
  /** Hex key identifiers, when the extensions are present. */
  subjectKeyId?: string;
  authorityKeyId?: string;
  /** basicConstraints: undefined when the extension is absent. */
  basicConstraints?: { ca: boolean; pathLen?: number; critical: boolean };
  /** keyUsage bit flags (KeyUsageFlags); undefined when absent. */
  keyUsage?: number;
  notBefore: Date;
  notAfter: Date;
  /** Issuer name equals subject name. */
  selfIssued: boolean;
  namedCurve?: string;
  signatureHash?: string;
  version: number;
  /** The underlying parsers, for signature checks and extension lookups. */
  peculiar: X509Certificate;
  node: NodeX509;
}

function fail(code: PkiErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown): never {
  throw new EvccError(code, message, details, cause === undefined ? undefined : { cause });
}

const hex = (b: ArrayBuffer | Uint8Array): string => Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString('hex');

/**
 * Parsed certificates by SHA-256 of their DER. Parsing with @peculiar/x509 costs ~1–2 ms per certificate, and the
 * same roots and CPO Sub-CAs come back every session; CertInfo is never mutated, so sharing is safe. Bounded.
 */
const CACHE_MAX = 64;
const cache = new Map<string, CertInfo>();

export function parseCert(der: Uint8Array): CertInfo {
  if (!(der instanceof Uint8Array) || der.length === 0 || der.length > MAX_CERT_DER_BYTES) {
    fail('PKI_CERT_MALFORMED', `certificate size ${der?.length ?? 0} outside 1..${MAX_CERT_DER_BYTES} bytes`);
  }
  const fingerprint = createHash('sha256').update(der).digest('hex');
  const hit = cache.get(fingerprint);
  if (hit) {
    // Refresh recency.
    cache.delete(fingerprint);
    cache.set(fingerprint, hit);
    return hit;
  }
  const info = parseUncached(der, fingerprint);
  cache.set(fingerprint, info);
  if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
  return info;
}

function parseUncached(der: Uint8Array, fingerprint: string): CertInfo {
  let cert: X509Certificate;
  let node: NodeX509;
  try {
    cert = new X509Certificate(Uint8Array.from(der));
    node = new NodeX509(der);
  } catch (err) {
    fail('PKI_CERT_MALFORMED', 'not a DER X.509 certificate', { bytes: der.length }, err);
  }
  try {
    const bc = cert.getExtension(BasicConstraintsExtension);
    const ku = cert.getExtension(KeyUsagesExtension);
    const ski = cert.getExtension(SubjectKeyIdentifierExtension);
    const aki = cert.getExtension(AuthorityKeyIdentifierExtension);
    const subjectKey = hex(cert.subjectName.toArrayBuffer());
    const issuerKey = hex(cert.issuerName.toArrayBuffer());
    const alg = cert.publicKey.algorithm as { name: string; namedCurve?: string };
    const sigAlg = cert.signatureAlgorithm as { name: string; hash?: { name: string } };
    const info: CertInfo = {
      der: Uint8Array.from(der),
      fingerprint,
      subject: cert.subject,
      issuer: cert.issuer,
      subjectKey,
      issuerKey,
      serialNumber: cert.serialNumber,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      selfIssued: subjectKey === issuerKey,
      version: Number((cert as unknown as { asn: { tbsCertificate: { version: number } } }).asn.tbsCertificate.version) + 1,
      peculiar: cert,
      node,
    };
    if (bc) info.basicConstraints = { ca: bc.ca, critical: bc.critical, ...(bc.pathLength !== undefined ? { pathLen: bc.pathLength } : {}) };
    if (ku) info.keyUsage = ku.usages;
    if (ski) info.subjectKeyId = ski.keyId.toLowerCase();
    if (aki?.keyId) info.authorityKeyId = aki.keyId.toLowerCase();
    if (alg.namedCurve) info.namedCurve = alg.namedCurve;
    if (sigAlg.hash?.name) info.signatureHash = sigAlg.hash.name;
    return info;
  } catch (err) {
    if (err instanceof EvccError) throw err;
    fail('PKI_CERT_MALFORMED', 'certificate extensions do not parse', { bytes: der.length }, err);
  }
}

/** True when `issuer`'s name and key identifier fit `child` (no signature check). */
export function nameChains(child: CertInfo, issuer: CertInfo): boolean {
  if (child.issuerKey !== issuer.subjectKey) return false;
  if (child.authorityKeyId && issuer.subjectKeyId && child.authorityKeyId !== issuer.subjectKeyId) return false;
  return true;
}

/** Signature of `child` verifies under `issuer`'s public key. */
export function signedBy(child: CertInfo, issuer: CertInfo): boolean {
  try {
    return child.node.verify(issuer.node.publicKey);
  } catch {
    return false;
  }
}

/** Self-signed: self-issued and its signature verifies under its own key. */
export function isSelfSigned(c: CertInfo): boolean {
  return c.selfIssued && signedBy(c, c);
}

/** The key identifier that names the issuer of `c`: its AKI, or for a self-signed certificate its own SKI. */
export function issuerKeyIdOf(c: CertInfo): string | undefined {
  return c.authorityKeyId ?? (c.selfIssued ? c.subjectKeyId : undefined);
}

export function derToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** Splits a PEM bundle into DER certificates (ignores anything else, e.g. keys). */
export function pemToDerList(pem: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)) {
    out.push(new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')));
  }
  return out;
}
