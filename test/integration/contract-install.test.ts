import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CertificateInstallationReqType, CertificateUpdateReqType, SignatureType } from '../../firmware/exi/generated/iso2.ts';
import { sign as xmldsigSign, verifyDetached } from '../../firmware/exi/xmldsig/index.ts';
import { installContract, type InstalledContract } from '../../firmware/keys/contract-install.ts';
import { marshalEccPublic } from '../../firmware/keys/duplicate.ts';
import { eccPointOfUncompressed, isoEncryptPrivateKey, isoKdf } from '../../firmware/keys/iso-key-transport.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { DATA, type ProvisioningRecord } from '../../firmware/keys/layout.ts';
import { fromHex, sha256, TPMA } from '../../firmware/keys/policy.ts';
import { generateTestPki, type TestPki } from '../../firmware/pki/generate.ts';
import { answerCertificateInstallation, answerCertificateUpdate, issueProvisioningCertificate, type CpsForgery, type ProvisioningCertificate } from '../../sim/cps/index.ts';
import { filesUnder } from '../support/files.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { TpmBusTap } from './tpm-secret-bus-tap.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * ISO 15118-2 CertificateInstallation / CertificateUpdate on a provisioned, booted vehicle TPM (swtpm): the CPS
 * simulator answers requests signed by the TPM-held keys, installContract verifies and imports — on the ISO 15118-2
 * path (ECDH inside the TPM with the provisioning or the current contract key) and directly (duplicate for this
 * vehicle's storage key) — and the new contract key then signs for its certificate. Each forged answer is refused
 * with its own code while the old contract keeps signing; superseded key files are gone; no file holds a contract
 * private key in clear.
 */
const TEST_TIMEOUT_MS = 180_000;

function verifies(certPem: string, message: Uint8Array, raw: Uint8Array): boolean {
  return cryptoVerify('sha256', message, { key: new X509Certificate(certPem).publicKey, dsaEncoding: 'ieee-p1363' }, raw);
}

describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl'), tool('mkfifo')])('contract installation into the vehicle TPM (swtpm)', () => {
  let lab: TpmLab;
  let keys: KeyService;
  let record: ProvisioningRecord;
  let pki: TestPki;
  let trust: { v2gRoots: Uint8Array[]; moRoots: Uint8Array[] };
  let provCompat: ProvisioningCertificate;
  let provDirect: ProvisioningCertificate;
  /** Every contract private key the CPS made (test material), for the final scan. */
  const issuedKeys: string[] = [];
  let current: InstalledContract;
  const now = new Date();

  beforeAll(async () => {
    lab = await TpmLab.create();
    record = (await lab.bootedVehicle()).record;
    keys = await KeyService.open(await lab.deps());
    pki = await generateTestPki({ now });
    trust = { v2gRoots: [pki.a.root.der], moRoots: [pki.mo.root.der] };
    const publicKeyPem = record.oemProvisioningKey!.publicKeyPem;
    provCompat = await issueProvisioningCertificate({ pki, publicKeyPem, now });
    provDirect = await issueProvisioningCertificate({ pki, publicKeyPem, now, storageKey: { storageKeyPublic: fromHex(record.storageKey.public), keysPolicy: fromHex(record.policies.keys) } });
  }, TEST_TIMEOUT_MS);
  afterAll(async () => {
    await keys?.close();
    await lab?.close();
  });

  const roots = () => ({ RootCertificateID: [{ X509IssuerName: pki.a.root.cert.subject, X509SerialNumber: 1 }] });

  /** CertificateInstallationReq signed by the TPM-held OEM provisioning key (sign|decrypt now). */
  async function installationReq(cert: ProvisioningCertificate): Promise<{ body: CertificateInstallationReqType; signature: SignatureType }> {
    const body: CertificateInstallationReqType = { Id: 'id0', OEMProvisioningCert: Buffer.from(cert.der).toString('hex'), ListOfRootCertificateIDs: roots() };
    return { body, signature: await xmldsigSign([{ CertificateInstallationReq: body }], keys.provisioningKeySigner()) };
  }

  /** CertificateUpdateReq signed by the current contract key. */
  async function updateReq(): Promise<{ body: CertificateUpdateReqType; signature: SignatureType }> {
    const body: CertificateUpdateReqType = { Id: 'id0', ContractSignatureCertChain: { Id: 'id9', ...current.certificateChain }, eMAID: current.emaid, ListOfRootCertificateIDs: roots() };
    return { body, signature: await xmldsigSign([{ CertificateUpdateReq: body }], keys.contractKeySigner()) };
  }

  async function contractSigns(certPem: string): Promise<boolean> {
    const message = new Uint8Array(randomBytes(40));
    return verifies(certPem, message, await keys.signWithContractKey(sha256(message)));
  }

  const contractFiles = async () => (await readdir(join(lab.dataDir, 'keys/contract'))).sort();
  const onlyKey = (id: string) => ['active', `${id}.priv`, `${id}.pub`, `${id}.pub.pem`].sort();

  it('installation, ISO 15118-2 path: ECDH with the provisioning key inside the TPM → import → the new key signs for its certificate', async () => {
    const req = await installationReq(provCompat);
    const a = await answerCertificateInstallation(req.body, { pki, now, requestSignature: req.signature }); // the CPS verifies the TPM's signature
    issuedKeys.push(a.contract.keyPem);
    expect(a.transport).toBe('compat');
    current = await installContract({ operation: 'installation', response: a.body, header: { Signature: a.signature }, trust, keys, now });
    expect(current).toMatchObject({ emaid: 'DEEVCC000000001', path: 'compat', supersededKeyIds: [] });
    expect(current.certificatePem).toBe(a.contract.certificatePem.trim() + '\n');
    await keys.arm();
    expect(await contractSigns(current.certificatePem)).toBe(true);
    expect((await keys.status()).contractKeys).toEqual([current.contractKeyId]);
  }, TEST_TIMEOUT_MS);

  it('update, ISO 15118-2 path: request signed by the contract key, ECDH with it inside the TPM; the superseded key files are gone', async () => {
    const old = current;
    const req = await updateReq();
    verifyDetached(req.signature, { CertificateUpdateReq: req.body }, fromHex(old.certificateChain.Certificate)); // the TPM signed for the old contract
    const a = await answerCertificateUpdate(req.body, { pki, now, requestSignature: req.signature });
    issuedKeys.push(a.contract.keyPem);
    current = await installContract({ operation: 'update', response: a.body, header: { Signature: a.signature }, trust, keys, now, expectedEmaid: old.emaid });
    expect(current).toMatchObject({ path: 'compat', supersededKeyIds: [old.contractKeyId] });
    expect(current.contractKeyId).not.toBe(old.contractKeyId);
    expect(await contractFiles()).toEqual(onlyKey(current.contractKeyId));
    expect(await contractSigns(current.certificatePem)).toBe(true);
    expect(await contractSigns(old.certificatePem)).toBe(false);
  }, TEST_TIMEOUT_MS);

  /** Each forged answer: its code, nothing imported, the current contract still signs. */
  async function refusedKeepingCurrent(forge: CpsForgery, operation: 'installation' | 'update', code: string, details: Record<string, unknown> = {}, prov = provCompat): Promise<void> {
    const before = await contractFiles();
    const req = operation === 'installation' ? await installationReq(prov) : await updateReq();
    const a = operation === 'installation'
      ? await answerCertificateInstallation(req.body as CertificateInstallationReqType, { pki, now, forge })
      : await answerCertificateUpdate(req.body as CertificateUpdateReqType, { pki, now, forge });
    issuedKeys.push(a.contract.keyPem);
    const err = await installContract({ operation, response: a.body, header: { Signature: a.signature }, trust, keys, now, ...(operation === 'update' ? { expectedEmaid: current.emaid } : {}) })
      .then(() => undefined, (e: unknown) => e);
    expect(err, `${forge} (${a.transport})`).toMatchObject({ code, details: expect.objectContaining(details) });
    expect(await contractFiles()).toEqual(before);
    expect(await contractSigns(current.certificatePem)).toBe(true);
  }

  it('forged or mis-chained answers (ISO path) are refused, each with its own code; the current contract keeps signing', async () => {
    await refusedKeepingCurrent('wrong-cps-signer', 'installation', 'CONTRACT_SIGNATURE_INVALID', { cause: 'XMLDSIG_BAD_SIGNATURE' });
    await refusedKeepingCurrent('cps-chain-unknown-root', 'update', 'CONTRACT_CPS_CHAIN_INVALID', { cause: 'PKI_UNKNOWN_ROOT' });
    await refusedKeepingCurrent('contract-chain-unknown-root', 'installation', 'CONTRACT_CHAIN_INVALID', { cause: 'PKI_UNKNOWN_ROOT' });
    await refusedKeepingCurrent('emaid-mismatch', 'update', 'CONTRACT_EMAID_MISMATCH');
    // key mismatch: the ECDH ran in the TPM and the decrypted key is not the certificate's
    await refusedKeepingCurrent('key-mismatch', 'installation', 'CONTRACT_KEY_MISMATCH', { path: 'compat', cause: 'KEYS_KEY_MISMATCH' });
    await refusedKeepingCurrent('key-mismatch', 'update', 'CONTRACT_KEY_MISMATCH', { path: 'compat', cause: 'KEYS_KEY_MISMATCH' });
  }, TEST_TIMEOUT_MS);

  it('installation, direct path: storage-key extension → duplicate for this storage key → TPM2_Import → signs; then a direct update', async () => {
    const old = current;
    const req = await installationReq(provDirect);
    const a = await answerCertificateInstallation(req.body, { pki, now, requestSignature: req.signature, signedInfoEncoding: 'msgdef' });
    issuedKeys.push(a.contract.keyPem);
    expect(a.transport).toBe('direct');
    current = await installContract({ operation: 'installation', response: a.body, header: { Signature: a.signature }, trust, keys, now });
    expect(current).toMatchObject({ path: 'direct', signedInfoEncoding: 'msgdef', supersededKeyIds: [old.contractKeyId] });
    expect(await contractSigns(current.certificatePem)).toBe(true);
    expect(await contractSigns(old.certificatePem)).toBe(false);

    const previous = current;
    const ureq = await updateReq();
    const u = await answerCertificateUpdate(ureq.body, { pki, now, requestSignature: ureq.signature });
    issuedKeys.push(u.contract.keyPem);
    expect(u.transport).toBe('direct'); // the MO copied the storage-key extension into the contract certificate
    current = await installContract({ operation: 'update', response: u.body, header: { Signature: u.signature }, trust, keys, now, expectedEmaid: previous.emaid });
    expect(current).toMatchObject({ path: 'direct', supersededKeyIds: [previous.contractKeyId] });
    expect(await contractFiles()).toEqual(onlyKey(current.contractKeyId));
    expect(await contractSigns(current.certificatePem)).toBe(true);
  }, TEST_TIMEOUT_MS);

  it('direct path: a key other than the certified one, or a blob for another vehicle\'s storage key, is refused; the current contract keeps signing', async () => {
    // another scalar under the certified public area: TPM2_Import itself refuses (TPM_RC_BINDING); the proof
    // signature before activation would catch a TPM that did not check
    await refusedKeepingCurrent('key-mismatch', 'installation', 'CONTRACT_KEY_MISMATCH', { path: 'direct', rc: '0xA5' }, provDirect);
    await refusedKeepingCurrent('key-mismatch', 'update', 'CONTRACT_KEY_MISMATCH', { path: 'direct', rc: '0xA5' });
    // another vehicle: same OEM key material in the certificate, another storage key → the TPM's integrity check
    const other = createECDH('prime256v1');
    other.generateKeys();
    const p = new Uint8Array(other.getPublicKey());
    const area = marshalEccPublic({
      nameAlg: 0x000b, attributes: TPMA.fixedTPM | TPMA.fixedParent | TPMA.sensitiveDataOrigin | TPMA.adminWithPolicy | TPMA.restricted | TPMA.decrypt,
      authPolicy: new Uint8Array(32), symmetric: { alg: 0x0006, keyBits: 128, mode: 0x0043 }, scheme: { alg: 0x0010 }, curve: 0x0003, x: p.subarray(1, 33), y: p.subarray(33, 65),
    });
    const foreign = await issueProvisioningCertificate({
      pki, now, publicKeyPem: record.oemProvisioningKey!.publicKeyPem,
      storageKey: { storageKeyPublic: Uint8Array.from([area.length >> 8, area.length & 0xff, ...area]), keysPolicy: fromHex(record.policies.keys) },
    });
    const before = await contractFiles();
    const req = await installationReq(foreign);
    const a = await answerCertificateInstallation(req.body, { pki, now });
    issuedKeys.push(a.contract.keyPem);
    await expect(installContract({ operation: 'installation', response: a.body, header: { Signature: a.signature }, trust, keys, now }))
      .rejects.toMatchObject({ code: 'CONTRACT_DECRYPT_FAILED', details: { path: 'direct', cause: 'TPM_BLOB_INTEGRITY' } });
    expect(await contractFiles()).toEqual(before);
    expect(await contractSigns(current.certificatePem)).toBe(true);
  }, TEST_TIMEOUT_MS);

  it('the contract key does ECDH only under the state policy: without a policy session the TPM refuses (userWithAuth clear)', async () => {
    await keys.arm(); // caches the contract key's context in the run dir
    const peer = createECDH('prime256v1');
    peer.generateKeys();
    const tpm = await lab.driver(); // another process on the same TPM and run dir
    await expect(tpm.ecdhZGen({ context: `contract-${current.contractKeyId}` }, { kind: 'empty' }, eccPointOfUncompressed(new Uint8Array(peer.getPublicKey()))))
      .rejects.toMatchObject({ code: 'TPM_AUTH_UNAVAILABLE', details: { rc: '0x12F' } });
    expect(await contractSigns(current.certificatePem)).toBe(true); // the key service re-arms after the other process's flush
  }, TEST_TIMEOUT_MS);

  it('on the TPM bus neither Z, the AES key nor the contract key travel in clear (ISO path; salted sessions encrypt ZGen\'s result)', async () => {
    await keys.close(); // one TPM user at a time (no resource manager): the tapped key service takes over
    const bus = await TpmBusTap.start(lab.swtpm.port, lab.swtpm.ctrlPort);
    const tpm = await Tpm2Tools.open({ tcti: bus.tcti, runDir: join(lab.base, 'tap-run') });
    const tapped = await KeyService.open({ ...(await lab.deps()), tpm }, { reclaim: true });
    try {
      // the CPS side with a known ephemeral key, so the test knows Z and the AES key
      const contractKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const scalar = Buffer.from((contractKey.privateKey.export({ format: 'jwk' }) as { d: string }).d, 'base64url');
      issuedKeys.push(contractKey.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
      const ephemeral = createECDH('prime256v1');
      ephemeral.generateKeys();
      const provisioningPoint = new X509Certificate(Buffer.from(provCompat.der)).publicKey.export({ format: 'jwk' }) as { x: string; y: string };
      const zx = ephemeral.computeSecret(Buffer.concat([Buffer.of(4), Buffer.from(provisioningPoint.x, 'base64url'), Buffer.from(provisioningPoint.y, 'base64url')]));
      const { dhPublicKey, encryptedPrivateKey } = isoEncryptPrivateKey(scalar, createPublicKey(record.oemProvisioningKey!.publicKeyPem), randomBytes(16), ephemeral.getPrivateKey());
      const aesKey = Buffer.from(isoKdf(zx));
      bus.clear();
      const imported = await tapped.importIsoEncryptedContractKey({
        ecdhKey: 'provisioning', dhPublicKey, encryptedPrivateKey, expectedPublicKeyPem: contractKey.publicKey.export({ type: 'spki', format: 'pem' }) as string,
      });
      expect(imported.path).toBe('compat');
      const traffic = bus.bytes;
      expect(traffic.length).toBeGreaterThan(2000);
      // control: the tap sees the commands — TPM2_Import's objectPublic (not a first parameter, so not encrypted) carries
      // the contract key's public x-coordinate (the ZGen input point is a first parameter: encrypted as well)
      const x = Buffer.from((contractKey.publicKey.export({ format: 'jwk' }) as { x: string }).x, 'base64url');
      expect(traffic.includes(x)).toBe(true);
      expect(traffic.includes(Buffer.from(dhPublicKey.subarray(1, 33)))).toBe(false);
      for (const [what, secret] of [['Z.x', zx], ['AES key', aesKey], ['contract scalar', scalar]] as const) {
        expect(traffic.includes(secret.subarray(0, 12)), what).toBe(false);
      }
      expect(imported.superseded).toEqual([current.contractKeyId]);
    } finally {
      await tapped.close();
      await tpm.close();
      await bus.close();
    }
  }, TEST_TIMEOUT_MS);

  it('no file in the data or run dir holds a contract private key in clear', async () => {
    expect(issuedKeys.length).toBeGreaterThanOrEqual(12);
    const needles: { what: string; bytes: Buffer }[] = [];
    for (const [i, pem] of issuedKeys.entries()) {
      const d = Buffer.from((createPrivateKey(pem).export({ format: 'jwk' }) as { d: string }).d, 'base64url');
      needles.push({ what: `contract key ${i}`, bytes: d }, { what: `contract key ${i} (hex)`, bytes: Buffer.from(d.toString('hex')) },
        { what: `contract key ${i} (base64)`, bytes: Buffer.from(d.toString('base64')) });
    }
    const files = [...(await filesUnder(lab.dataDir)), ...(await filesUnder(lab.runDir))];
    const active = (await readFile(join(lab.dataDir, DATA.activeContractKey), 'utf8')).trim();
    expect(files.some((f) => f.endsWith(`${active}.priv`))).toBe(true);
    const findings: string[] = [];
    for (const f of files) {
      const content = await readFile(f);
      if (content.includes('PRIVATE KEY')) findings.push(`${f}: PEM private key`);
      for (const n of needles) if (content.includes(n.bytes)) findings.push(`${f}: ${n.what}`);
    }
    expect(findings).toEqual([]);
    // the scan finds what it looks for
    expect(Buffer.from(issuedKeys[0]!).includes('PRIVATE KEY')).toBe(true);
    // and no leftover FIFO (not a regular file: listed separately) or ECDH / proof context
    const all = async (dir: string): Promise<string[]> => (await readdir(dir, { withFileTypes: true, recursive: true })).map((e) => join(e.parentPath, e.name));
    expect([...(await all(lab.runDir)), ...(await all(lab.dataDir))].filter((f) => /z\.fifo|ecdh-|contract-proof-/.test(f))).toEqual([]);
  });
});
