import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { derToPem } from '../../firmware/pki/cert.ts';
import { generateTestPki, type TestPki } from '../../firmware/pki/generate.ts';
import { RootCertificatePool } from './pool.ts';
import { KeyObjectSigner } from './signer.ts';

let pki: TestPki;
let dir: string;
beforeAll(async () => {
  pki = await generateTestPki();
  dir = await mkdtemp(join(tmpdir(), 'evcc-pool-'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe('Root Certificate Pool', () => {
  it('holds self-signed CAs only, finds them by DN + key id, and reloads', async () => {
    await writeFile(join(dir, 'a.pem'), derToPem(pki.a.root.der));
    await writeFile(join(dir, 'b.der'), pki.b.root.der);
    await writeFile(join(dir, 'bundle.pem'), derToPem(pki.b.cpoSub1.der) + derToPem(pki.b.seccLeaf.der) + derToPem(pki.a.root.der));
    await writeFile(join(dir, 'junk.crt'), 'not a certificate');
    await writeFile(join(dir, 'notes.txt'), 'ignored');
    const pool = await RootCertificatePool.load(dir);
    expect(pool.all().map((e) => e.subject).sort()).toEqual([pki.a.root.cert.subject, pki.b.root.cert.subject].sort());
    const b = pki.b.root;
    expect(pool.lookup(b.cert.subject)?.subject).toBe(b.cert.subject);
    expect(pool.lookup(b.cert.subject.replace(/, /g, ',').toUpperCase())?.subject).toBe(b.cert.subject);
    expect(pool.lookup(b.cert.subject, 'ab'.repeat(20))).toBeUndefined();
    expect(pool.lookup('CN=Nobody')).toBeUndefined();
    await rm(join(dir, 'b.der'));
    await pool.reload();
    expect(pool.size).toBe(1);
  });
});

describe('answer signer', () => {
  it('loads an encrypted PKCS#8 key with its passphrase and refuses a wrong one or a non-P-256 key', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const enc = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'right' }).toString();
    expect(KeyObjectSigner.fromPem(enc, 'right').keyId).toMatch(/^[0-9a-f]{64}$/);
    expect(() => KeyObjectSigner.fromPem(enc, 'wrong')).toThrowError(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(() => KeyObjectSigner.fromPem(p384)).toThrowError(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
