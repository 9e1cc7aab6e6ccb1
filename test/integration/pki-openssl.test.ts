import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { X509Certificate, Extension } from '@peculiar/x509';
import { generateTestPki } from '../../firmware/pki/generate.ts';
import { OID_STORAGE_KEY_EXTENSION } from '../../firmware/pki/profiles.ts';
import { pemToDerList } from '../../firmware/pki/cert.ts';
import { validateChain } from '../../firmware/pki/validate.ts';
import { opensslVerify, writeTestPki, type WrittenPki } from '../../bin/commands/pki.ts';
import { describeWith, tool } from '../support/prereq.ts';

const run = promisify(execFile);
let dir: string;
let written: WrittenPki;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'evcc-pki-init-'));
  written = await writeTestPki(join(dir, 'pki'), await generateTestPki(), { negative: true });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describeWith([tool('openssl')])('evcc pki init: the ISO 15118-2 test PKI, checked by openssl', () => {
  it('openssl verify -x509_strict accepts every chain it produces, and our validation agrees', async () => {
    const names = written.chains.map((c) => c.name);
    expect(names).toEqual(['secc-a', 'secc-b', 'secc-b-via-cross', 'secc-a-via-cross', 'oem-provisioning', 'vehicle', 'contract', 'cps']);
    for (const c of written.chains) {
      expect(await opensslVerify(written.dir, c)).toMatch(/: OK$/);
      const presented = pemToDerList(await readFile(join(written.dir, c.chain), 'utf8'));
      const anchors = pemToDerList(await readFile(join(written.dir, c.root), 'utf8'));
      expect(validateChain(presented, { anchors, now: new Date(), purpose: c.purpose }).anchor.der).toEqual(anchors[0]);
    }
  });

  it('the same check can fail: openssl rejects the expired, non-CA and self-signed negative samples', async () => {
    for (const c of written.negative.filter((n) => n.name !== 'wrong-ku-leaf')) {
      await expect(opensslVerify(written.dir, c), c.name).rejects.toMatchObject({ code: 'PKI_OPENSSL_REJECTED' });
    }
  });

  it('profiles: P-256/ECDSA-SHA256, critical CA constraints and key usage, storage-key extension on the provisioning certificate', async () => {
    const text = (await run('openssl', ['x509', '-noout', '-text', '-in', join(written.dir, 'oem/oem-provisioning.pem')])).stdout;
    expect(text).toMatch(/ecdsa-with-SHA256/);
    expect(text).toMatch(/prime256v1|P-256/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Agreement/);
    expect(text).toMatch(new RegExp(`${OID_STORAGE_KEY_EXTENSION.replace(/\./g, '\\.')}:\\s*\\n`)); // non-critical: no "critical"
    const cert = new X509Certificate(await readFile(join(written.dir, 'oem/oem-provisioning.pem'), 'utf8'));
    const ext = cert.getExtension<Extension>(OID_STORAGE_KEY_EXTENSION)!;
    expect(ext.critical).toBe(false);
    const v = new Uint8Array(ext.value);
    expect(v[0]).toBe(0x04); // OCTET STRING
    expect(v[1]).toBe(v.length - 2);
    const sub1 = (await run('openssl', ['x509', '-noout', '-text', '-in', join(written.dir, 'pki-a/cpo-sub-ca-1.pem')])).stdout;
    expect(sub1).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:1/);
    expect(sub1).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    const cross = (await run('openssl', ['x509', '-noout', '-subject', '-issuer', '-in', join(written.dir, 'cross/pki-b-root-by-pki-a.pem')])).stdout;
    expect(cross).toMatch(/subject=.*V2G Root CA B/);
    expect(cross).toMatch(/issuer=.*V2G Root CA A/);
  });

  it('writes the TEST private keys as PKCS#8 PEM with mode 0600 and says so', async () => {
    for (const c of written.chains) {
      const key = join(written.dir, c.leafKey);
      expect((await stat(key)).mode & 0o777, c.leafKey).toBe(0o600);
      expect(await readFile(key, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    }
    expect(await readFile(join(written.dir, 'README.txt'), 'utf8')).toMatch(/UNENCRYPTED PKCS#8 private keys \(mode 0600\) of TEST certificates/);
  });
});
