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
 * `evcc pki roots list|install|remove|approve` and `evcc pki backend-key install` as processes (the bench/factory
 * path), on a vehicle provisioned and booted in process against a real swtpm: the store is opened with the key
 * unsealed from the TPM, every root installed with the OEM's approval; a store file changed on disk is refused with
 * a typed error and exit code 1, or — given the release's OEM backend key — shown as the degraded view that trusts
 * only the OEM-approved roots. The same tools work on the bench store (`--store-key-env`, no TPM).
 */
const CLI_TEST_TIMEOUT_MS = 150_000; // ~12 `evcc` processes at ~1–3 s each (tsx start-up) on a loaded 2-core machine

interface RootView { fingerprint: string; subject: string; source: string; approvedBy: string | null }

/** `evcc …` as its own process with extra environment (the bench store key); TpmLab.cli without the TPM flags. */
async function evcc(args: string[], env: Record<string, string>): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', '..', 'bin', 'evcc.ts'), '--log-level', 'warn', ...args],
    { cwd: join(import.meta.dirname, '..', '..'), reject: false, stdin: 'ignore', env: { NODE_OPTIONS: '', ...env } });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
async function evccOk(args: string[], env: Record<string, string>): Promise<unknown> {
  const r = await evcc(args, env);
  if (r.exitCode !== 0) throw new Error(`evcc ${args.join(' ')} failed (${r.exitCode}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as unknown;
}

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
    // the OEM backend key pair: the private half signs the approvals (OEM side), the public half ships in the release
    const oem = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(oemKey(), oem.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    await writeFile(oemPub(), oem.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  });
  const oemKey = () => join(lab.oemDir, 'oem-backend.key.pem');
  const oemPub = () => join(lab.oemDir, 'oem-backend.pub.pem');
  afterAll(async () => {
    await lab?.close();
  });

  it('installs roots with their OEM approvals, lists and removes them with the TPM-derived integrity; a tampered store file is refused', async () => {
    const approvals = join(lab.oemDir, 'approvals.json');
    const approved = await lab.cliOk(['pki', 'roots', 'approve', pem('both'), '--signing-key', oemKey(), '--out', approvals]) as { approvals: { subject: string }[] };
    expect(approved.approvals.map((a) => a.subject)).toEqual(['CN=V2G Root A, O=Test V2G', 'CN=V2G Root B, O=Test V2G']);
    const unapproved = await lab.cli(['pki', 'roots', 'install', pem('both')], { tpm: true });
    expect(unapproved.exitCode).toBe(1);
    expect(unapproved.stderr).toMatch(/CONFIG_INVALID: each V2G root needs the OEM approval/);
    const installed = await lab.cliOk(['pki', 'roots', 'install', pem('both'), '--approvals', approvals, '--source', 'factory-line-3', '--release-backend-key', oemPub()], { tpm: true }) as RootView[];
    expect(installed.map((r) => r.subject)).toEqual(['CN=V2G Root A, O=Test V2G', 'CN=V2G Root B, O=Test V2G']);
    expect(installed.every((r) => r.source === 'factory-line-3' && /^[0-9a-f]{64}$/.test(r.fingerprint) && r.approvedBy === 'release')).toBe(true);

    const notRoot = await lab.cli(['pki', 'roots', 'install', pem('leaf'), '--unapproved'], { tpm: true });
    expect(notRoot.exitCode).toBe(1);
    expect(notRoot.stderr).toMatch(/PKI_NOT_A_ROOT.*not a CA/);
    // the same root with trailing bytes would be a twin with its own fingerprint: refused
    const der = (await readFile(pem('V2G Root A'), 'utf8')).replace(/-----[A-Z ]+-----|\s/g, '');
    await writeFile(join(lab.oemDir, 'twin.der'), Buffer.concat([Buffer.from(der, 'base64'), Buffer.from([0, 0])]));
    const twin = await lab.cli(['pki', 'roots', 'install', join(lab.oemDir, 'twin.der'), '--unapproved'], { tpm: true });
    expect(twin.exitCode).toBe(1);
    expect(twin.stderr).toMatch(/PKI_NOT_A_ROOT.*2 byte\(s\) after the certificate/);

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
    expect(listed[0]!.approvedBy).toBe('unverified'); // the tagged backend key above is not the OEM key that approved B

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
    // with the release's OEM backend key: the degraded view, which trusts only the OEM-approved root, not the planted one
    const view = await lab.cli(['pki', 'roots', 'list', '--release-backend-key', oemPub()], { tpm: true });
    expect(view.exitCode, view.stderr).toBe(0);
    expect((JSON.parse(view.stdout) as RootView[]).map((r) => [r.subject, r.approvedBy])).toEqual([['CN=V2G Root B, O=Test V2G', 'release']]);
    expect(view.stderr).toMatch(/\[WARN\] PKI: degraded view \(PKI_STORE_TAMPERED\): only roots verified by their OEM approval are listed/);
    expect(view.stderr).toMatch(/V2G root entry not trusted: no OEM approval/);
    // install/remove need the full trust: refused in that state
    const write = await lab.cli(['pki', 'roots', 'remove', listed[0]!.fingerprint, '--release-backend-key', oemPub()], { tpm: true });
    expect(write.exitCode).toBe(1);
    expect(write.stderr).toMatch(/KEYS_TRUST_UNAVAILABLE/);
  }, CLI_TEST_TIMEOUT_MS);

  it('the bench store (--store-key-env, no TPM) has the same tools: install with approvals, list, remove', async () => {
    const dataDir = join(lab.base, 'bench-data');
    const bench = ['--store-key-env', 'EVCC_BENCH_STORE_KEY', '--data-dir', dataDir, '--run-dir', join(lab.base, 'bench-run'), '--release-backend-key', oemPub()];
    const env = { EVCC_BENCH_STORE_KEY: '5a'.repeat(32) };
    const approvals = join(lab.oemDir, 'approvals-bench.json');
    await lab.cliOk(['pki', 'roots', 'approve', pem('V2G Root A'), '--signing-key', oemKey(), '--out', approvals]);
    const installed = await evccOk(['pki', 'roots', 'install', pem('V2G Root A'), '--approvals', approvals, ...bench], env) as RootView[];
    expect(installed.map((r) => [r.subject, r.approvedBy])).toEqual([['CN=V2G Root A, O=Test V2G', 'release']]);
    const listed = await evcc(['pki', 'roots', 'list', ...bench], env);
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(listed.stderr).toMatch(/certificate-store integrity key from the environment \(EVCC_BENCH_STORE_KEY\): bench arrangement, not TPM-sealed/);
    expect((JSON.parse(listed.stdout) as RootView[]).map((r) => r.fingerprint)).toEqual([installed[0]!.fingerprint]);
    // another bench key cannot read it
    const wrong = await evcc(['pki', 'roots', 'list', ...bench], { EVCC_BENCH_STORE_KEY: '6b'.repeat(32) });
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toMatch(/PKI_STORE_TAMPERED/);
    expect(await evccOk(['pki', 'roots', 'remove', installed[0]!.fingerprint, ...bench], env)).toEqual({ removed: installed[0]!.fingerprint, remaining: 0 });
  }, CLI_TEST_TIMEOUT_MS);
});
