import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/**
 * Certificates of the OEM link (the MQTT/TLS connection between vehicles, the OEM backend and the broker), not of
 * the V2G PKI: a link CA, the broker's server certificate (SAN = loopback IP / host name) and client certificates
 * whose CN is the vehicle id (mosquitto `use_identity_as_username` turns it into the ACL user name). ECDSA P-256.
 * Used by the tests, the benches and `evcc oem-backend link-pki` to provision a bench.
 */
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG: EcKeyGenParams & EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export interface LinkCredential {
  certPem: string;
  /** PKCS#8 PEM. Written to disk only by test/bench provisioning, with mode 0600. */
  keyPem: string;
}

export interface LinkCa extends LinkCredential {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

function pemKey(der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function serial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(12));
  b[0]! &= 0x7f;
  return Buffer.from(b).toString('hex');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(Date.now() - 60_000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86_400_000) };
}

export async function createLinkCa(commonName = 'evcc OEM link CA', days = 3650): Promise<LinkCa> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    ...validity(days),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys, certPem: cert.toString('pem'), keyPem: pemKey(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) };
}

export interface LinkCertRequest {
  commonName: string;
  /** Server certificate: the names/addresses clients dial. */
  server?: { ips?: string[]; dns?: string[] };
  days?: number;
}

export async function issueLinkCert(ca: LinkCa, req: LinkCertRequest): Promise<LinkCredential> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension([req.server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (req.server) {
    extensions.push(new x509.SubjectAlternativeNameExtension([
      ...(req.server.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
      ...(req.server.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ]));
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${req.commonName}`,
    issuer: ca.cert.subject,
    ...validity(req.days ?? 825),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ALG,
    extensions,
  });
  return { certPem: cert.toString('pem'), keyPem: pemKey(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) };
}
