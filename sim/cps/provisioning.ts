/**
 * The OEM's side of the bench: an OEM provisioning certificate (ISO 15118-2 profile, from OEM Sub-CA 2 of the test
 * PKI) for a key that lives in a vehicle's TPM, optionally with the storage-key extension that tells a CPS/MO to wrap
 * contract keys for direct TPM import (TR-2019-04 §3.3.2; content layout: firmware/keys/duplicate.ts).
 * generate.ts issues certificates for keys it makes itself; a TPM key has no private half here.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { encodeStorageKeyExtension, type StorageKeyExtension } from '../../firmware/keys/duplicate.ts';
import type { TestPki } from '../../firmware/pki/generate.ts';
import { CERT_PROFILES, OID_STORAGE_KEY_EXTENSION } from '../../firmware/pki/profiles.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export interface ProvisioningCertificate {
  der: Uint8Array;
  pem: string;
}

/** DER OCTET STRING around the extension content (short or long length form). */
function octetString(content: Uint8Array): Uint8Array {
  const n = content.length;
  const head = n < 0x80 ? [0x04, n] : n < 0x100 ? [0x04, 0x81, n] : [0x04, 0x82, n >> 8, n & 0xff];
  return Uint8Array.from([...head, ...content]);
}

export async function issueProvisioningCertificate(o: {
  pki: TestPki;
  /** SPKI PEM of the vehicle's TPM-held OEM provisioning key. */
  publicKeyPem: string;
  /** The vehicle's storage key and policy A (from its provisioning record / backend export): direct import. */
  storageKey?: StorageKeyExtension;
  /** Subject CN: the PCID. */
  pcid?: string;
  now?: Date;
}): Promise<ProvisioningCertificate> {
  const now = o.now ?? new Date();
  const profile = CERT_PROFILES['oem-provisioning'];
  const b64 = o.publicKeyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const publicKey = await webcrypto.subtle.importKey('spki', Buffer.from(b64, 'base64'), { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']);
  const issuer = o.pki.oem.sub2;
  const serial = randomBytes(8);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const notBefore = new Date(now.getTime() - 3_600_000);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(profile.keyUsage, true),
    await x509.SubjectKeyIdentifierExtension.create(publicKey as unknown as CryptoKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
  ];
  if (o.storageKey) extensions.push(new x509.Extension(OID_STORAGE_KEY_EXTENSION, false, Uint8Array.from(octetString(encodeStorageKeyExtension(o.storageKey))) as Uint8Array<ArrayBuffer>));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: `CN=${o.pcid ?? 'WMIV0000000000001'}, O=EVCC Test OEM, C=DE`,
    issuer: issuer.cert.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + profile.validityDays * 86_400_000),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    publicKey: publicKey as unknown as CryptoKey,
    signingKey: issuer.keys.privateKey,
    extensions,
  });
  return { der: new Uint8Array(cert.rawData), pem: `${cert.toString('pem')}\n` };
}
