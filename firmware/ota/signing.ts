import { createHash, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { AnswerStatus } from './messages.ts';

/**
 * What the OEM backend signs, independent of TLS (ARCHITECTURE.md §4): the answer is bound to the vehicle, the
 * request id, the vehicle's fresh nonce, the status and the digest of the certificate(s) it carries. A context
 * string separates the two answer kinds so one can never be replayed as the other. ECDSA P-256 / SHA-256, DER.
 */
export const ROOTCA_CONTEXT = 'evcc/v1 pki/rootca/resp';
export const ROOTLIST_CONTEXT = 'evcc/v1 pki/roots/resp';

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface SignedFields {
  vehicleId: string;
  requestId: string;
  nonce: string;
  status: AnswerStatus;
  /** SHA-256 hex of the root DER ('' when no certificate). */
  certDigest: string;
}

export function rootCaSigningInput(f: SignedFields): Uint8Array {
  return new TextEncoder().encode([ROOTCA_CONTEXT, f.vehicleId, f.requestId, f.nonce, f.status, f.certDigest].join('\n'));
}

/** For the list: the digest is SHA-256 over the concatenated per-certificate digests, in the order sent. */
export function rootListDigest(certs: Uint8Array[]): string {
  return sha256Hex(new TextEncoder().encode(certs.map((c) => sha256Hex(c)).join('')));
}

export function rootListSigningInput(f: SignedFields): Uint8Array {
  return new TextEncoder().encode([ROOTLIST_CONTEXT, f.vehicleId, f.requestId, f.nonce, f.status, f.certDigest].join('\n'));
}

/** Key id: SHA-256 of the public key's SubjectPublicKeyInfo DER. */
export function keyIdOf(publicKey: KeyObject): string {
  return sha256Hex(publicKey.export({ type: 'spki', format: 'der' }));
}

export function signInput(privateKey: KeyObject, input: Uint8Array): Uint8Array {
  return new Uint8Array(cryptoSign('sha256', input, { key: privateKey, dsaEncoding: 'der' }));
}

/** Total: false for any malformed signature or key mismatch, never throws. */
export function verifyInput(publicKey: KeyObject, input: Uint8Array, signature: Uint8Array): boolean {
  try {
    return cryptoVerify('sha256', input, { key: publicKey, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}

/** The OEM backend's verification key as installed at production (PEM SPKI). */
export interface BackendTrust {
  publicKey: KeyObject;
  keyId: string;
}

export function backendTrustFromPem(pem: string | Uint8Array): BackendTrust {
  const publicKey = createPublicKey({ key: typeof pem === 'string' ? pem : Buffer.from(pem), format: 'pem' });
  if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('OEM backend key must be an EC P-256 public key');
  }
  return { publicKey, keyId: keyIdOf(publicKey) };
}
