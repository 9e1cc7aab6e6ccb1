import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { createLinkKey, reencryptLinkKey } from './link-key.ts';

const PASS = 'a'.repeat(64);

describe('OEM-backend link key under the TPM-derived passphrase', () => {
  it('creates a P-256 key that exists on paper only encrypted, with a CSR whose key matches', async () => {
    const k = await createLinkKey({ passphrase: PASS, commonName: 'VIN-0001' });
    expect(k.keyPem).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
    expect(() => createPrivateKey(k.keyPem)).toThrow(); // no passphrase, no key
    expect(() => createPrivateKey({ key: k.keyPem, passphrase: 'b'.repeat(64) })).toThrow();
    const key = createPrivateKey({ key: k.keyPem, passphrase: PASS });
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const csr = new x509.Pkcs10CertificateRequest(k.csrPem);
    expect(csr.subject).toBe('CN=VIN-0001');
    expect(await csr.verify()).toBe(true);
    const spki = (p: string) => createPublicKey(p).export({ type: 'spki', format: 'der' });
    expect(spki(k.publicKeyPem).equals(createPublicKey(key).export({ type: 'spki', format: 'der' }))).toBe(true);
    expect(Buffer.from(csr.publicKey.rawData).equals(spki(k.publicKeyPem))).toBe(true);
  });

  it('re-encrypts an existing key; refuses a wrong passphrase, a non-P-256 key and a bad CN', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const old = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'bench-pass' }) as string;
    const pem = reencryptLinkKey(old, { passphrase: PASS, current: 'bench-pass' });
    expect(createPrivateKey({ key: pem, passphrase: PASS }).export({ format: 'jwk' })).toEqual(privateKey.export({ format: 'jwk' }));
    expect(() => reencryptLinkKey(old, { passphrase: PASS, current: 'wrong' })).toThrow(EvccError);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    expect(() => reencryptLinkKey(rsa, { passphrase: PASS })).toThrow(/P-256/);
    await expect(createLinkKey({ passphrase: PASS, commonName: 'CN=x,O=evil' })).rejects.toThrow(/not allowed/);
  });
});
