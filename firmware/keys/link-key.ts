import { createPrivateKey, webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { EvccError } from '../../core/errors.ts';

/**
 * The vehicle's OEM-backend link key (MQTT mutual TLS client key). Node's TLS cannot use a TPM-resident key
 * (PLATFORM.md), so it is a software key kept on disk ONLY as encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC)
 * under the passphrase derived from the TPM-sealed runtime secret: in a state the OEM did not
 * approve the passphrase does not exist, so neither does the key. Pure: callers write the PEM.
 */
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG: EcKeyGenParams & EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const CN = /^[A-Za-z0-9._-]{1,64}$/;

export interface NewLinkKey {
  /** Encrypted PKCS#8 PEM (`BEGIN ENCRYPTED PRIVATE KEY`). */
  keyPem: string;
  /** PKCS#10 request for the OEM link CA, CN = vehicle id (the broker ACL user name). */
  csrPem: string;
  publicKeyPem: string;
}

function encrypt(key: KeyObject, passphrase: string): string {
  if (passphrase.length < 32) throw new EvccError('CONFIG_INVALID', 'link-key passphrase too short');
  return key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }) as string;
}

/** A fresh P-256 link key, generated in memory, returned only encrypted, with its CSR. */
export async function createLinkKey(o: { passphrase: string; commonName: string }): Promise<NewLinkKey> {
  if (!CN.test(o.commonName)) throw new EvccError('CONFIG_INVALID', `vehicle id not allowed as CN: ${o.commonName}`);
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${o.commonName}`, keys, signingAlgorithm: ALG });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  try {
    const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    return {
      keyPem: encrypt(key, o.passphrase),
      csrPem: csr.toString('pem'),
      publicKeyPem: x509.PemConverter.encode(await webcrypto.subtle.exportKey('spki', keys.publicKey), 'PUBLIC KEY'),
    };
  } finally {
    pkcs8.fill(0);
  }
}

/**
 * Re-encrypts an existing link key (e.g. from the bench link PKI) under the TPM-derived passphrase. `current` is its
 * present passphrase (undefined for an unencrypted PKCS#8/SEC1 PEM). Refuses anything but an EC P-256 private key.
 */
export function reencryptLinkKey(pem: string | Uint8Array, o: { passphrase: string; current?: string }): string {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: typeof pem === 'string' ? pem : Buffer.from(pem), format: 'pem', ...(o.current ? { passphrase: o.current } : {}) });
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', 'link key does not open (wrong passphrase or not a private key PEM)', {}, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new EvccError('CONFIG_INVALID', 'link key must be an EC P-256 private key');
  }
  return encrypt(key, o.passphrase);
}
