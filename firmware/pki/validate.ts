/**
 * Certification path validation, done by us (`@peculiar/x509`'s chain builder does not validate — PLATFORM.md).
 *
 * Input: the certificates a peer presented (leaf first, order of the rest not trusted) and the trust anchors
 * (installed roots). Path building follows names and key identifiers, prefers an installed anchor at every step
 * and may pass through a cross-certificate (Solution A, Kilic 2023): SECC leaf → CPO Sub-CA 2 → Sub-CA 1 →
 * cross-cert (root B's key signed by root A) → installed root A. Every found path is then checked top-down as
 * RFC 5280 §6.1 does, with the ISO 15118-2 profile rules: signature, validity window, algorithm, basicConstraints
 * CA flag and pathLen, key usage of CAs (keyCertSign) and of the leaf per role. The first failure is a typed
 * EvccError (`PKI_*`); a well-formed chain that reaches no anchor is `PKI_UNKNOWN_ROOT` with the issuer DN and
 * authority key identifier of its top certificate and the presented chain (what the OTA root fetch asks for).
 */
import { KeyUsageFlags } from '@peculiar/x509';
import { EvccError } from '../../core/errors.ts';
import { isSelfSigned, issuerKeyIdOf, nameChains, parseCert, signedBy, type CertInfo } from './cert.ts';
import type { PkiErrorCode } from './errors.ts';
import {
  ALGORITHMS, CERT_PROFILES, MAX_PRESENTED_CHAIN, PURPOSE_LEAF_ROLE, type AlgorithmPolicy, type ValidationPurpose,
} from './profiles.ts';

export interface ValidateOptions {
  /** DER of the trust anchors (the installed V2G roots, plus a candidate root when the OTA helper checks one). */
  anchors: readonly Uint8Array[];
  /** Validation time (the vehicle's clock). */
  now: Date;
  purpose: ValidationPurpose;
  /** Default 'iso15118-2' (P-256, ecdsa-with-SHA256 only). */
  algorithms?: AlgorithmPolicy;
}

export interface ValidatedPath {
  /** Leaf first, ending with the anchor. */
  path: CertInfo[];
  anchor: CertInfo;
  /** The path passes a cross-certificate (a CA certificate whose subject is a self-signed root's name). */
  viaCrossCertificate: boolean;
}

/** What the OTA root fetch needs to ask for the missing root (ARCHITECTURE.md §4 `pki/rootca/req`). */
export interface UnknownRootInfo {
  /** Issuer DN of the top certificate the peer presented (the root we lack). */
  issuerDn: string;
  /** Authority key identifier (hex) of that top certificate; for a self-signed top its own subject key id. */
  authorityKeyId?: string;
  /** Subject DN of the top certificate. */
  topSubjectDn: string;
  /** The presented chain as received (DER, leaf first). */
  presentedChain: Uint8Array[];
}

/** `PKI_UNKNOWN_ROOT` (or `TLS_UNKNOWN_ROOT` from the TLS client), carrying `UnknownRootInfo` typed. */
export class UnknownRootError extends EvccError<'PKI_UNKNOWN_ROOT' | 'TLS_UNKNOWN_ROOT'> {
  readonly issuerDn: string;
  readonly authorityKeyId: string | undefined;
  readonly topSubjectDn: string;
  readonly presentedChain: Uint8Array[];
  constructor(code: 'PKI_UNKNOWN_ROOT' | 'TLS_UNKNOWN_ROOT', info: UnknownRootInfo, extra: Record<string, unknown> = {}) {
    super(code, `chain ends in a root that is not installed: issuer "${info.issuerDn}" keyId ${info.authorityKeyId ?? '(none)'}`, {
      issuerDn: info.issuerDn,
      authorityKeyId: info.authorityKeyId,
      topSubjectDn: info.topSubjectDn,
      presentedChainBase64: info.presentedChain.map((d) => Buffer.from(d).toString('base64')),
      ...extra,
    });
    this.issuerDn = info.issuerDn;
    this.authorityKeyId = info.authorityKeyId;
    this.topSubjectDn = info.topSubjectDn;
    this.presentedChain = info.presentedChain.map((d) => Uint8Array.from(d));
  }
}

function fail(code: PkiErrorCode, message: string, cert?: CertInfo, details: Record<string, unknown> = {}): never {
  throw new EvccError(code, message, { ...(cert ? { subject: cert.subject, serial: cert.serialNumber } : {}), ...details });
}

const hasBits = (ku: number | undefined, bits: number): boolean => ku !== undefined && (ku & bits) === bits;

/**
 * Builds candidate paths (structure only: names and key ids). Depth-first, anchors first; bounded by
 * MAX_PRESENTED_CHAIN so a hostile peer cannot make us loop.
 */
function buildPaths(leaf: CertInfo, pool: CertInfo[], anchors: CertInfo[]): { anchored: CertInfo[][]; tops: CertInfo[] } {
  const anchored: CertInfo[][] = [];
  const tops: CertInfo[] = [];
  const walk = (path: CertInfo[]): void => {
    const cur = path[path.length - 1]!;
    let extended = false;
    for (const a of anchors) {
      if (nameChains(cur, a) && !(a.fingerprint === cur.fingerprint)) {
        anchored.push([...path, a]);
        extended = true;
      }
    }
    // A presented self-signed certificate ends the path (it is a root; trusted only if installed).
    if (!(cur.selfIssued && path.length > 1) && path.length <= MAX_PRESENTED_CHAIN) {
      for (const c of pool) {
        if (path.some((p) => p.fingerprint === c.fingerprint)) continue;
        if (!nameChains(cur, c)) continue;
        extended = true;
        walk([...path, c]);
      }
    }
    if (!extended) tops.push(cur);
  };
  walk([leaf]);
  return { anchored, tops };
}

/** RFC 5280-style checks of one anchored path, top-down. Throws the first failure. */
function checkPath(path: CertInfo[], o: ValidateOptions): void {
  const algs = ALGORITHMS[o.algorithms ?? 'iso15118-2'];
  const now = o.now.getTime();
  const anchor = path[path.length - 1]!;
  // Non-self-issued intermediates still allowed below the current CA (RFC 5280 max_path_length).
  let maxPath = MAX_PRESENTED_CHAIN;
  for (let i = path.length - 1; i >= 0; i--) {
    const c = path[i]!;
    const isLeaf = i === 0;
    const isAnchor = i === path.length - 1;
    if (c.version !== 3) fail('PKI_CERT_MALFORMED', `certificate is X.509 v${c.version}, v3 required`, c);
    if (!c.namedCurve || !algs.curves.includes(c.namedCurve)) fail('PKI_ALGORITHM', `key curve ${c.namedCurve ?? 'non-EC'} not allowed`, c);
    if (!c.signatureHash || !algs.hashes.includes(c.signatureHash)) fail('PKI_ALGORITHM', `signature hash ${c.signatureHash ?? 'unknown'} not allowed`, c);
    if (now < c.notBefore.getTime()) fail('PKI_CERT_NOT_YET_VALID', `certificate not valid before ${c.notBefore.toISOString()}`, c, { notBefore: c.notBefore.toISOString() });
    if (now > c.notAfter.getTime()) fail('PKI_CERT_EXPIRED', `certificate expired ${c.notAfter.toISOString()}`, c, { notAfter: c.notAfter.toISOString() });
    const issuer = isAnchor ? c : path[i + 1]!;
    if (!signedBy(c, issuer)) fail('PKI_BAD_SIGNATURE', `signature does not verify under "${issuer.subject}"`, c);
    if (isLeaf) {
      if (isSelfSigned(c)) fail('PKI_SELF_SIGNED_LEAF', 'leaf certificate is self-signed', c);
      const role = PURPOSE_LEAF_ROLE[o.purpose];
      const profile = CERT_PROFILES[role];
      if (c.basicConstraints?.ca) fail('PKI_KEY_USAGE', `${role} must not be a CA certificate`, c);
      if (!hasBits(c.keyUsage, profile.keyUsage) || hasBits(c.keyUsage, KeyUsageFlags.keyCertSign)) {
        fail('PKI_KEY_USAGE', `key usage ${c.keyUsage ?? 'absent'} does not fit the ${role} profile (needs ${profile.keyUsage})`, c, {
          keyUsage: c.keyUsage, required: profile.keyUsage,
        });
      }
      continue;
    }
    // Issuing certificate (anchor or intermediate): must be a CA that may sign certificates.
    if (!c.basicConstraints?.ca) fail('PKI_NOT_CA', 'issuing certificate is not a CA (basicConstraints CA:FALSE or absent)', c);
    if (!hasBits(c.keyUsage, KeyUsageFlags.keyCertSign)) fail('PKI_KEY_USAGE', 'issuing certificate lacks keyCertSign', c, { keyUsage: c.keyUsage });
    if (!isAnchor) {
      if (!c.selfIssued) {
        if (maxPath <= 0) fail('PKI_PATH_LENGTH', 'path length constraint exceeded', c);
        maxPath--;
      }
    }
    if (c.basicConstraints.pathLen !== undefined) maxPath = Math.min(maxPath, c.basicConstraints.pathLen);
  }
}

/** Information about the top certificate of what a peer presented (for `PKI_UNKNOWN_ROOT`). */
export function describeTop(top: CertInfo, presented: readonly Uint8Array[]): UnknownRootInfo {
  const aki = issuerKeyIdOf(top);
  return {
    issuerDn: top.issuer,
    ...(aki ? { authorityKeyId: aki } : {}),
    topSubjectDn: top.subject,
    presentedChain: presented.map((d) => Uint8Array.from(d)),
  } as UnknownRootInfo;
}

/**
 * Validates `presented` (leaf first) against `options.anchors`. Returns the validated path or throws a typed
 * EvccError: PKI_CHAIN_EMPTY, PKI_CHAIN_TOO_LONG, PKI_CERT_MALFORMED, PKI_SELF_SIGNED_LEAF, PKI_UNKNOWN_ROOT
 * (an UnknownRootError), PKI_BAD_SIGNATURE, PKI_CERT_EXPIRED, PKI_CERT_NOT_YET_VALID, PKI_ALGORITHM, PKI_NOT_CA,
 * PKI_PATH_LENGTH, PKI_KEY_USAGE.
 */
export function validateChain(presented: readonly Uint8Array[], options: ValidateOptions): ValidatedPath {
  if (presented.length === 0) fail('PKI_CHAIN_EMPTY', 'peer presented no certificate');
  if (presented.length > MAX_PRESENTED_CHAIN) fail('PKI_CHAIN_TOO_LONG', `peer presented ${presented.length} certificates (max ${MAX_PRESENTED_CHAIN})`);
  const certs = presented.map(parseCert);
  const anchors = options.anchors.map(parseCert);
  const leaf = certs[0]!;
  if (isSelfSigned(leaf)) fail('PKI_SELF_SIGNED_LEAF', 'leaf certificate is self-signed', leaf);

  const { anchored, tops } = buildPaths(leaf, certs.slice(1), anchors);
  if (anchored.length === 0) {
    // The deepest structural path's top is what the peer chained up to; report it.
    const top = tops.reduce((best, t) => (certs.indexOf(t) > certs.indexOf(best) ? t : best), tops[0] ?? leaf);
    throw new UnknownRootError('PKI_UNKNOWN_ROOT', describeTop(top, presented));
  }
  // Shortest anchored path first (direct anchor before a cross-certificate detour).
  anchored.sort((x, y) => x.length - y.length);
  let firstError: unknown;
  for (const path of anchored) {
    try {
      checkPath(path, options);
      const anchor = path[path.length - 1]!;
      // ISO 15118-2 paths have at most two Sub-CAs; an extra CA level under the anchor is a cross-certificate.
      return { path, anchor, viaCrossCertificate: path.length - 2 > 2 };
    } catch (err) {
      firstError ??= err;
    }
  }
  throw firstError;
}
