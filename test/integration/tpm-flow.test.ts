import { createHash, createPrivateKey, verify as cryptoVerify, X509Certificate, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWith, tool } from '../support/prereq.ts';
import { TPM_TRANSPORTS, TpmLab, transportPrereqs } from './tpm-lab.ts';
import { filesUnder } from '../support/files.ts';

/**
 * Must show 1, 3 and 4 of the TPM key service, through the product's own commands (`evcc …` processes) against a
 * real swtpm: provision → OEM release v1 → measured boot → direct and compat import → sign → the signature
 * verifies with the contract certificate's public key; OTA v1 → v2 without re-import, commit, v1 refused;
 * and no file the product wrote holds private key material in clear.
 */
/** ~15 `evcc` processes per test at ~1–3 s each (tsx start-up) on a loaded 2-core machine. */
const CLI_TEST_TIMEOUT_MS = 240_000;
const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash('sha256').update(b).digest());

interface ContractKey {
  keyPem: string;
  certPem: string;
  scalar: Uint8Array;
}

/** MO side: a contract key and its certificate from an MO Sub-CA (openssl). */
async function contractKey(dir: string, name: string, mo: { key: string; cert: string }): Promise<ContractKey> {
  const key = join(dir, `${name}.key.pem`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.cert.pem`);
  await execa('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  await execa('openssl', ['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=DE-ABC-C${name.toUpperCase()}-X/O=Test MO`]);
  await execa('openssl', ['x509', '-req', '-in', csr, '-CA', mo.cert, '-CAkey', mo.key, '-CAcreateserial', '-out', cert, '-days', '30']);
  const keyPem = await readFile(key, 'utf8');
  const jwk = createPrivateKey(keyPem).export({ format: 'jwk' }) as { d: string };
  return { keyPem, certPem: await readFile(cert, 'utf8'), scalar: new Uint8Array(Buffer.from(jwk.d, 'base64url')) };
}

function verifiesWithCert(certPem: string, message: Uint8Array, rawSignature: Uint8Array): boolean {
  const cert = new X509Certificate(certPem);
  return cryptoVerify('sha256', message, { key: cert.publicKey, dsaEncoding: 'ieee-p1363' }, rawSignature);
}


// Both transports (tpm-lab.ts): direct swtpm TCTI, and tpm2-abrmd in front of it as /dev/tpmrm0 on the device.
for (const transport of TPM_TRANSPORTS) describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl'), ...transportPrereqs(transport)])(`TPM key service through the evcc commands (swtpm, ${transport})`, () => {
  let lab: TpmLab;
  let mo: { key: string; cert: string };
  let direct: ContractKey;
  let compat: ContractKey;
  const bundles: Record<number, string> = {};
  const policies: Record<number, string> = {};

  beforeAll(async () => {
    lab = await TpmLab.create({ transport });
    mo = { key: join(lab.oemDir, 'mo-subca.key.pem'), cert: join(lab.oemDir, 'mo-subca.cert.pem') };
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', mo.key, '-out', mo.cert,
      '-subj', '/CN=Test MO Sub-CA 2', '-days', '30']);
    direct = await contractKey(lab.oemDir, 'direct', mo);
    compat = await contractKey(lab.oemDir, 'compat', mo);
  });
  afterAll(async () => {
    await lab?.close();
  });

  async function release(version: number): Promise<void> {
    bundles[version] = join(lab.oemDir, `v${version}.raucb`);
    await writeFile(join(lab.oemDir, `v${version}.img`), randomBytes(80_000));
    await lab.cliOk(['bundle', 'build', '--image', `rootfs=${join(lab.oemDir, `v${version}.img`)}`, '--version', String(version), '--compatible', 'evcc-bench',
      '--cert', lab.bundleCert, '--key', lab.bundleKey, '--out', bundles[version]!]);
    policies[version] = join(lab.oemDir, `v${version}.policy.json`);
    await lab.cliOk(['oem', 'release', '--bundle', bundles[version]!, '--keyring', lab.bundleCert, '--policy-key', lab.oemPolicyKey, '--out', policies[version]!]);
  }

  /** Slot A holds the bundle's image, the initramfs hook measured it, then `evcc boot` (its own process) checks. */
  async function bootOk(bundle: string, extra: string[] = []): Promise<unknown> {
    const r = await lab.bootCli(bundle, extra);
    if (r.exitCode !== 0) throw new Error(`evcc boot failed (${r.exitCode}):\n${r.stderr}`);
    return JSON.parse(r.stdout) as unknown;
  }

  async function sign(key: 'contract' | 'provisioning', message: Uint8Array): Promise<Uint8Array> {
    const out = await lab.cliOk(['tpm', 'sign', '--key', key, '--digest', Buffer.from(sha256(message)).toString('hex')], { tpm: true }) as { signature: string };
    return new Uint8Array(Buffer.from(out.signature, 'base64'));
  }

  it('1. provision → release v1 → boot → import (direct, compat) → sign → verifies with the contract certificate', async () => {
    const first = await lab.cliOk(['tpm', 'provision', '--oem-policy-key', lab.oemPolicyPub, '--export', lab.exportDir,
      '--da-max-tries', '12', '--da-recovery', '600', '--da-lockout-recovery', '3600'], { tpm: true }) as { created: string[]; oemProvisioningKey: string };
    expect(first.created).toEqual(['srk', 'nv-counter', 'storage-key', 'dictionary-attack-parameters', 'attestation-key', 'link-secret']);
    expect(first.oemProvisioningKey).toBe('pending');
    // idempotent: a second run before the first boot changes nothing
    expect(((await lab.cliOk(['tpm', 'provision', '--oem-policy-key', lab.oemPolicyPub], { tpm: true })) as { created: string[] }).created).toEqual([]);
    // and it refuses another OEM key instead of overwriting
    await writeFile(join(lab.oemDir, 'other.pub.pem'), (await execa('openssl', ['ec', '-pubout'], { input: (await execa('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout'])).stdout })).stdout);
    const refused = await lab.cli(['tpm', 'provision', '--oem-policy-key', join(lab.oemDir, 'other.pub.pem')], { tpm: true });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('KEYS_PROVISION_CONFLICT');
    // a TPM already provisioned for another data dir (or a lost data dir) is not overwritten either
    const lost = await lab.cli(['tpm', 'provision', '--oem-policy-key', lab.oemPolicyPub, '--tcti', lab.tcti, '--data-dir', join(lab.base, 'other-data'), '--run-dir', join(lab.base, 'other-run')]);
    expect(lost.exitCode).toBe(1);
    expect(lost.stderr).toMatch(/KEYS_PROVISION_CONFLICT.*0x81000001/);

    await release(1);
    const boot = await bootOk(bundles[1]!, ['--policy', policies[1]!]);
    expect(boot).toMatchObject({ version: 1, measurement: { by: 'initramfs', events: 1 }, ticket: 'created' });
    // a runtime restart in the same boot checks again and changes nothing (the initramfs measured once)
    expect(await bootOk(bundles[1]!)).toMatchObject({ measurement: { by: 'initramfs', events: 1 }, ticket: 'cached' });
    // first good boot: the OEM provisioning key is created under the storage key
    expect(((await lab.cliOk(['tpm', 'provision', '--oem-policy-key', lab.oemPolicyPub, '--export', lab.exportDir], { tpm: true })) as { created: string[] }).created)
      .toEqual(['oem-provisioning-key', 'runtime-secret', 'store-counter', 'security-log-key']); // runtime secret and store counter: same gate

    // direct import: the MO wraps offline for this vehicle's storage key
    const blob = join(lab.oemDir, 'direct.import.json');
    await lab.cliOk(['mo', 'wrap-contract-key', '--contract-key', join(lab.oemDir, 'direct.key.pem'), '--device', lab.exportDir, '--out', blob]);
    const imported = await lab.cliOk(['tpm', 'import-contract-key', '--blob', blob], { tpm: true }) as { id: string; publicKeyPem: string };
    expect(new X509Certificate(direct.certPem).publicKey.export({ type: 'spki', format: 'pem' })).toBe(imported.publicKeyPem);
    const challenge = randomBytes(16);
    const signedInfo = Buffer.concat([Buffer.from('SignedInfo(EXI) over AuthorizationReq GenChallenge='), challenge]);
    const sig = await sign('contract', signedInfo);
    expect(sig.length).toBe(64);
    expect(verifiesWithCert(direct.certPem, signedInfo, sig)).toBe(true);
    expect(verifiesWithCert(compat.certPem, signedInfo, sig)).toBe(false);

    // compatibility path: plaintext key file imported, then destroyed
    const plain = join(lab.base, 'compat-plain.key.pem');
    await writeFile(plain, compat.keyPem, { mode: 0o600 });
    await lab.cliOk(['tpm', 'import-contract-key', '--plaintext', plain], { tpm: true });
    await expect(stat(plain)).rejects.toThrow();
    const sig2 = await sign('contract', signedInfo);
    expect(verifiesWithCert(compat.certPem, signedInfo, sig2)).toBe(true);

    // OEM provisioning key signs (CertificateInstallationReq)
    const cireq = Buffer.from('CertificateInstallationReq SignedInfo stand-in');
    const psig = await sign('provisioning', cireq);
    const ppem = await readFile(join(lab.exportDir, 'oem-provisioning.pub.pem'), 'utf8');
    expect(cryptoVerify('sha256', cireq, { key: ppem, dsaEncoding: 'ieee-p1363' }, psig)).toBe(true);
  }, CLI_TEST_TIMEOUT_MS);

  it('3. OTA v1 → v2: new signed policy, same contract key without re-import; after commit v1 is refused', async () => {
    await release(2);
    // ticket obtained while still running v1
    expect(await lab.cliOk(['boot', 'install-policy', '--policy', policies[2]!], { tpm: true })).toEqual({ version: 2, ticket: 'created' });
    await lab.reboot('orderly');
    expect(await bootOk(bundles[2]!)).toMatchObject({ version: 2, measurement: { by: 'initramfs' }, ticket: 'cached', counter: '1' });
    const msg = Buffer.from('AuthorizationReq after OTA');
    expect(verifiesWithCert(compat.certPem, msg, await sign('contract', msg))).toBe(true);
    expect((await lab.cliOk(['tpm', 'status'], { tpm: true }) as { dictionaryAttack: unknown }).dictionaryAttack)
      .toMatchObject({ maxTries: 12, recoveryTime: 600, lockoutRecovery: 3600 });
    const commit = await lab.cliOk(['boot', 'commit'], { tpm: true });
    expect(commit).toMatchObject({ version: 2, from: '1', to: '2', proof: 'contract' });
    expect(verifiesWithCert(compat.certPem, msg, await sign('contract', msg))).toBe(true);
    expect((await lab.cliOk(['tpm', 'status'], { tpm: true }) as { nvCounter: string }).nvCounter).toBe('2');

    // rollback: the genuine, OEM-signed v1 bundle with its genuine v1 policy
    await lab.reboot('orderly');
    const rb = await lab.bootCli(bundles[1]!);
    expect(rb.exitCode).toBe(1);
    expect(rb.stderr).toContain('BOOT_ROLLBACK');
    const refused = await lab.cli(['tpm', 'sign', '--digest', '00'.repeat(32)], { tpm: true });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('KEYS_NOT_BOOTED'); // the refused boot left no approved state to replay
    // old v1 firmware that skips the counter check and replays its genuine v1 policy: the TPM refuses (PolicyNV)
    const v1 = JSON.parse(await readFile(policies[1]!, 'utf8')) as { bundle: { sha256: string }; rootfs: { sha256: string }; pcrs: { value: string } };
    await writeFile(join(lab.runDir, 'boot.json'), JSON.stringify({ format: 'evcc-boot-state/1', version: 1, bundleSha256: v1.bundle.sha256, rootfsSha256: v1.rootfs.sha256, pcrValue: v1.pcrs.value, bootedAt: new Date().toISOString() }));
    const old = await lab.cli(['tpm', 'sign', '--digest', '00'.repeat(32)], { tpm: true });
    expect(old.exitCode).toBe(1);
    expect(old.stderr).toMatch(/TPM_POLICY_ROLLBACK.*0x126/);

    // back to v2: still signs
    await lab.reboot('orderly');
    await bootOk(bundles[2]!);
    expect(verifiesWithCert(compat.certPem, msg, await sign('contract', msg))).toBe(true);
  }, CLI_TEST_TIMEOUT_MS);

  it('4. no file written by the product holds private key material in clear', async () => {
    const secrets: { what: string; bytes: Uint8Array }[] = [];
    for (const [what, k] of [['direct contract key', direct], ['compat contract key', compat]] as const) {
      secrets.push({ what, bytes: k.scalar });
      secrets.push({ what: `${what} (hex)`, bytes: Buffer.from(Buffer.from(k.scalar).toString('hex')) });
      secrets.push({ what: `${what} (base64url)`, bytes: Buffer.from(Buffer.from(k.scalar).toString('base64url')) });
      secrets.push({ what: `${what} (base64)`, bytes: Buffer.from(Buffer.from(k.scalar).toString('base64')) });
    }
    const oemJwk = createPrivateKey(await readFile(lab.oemPolicyKey)).export({ format: 'jwk' }) as { d: string };
    secrets.push({ what: 'OEM policy key', bytes: new Uint8Array(Buffer.from(oemJwk.d, 'base64url')) });
    const files = [...(await filesUnder(lab.dataDir)), ...(await filesUnder(lab.runDir)), join(lab.oemDir, 'direct.import.json')];
    expect(files.length).toBeGreaterThan(10);
    const findings: string[] = [];
    for (const f of files) {
      const content = new Uint8Array(await readFile(f));
      if (Buffer.from(content).includes('PRIVATE KEY')) findings.push(`${f}: PEM private key`);
      for (const s of secrets) if (Buffer.from(content).includes(Buffer.from(s.bytes))) findings.push(`${f}: ${s.what}`);
    }
    expect(findings).toEqual([]);
    // the scanner itself finds a planted key
    expect(Buffer.from(direct.keyPem).includes('PRIVATE KEY')).toBe(true);
    // the storage-key password (a secret, not key material) is readable by the EVCC user only
    expect((await stat(join(lab.dataDir, 'tpm/storage.pass'))).mode & 0o077).toBe(0);
  });
});
