import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { openVehicleTrust } from '../../firmware/keys/vehicle-trust.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * `evcc pki roots list|install|remove` and `evcc pki backend-key install` as processes (the bench/factory path),
 * on a vehicle provisioned and booted in process against a real swtpm: the store is opened with the key unsealed
 * from the TPM; a store file changed on disk is refused with a typed error and exit code 1.
 */
const CLI_TEST_TIMEOUT_MS = 120_000; // 7 `evcc` processes at ~1–3 s each (tsx start-up) on a loaded 2-core machine

interface RootView { fingerprint: string; subject: string; source: string }

describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl')])('evcc pki roots / backend-key (swtpm)', () => {
  let lab: TpmLab;
  const pem = (name: string) => join(lab.oemDir, `${name}.pem`);

  beforeAll(async () => {
    lab = await TpmLab.create();
    expect((await lab.bootedVehicle()).created).toContain('runtime-secret');
    for (const name of ['V2G Root A', 'V2G Root B']) {
      await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(lab.oemDir, `${name}.key.pem`),
        '-out', pem(name), '-subj', `/CN=${name}/O=Test V2G`, '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    }
    // a leaf-like certificate (CA:FALSE) that must not become a trust anchor
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(lab.oemDir, 'leaf.key.pem'),
      '-out', pem('leaf'), '-subj', '/CN=not a root', '-days', '30', '-addext', 'basicConstraints=critical,CA:FALSE']);
    await writeFile(pem('both'), (await readFile(pem('V2G Root A'), 'utf8')) + (await readFile(pem('V2G Root B'), 'utf8')));
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('installs, lists and removes roots with the TPM-derived integrity; a tampered store file is refused', async () => {
    const installed = await lab.cliOk(['pki', 'roots', 'install', pem('both'), '--source', 'factory-line-3'], { tpm: true }) as RootView[];
    expect(installed.map((r) => r.subject)).toEqual(['CN=V2G Root A, O=Test V2G', 'CN=V2G Root B, O=Test V2G']);
    expect(installed.every((r) => r.source === 'factory-line-3' && /^[0-9a-f]{64}$/.test(r.fingerprint))).toBe(true);

    const notRoot = await lab.cli(['pki', 'roots', 'install', pem('leaf')], { tpm: true });
    expect(notRoot.exitCode).toBe(1);
    expect(notRoot.stderr).toMatch(/PKI_NOT_A_ROOT.*not a CA/);

    const removed = await lab.cliOk(['pki', 'roots', 'remove', installed[0]!.fingerprint], { tpm: true });
    expect(removed).toEqual({ removed: installed[0]!.fingerprint, remaining: 1 });

    const backend = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
    await writeFile(join(lab.oemDir, 'backend.pub.pem'), backend);
    expect(await lab.cliOk(['pki', 'backend-key', 'install', join(lab.oemDir, 'backend.pub.pem')], { tpm: true })).toMatchObject({ keyId: expect.stringMatching(/^[0-9a-f]{64}$/) });

    // the vehicle's link key: generated in the CLI process, on disk only encrypted under the TPM-derived passphrase
    const keyOut = join(lab.base, 'link.key.pem');
    const csrOut = join(lab.base, 'link.csr.pem');
    await lab.cliOk(['pki', 'link-key', 'create', '--vehicle-id', 'VIN-0001', '--key-out', keyOut, '--csr-out', csrOut], { tpm: true });
    const linkPem = await readFile(keyOut, 'utf8');
    expect(linkPem).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
    expect((await stat(keyOut)).mode & 0o077).toBe(0);
    expect(() => createPrivateKey(linkPem)).toThrow();
    const deps = await lab.deps();
    const keys = await KeyService.open(deps, { reclaim: true });
    try {
      const trust = await openVehicleTrust({ keys, data: deps.data, log: deps.log });
      expect(createPrivateKey({ key: linkPem, passphrase: trust.linkKeyPassphrase }).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    } finally {
      await keys.close();
    }
    expect((await execa('openssl', ['req', '-in', csrOut, '-noout', '-verify', '-subject'])).stdout).toMatch(/subject=CN\s?=\s?VIN-0001/);

    const listed = await lab.cliOk(['pki', 'roots', 'list'], { tpm: true }) as RootView[];
    expect(listed.map((r) => r.subject)).toEqual(['CN=V2G Root B, O=Test V2G']);

    // someone with write access to the data dir puts Root A back without the key: refused, exit 1, typed
    const path = join(lab.dataDir, 'pki/store.json');
    const env = JSON.parse(await readFile(path, 'utf8')) as { body: string };
    const body = JSON.parse(env.body) as { roots: { der: string; installedAt: string; source: string }[] };
    const rootA = (await readFile(pem('V2G Root A'), 'utf8')).replace(/-----[A-Z ]+-----|\s/g, '');
    body.roots.push({ der: rootA, installedAt: new Date().toISOString(), source: 'attacker' });
    await writeFile(path, JSON.stringify({ ...env, body: JSON.stringify(body) }));
    const tampered = await lab.cli(['pki', 'roots', 'list'], { tpm: true });
    expect(tampered.exitCode).toBe(1);
    expect(tampered.stderr).toMatch(/KEYS_TRUST_UNAVAILABLE: vehicle trust unavailable \(PKI_STORE_TAMPERED\)/);
    expect(tampered.stdout).toBe('');
  }, CLI_TEST_TIMEOUT_MS);
});
