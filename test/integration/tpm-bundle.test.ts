import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { releaseVersion, verifyBundle } from '../../hal/rauc/bundle.ts';
import { buildBundle } from '../../deploy/bundle/build.ts';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { describeWith, tool } from '../support/prereq.ts';

/**
 * RAUC bundles as evcc builds and verifies them (Debian rauc 1.8): plain bundles are verified over every byte by
 * `rauc info --keyring`; verity bundles only over the signed manifest (dm-verity checks the payload at mount,
 * which `rauc info` does not do) — measured here, the reason evcc builds plain bundles by default.
 */
describeWith([tool('rauc'), tool('openssl'), tool('mksquashfs')])('RAUC bundle build and verification', () => {
  let dir: string;
  let cert: string;
  let key: string;
  let img: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'evcc-bundle-test-'));
    cert = join(dir, 'cert.pem');
    key = join(dir, 'key.pem');
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=bundle', '-days', '30']);
    img = join(dir, 'rootfs.img');
    await writeFile(img, randomBytes(64 * 1024));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function tamper(path: string, offset: number): Promise<string> {
    const b = await readFile(path);
    b[offset] = b[offset]! ^ 0x01;
    const out = `${path}.tampered`;
    await writeFile(out, b);
    return out;
  }

  it('plain bundle: version and the rootfs image digest from the signed manifest; one modified payload byte is refused', async () => {
    const out = join(dir, 'plain.raucb');
    await buildBundle({ images: { rootfs: img }, version: 7, compatible: 'evcc-bench', cert, key, out });
    const info = await verifyBundle(out, cert);
    const bytes = await readFile(img);
    expect(info).toEqual({ compatible: 'evcc-bench', version: '7',
      images: { rootfs: { filename: basename(img), sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length } } });
    expect(releaseVersion(info)).toBe(7);
    await expect(verifyBundle(await tamper(out, 1000), cert)).rejects.toMatchObject({ code: 'BUNDLE_INVALID' });
  });

  it('a bundle signed by another key is refused', async () => {
    const otherKey = join(dir, 'other.key.pem');
    const otherCert = join(dir, 'other.cert.pem');
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', otherKey, '-out', otherCert, '-subj', '/CN=other', '-days', '30']);
    const out = join(dir, 'foreign.raucb');
    await buildBundle({ images: { rootfs: img }, version: 1, compatible: 'evcc-bench', cert: otherCert, key: otherKey, out });
    await expect(verifyBundle(out, cert)).rejects.toMatchObject({ code: 'BUNDLE_SIGNER_UNTRUSTED' });
  });

  it('verity bundle: rauc info checks only the signed manifest (payload change passes; PCR 14 would still differ)', async () => {
    const out = join(dir, 'verity.raucb');
    await buildBundle({ images: { rootfs: img }, version: 1, compatible: 'evcc-bench', cert, key, out, format: 'verity' });
    await expect(verifyBundle(out, cert)).resolves.toMatchObject({ version: '1' });
    await expect(verifyBundle(await tamper(out, 1000), cert)).resolves.toMatchObject({ version: '1' });
  });

  it('a device clock before the certificate (Pi without RTC): refused by default, accepted with checkTime false', async () => {
    const x509 = await import('@peculiar/x509');
    const { webcrypto } = await import('node:crypto');
    x509.cryptoProvider.set(webcrypto as unknown as Crypto);
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
    const future = new Date(Date.now() + 365 * 24 * 3600 * 1000);
    const c = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01', name: 'CN=future bundle signer', notBefore: future, notAfter: new Date(future.getTime() + 24 * 3600 * 1000),
      signingAlgorithm: alg, keys: keys as CryptoKeyPair, extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const fCert = join(dir, 'future.cert.pem');
    const fKey = join(dir, 'future.key.pem');
    await writeFile(fCert, c.toString('pem'));
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', (keys as CryptoKeyPair).privateKey)).toString('base64');
    await writeFile(fKey, `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`);
    const out = join(dir, 'future.raucb');
    await execa('rauc', ['bundle', '--cert', fCert, '--key', fKey, await (async () => {
      const content = join(dir, 'future-content');
      await execa('mkdir', ['-p', content]);
      await writeFile(join(content, 'rootfs.img'), randomBytes(64 * 1024));
      await writeFile(join(content, 'manifest.raucm'), '[update]\ncompatible=evcc-bench\nversion=1\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n');
      return content;
    })(), out]);
    await expect(verifyBundle(out, fCert)).rejects.toMatchObject({ code: 'BUNDLE_SIGNER_UNTRUSTED' });
    await expect(verifyBundle(out, fCert, { checkTime: false })).resolves.toMatchObject({ version: '1' });
  });

  it('versions that cannot be anti-rollback units are refused', () => {
    for (const version of ['0', '1.2', 'v3', '', '01']) expect(() => releaseVersion({ compatible: 'x', version, images: {} })).toThrow(/positive integer/);
  });

  it('an unreachable TPM is a typed error', async () => {
    const tpm = await Tpm2Tools.open({ tcti: 'swtpm:host=127.0.0.1,port=1', runDir: dir });
    await expect(tpm.pcrRead('sha256', 14)).rejects.toMatchObject({ code: 'TPM_UNREACHABLE' });
    await tpm.close();
  });
});
