import { createECDH, generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeV2gMessage, encodeV2gMessage } from '../exi/index.ts';
import type { CertificateInstallationReqType, CertificateUpdateReqType } from '../exi/generated/iso2.ts';
import { generateTestPki, type TestPki } from '../pki/generate.ts';
import { answerCertificateInstallation, answerCertificateUpdate, issueProvisioningCertificate, type CpsForgery } from '../../sim/cps/index.ts';
import { installContract, type ContractKeyImporter } from './contract-install.ts';
import { fromDirectTransport, marshalEccPublic, privateScalarOf, type DirectTransport } from './duplicate.ts';
import { isoDecryptPrivateKey, isoKdf } from './iso-key-transport.ts';
import { EvccError } from '../../core/errors.ts';
import { TPMA } from './policy.ts';

/**
 * installContract's checks without a TPM: the CPS simulator answers, a software stand-in for the key service does
 * the ISO 15118-2 ECDH + KDF + AES-128-CBC with the test PKI's provisioning key (the TPM does it on the vehicle;
 * test/integration/contract-install.test.ts), and every forged answer is refused with its own code before the key
 * service is asked to import anything.
 */

/** What the key service saw; for the ISO path it really decrypts, with a software ECDH key. */
class SoftwareImporter implements ContractKeyImporter {
  readonly calls: string[] = [];
  constructor(private readonly ecdhKeys: Record<'provisioning' | 'contract', string>) {}

  async importIsoEncryptedContractKey(o: { ecdhKey: 'provisioning' | 'contract'; dhPublicKey: Uint8Array; encryptedPrivateKey: Uint8Array; expectedPublicKeyPem: string }) {
    this.calls.push(`iso:${o.ecdhKey}`);
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(privateScalarOf(this.ecdhKeys[o.ecdhKey])));
    const scalar = isoDecryptPrivateKey(isoKdf(new Uint8Array(ecdh.computeSecret(Buffer.from(o.dhPublicKey)))), o.encryptedPrivateKey);
    const mine = createECDH('prime256v1');
    mine.setPrivateKey(Buffer.from(scalar));
    const got = new Uint8Array(mine.getPublicKey());
    const want = spkiPoint(o.expectedPublicKeyPem);
    if (Buffer.compare(Buffer.from(got), Buffer.from(want)) !== 0) throw new EvccError('KEYS_KEY_MISMATCH', 'decrypted key is not the certified one');
    return { id: 'soft-compat', publicKeyPem: o.expectedPublicKeyPem, path: 'compat' as const, superseded: ['old'] };
  }

  async importCertifiedContractKey(t: DirectTransport, pem: string) {
    this.calls.push(`direct:${t.encryptedPrivateKey.length}:${t.dhPublicKey.length}`);
    void pem;
    return { id: 'soft-direct', publicKeyPem: pem, path: 'direct' as const, superseded: [] };
  }
}

function spkiPoint(pem: string): Uint8Array {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  return new Uint8Array(der.subarray(der.length - 65));
}

describe('installContract (CertificateInstallationRes / CertificateUpdateRes checks)', () => {
  let pki: TestPki;
  let trust: { v2gRoots: Uint8Array[]; moRoots: Uint8Array[] };
  let req: CertificateInstallationReqType;
  const now = new Date();

  beforeAll(async () => {
    pki = await generateTestPki({ now });
    trust = { v2gRoots: [pki.a.root.der], moRoots: [pki.mo.root.der] };
    req = { Id: 'id0', OEMProvisioningCert: Buffer.from(pki.oem.provisioning.der).toString('hex'), ListOfRootCertificateIDs: { RootCertificateID: [{ X509IssuerName: pki.a.root.cert.subject, X509SerialNumber: 1 }] } };
  });

  const importer = () => new SoftwareImporter({ provisioning: pki.oem.provisioning.keyPem, contract: pki.mo.contract.keyPem });

  it('installation, ISO 15118-2 path: verified, decrypted with the provisioning key, chain returned as the ISO-2 type', async () => {
    const a = await answerCertificateInstallation(req, { pki, now });
    expect(a.transport).toBe('compat');
    expect(a.body.ContractSignatureEncryptedPrivateKey.CONTENT).toHaveLength(96); // 48 bytes, the schema's maxLength
    const keys = importer();
    const r = await installContract({ operation: 'installation', response: a.body, header: { Signature: a.signature }, trust, keys, now });
    expect(keys.calls).toEqual(['iso:provisioning']);
    expect(r).toMatchObject({ emaid: 'DEEVCC000000001', contractKeyId: 'soft-compat', path: 'compat', signedInfoEncoding: 'xmldsig', supersededKeyIds: ['old'] });
    expect(r.certificateChain).toEqual(a.contract.certificateChain);
    expect(r.certificateChain.SubCertificates?.Certificate).toHaveLength(2);
    expect(r.certificatePem).toBe(a.contract.certificatePem.trim() + '\n');
    expect(r.chainPem.match(/BEGIN CERTIFICATE/g)).toHaveLength(3);
    expect(r.chainDer.map((d) => Buffer.from(d).toString('hex'))).toEqual([a.contract.certificateChain.Certificate, ...a.contract.certificateChain.SubCertificates!.Certificate]);
  });

  it('accepts the body element wrapped and a MsgDef-encoded SignedInfo (EVerest-style signer), and says so', async () => {
    const a = await answerCertificateInstallation(req, { pki, now, signedInfoEncoding: 'msgdef' });
    const r = await installContract({ operation: 'installation', response: { CertificateInstallationRes: a.body }, header: { Signature: a.signature }, trust, keys: importer(), now });
    expect(r.signedInfoEncoding).toBe('msgdef');
  });

  it('update: ECDH with the current contract key; the answer must be for the requested eMAID', async () => {
    const upd: CertificateUpdateReqType = { Id: 'id0', eMAID: 'DEEVCC000000001', ContractSignatureCertChain: { Certificate: Buffer.from(pki.mo.contract.der).toString('hex') }, ListOfRootCertificateIDs: req.ListOfRootCertificateIDs };
    const a = await answerCertificateUpdate(upd, { pki, now });
    const keys = importer();
    const r = await installContract({ operation: 'update', response: a.body, header: { Signature: a.signature }, trust, keys, now, expectedEmaid: 'DE-EVCC-000000001' });
    expect(keys.calls).toEqual(['iso:contract']);
    expect(r.emaid).toBe('DEEVCC000000001');
    const other = importer();
    await expect(installContract({ operation: 'update', response: a.body, header: { Signature: a.signature }, trust, keys: other, now, expectedEmaid: 'DEEVCC000000002' }))
      .rejects.toMatchObject({ code: 'CONTRACT_EMAID_MISMATCH' });
    expect(other.calls).toEqual([]);
  });

  const refusals: [CpsForgery, string, string?][] = [
    ['wrong-cps-signer', 'CONTRACT_SIGNATURE_INVALID', 'XMLDSIG_BAD_SIGNATURE'],
    ['tampered-after-signing', 'CONTRACT_SIGNATURE_INVALID', 'XMLDSIG_DIGEST_MISMATCH'],
    ['partial-signature', 'CONTRACT_SIGNATURE_INVALID'],
    ['cps-chain-unknown-root', 'CONTRACT_CPS_CHAIN_INVALID', 'PKI_UNKNOWN_ROOT'],
    ['contract-chain-unknown-root', 'CONTRACT_CHAIN_INVALID', 'PKI_UNKNOWN_ROOT'],
    ['emaid-mismatch', 'CONTRACT_EMAID_MISMATCH'],
  ];
  for (const [forge, code, cause] of refusals) {
    it(`${forge} → ${code} before the key service is asked`, async () => {
      const a = await answerCertificateInstallation(req, { pki, now, forge });
      const keys = importer();
      const err = await installContract({ operation: 'installation', response: a.body, header: { Signature: a.signature }, trust, keys, now }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code, ...(cause ? { details: expect.objectContaining({ cause }) } : {}) });
      expect(keys.calls).toEqual([]);
    });
  }

  it('key-mismatch (ISO path): the decrypted key is not the certificate\'s → CONTRACT_KEY_MISMATCH', async () => {
    const a = await answerCertificateInstallation(req, { pki, now, forge: 'key-mismatch' });
    await expect(installContract({ operation: 'installation', response: a.body, header: { Signature: a.signature }, trust, keys: importer(), now }))
      .rejects.toMatchObject({ code: 'CONTRACT_KEY_MISMATCH', details: { path: 'compat', cause: 'KEYS_KEY_MISMATCH' } });
  });

  it('no header signature, a CPS chain under V2G root B only, a FAILED answer: each refused', async () => {
    const a = await answerCertificateInstallation(req, { pki, now });
    await expect(installContract({ operation: 'installation', response: a.body, header: {}, trust, keys: importer(), now })).rejects.toMatchObject({ code: 'CONTRACT_SIGNATURE_INVALID' });
    await expect(installContract({ operation: 'installation', response: a.body, header: { Signature: a.signature }, trust: { v2gRoots: [pki.b.root.der] }, keys: importer(), now }))
      .rejects.toMatchObject({ code: 'CONTRACT_CPS_CHAIN_INVALID' });
    // contract chain to the MO root only: without the MO root installed it does not validate
    await expect(installContract({ operation: 'installation', response: a.body, header: { Signature: a.signature }, trust: { v2gRoots: [pki.a.root.der] }, keys: importer(), now }))
      .rejects.toMatchObject({ code: 'CONTRACT_CHAIN_INVALID' });
    await expect(installContract({ operation: 'installation', response: { ...a.body, ResponseCode: 'FAILED_NoCertificateAvailable' }, header: { Signature: a.signature }, trust, keys: importer(), now }))
      .rejects.toMatchObject({ code: 'CONTRACT_RESPONSE_MALFORMED' });
  });

  it('direct transport: storage-key extension → duplicate in ContractSignatureEncryptedPrivateKey (EXI with ignoreLengthFacets), routed to the direct import', async () => {
    // A software stand-in for the vehicle: provisioning key pair and a storage key's public area.
    const prov = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const stk = createECDH('prime256v1');
    stk.generateKeys();
    const p = new Uint8Array(stk.getPublicKey());
    const area = marshalEccPublic({
      nameAlg: 0x000b, attributes: TPMA.fixedTPM | TPMA.fixedParent | TPMA.sensitiveDataOrigin | TPMA.restricted | TPMA.decrypt, authPolicy: new Uint8Array(32),
      symmetric: { alg: 0x0006, keyBits: 128, mode: 0x0043 }, scheme: { alg: 0x0010 }, curve: 0x0003, x: p.subarray(1, 33), y: p.subarray(33, 65),
    });
    const storageKeyPublic = Uint8Array.from([area.length >> 8, area.length & 0xff, ...area]);
    const cert = await issueProvisioningCertificate({ pki, now, publicKeyPem: prov.publicKey.export({ type: 'spki', format: 'pem' }) as string, storageKey: { storageKeyPublic, keysPolicy: new Uint8Array(32).fill(7) } });
    const a = await answerCertificateInstallation({ ...req, OEMProvisioningCert: Buffer.from(cert.der).toString('hex') }, { pki, now });
    expect(a.transport).toBe('direct');
    expect(a.encodeOptions.ignoreLengthFacets).toBe(true);
    const message = { Header: { SessionID: '0102030405060708', Signature: a.signature }, Body: { CertificateInstallationRes: a.body } };
    expect(() => encodeV2gMessage('iso2', message)).toThrow(/longer than the schema allows/);
    const decoded = decodeV2gMessage('iso2', encodeV2gMessage('iso2', message, a.encodeOptions));
    const keys = importer();
    const r = await installContract({ operation: 'installation', response: decoded.Body as Record<string, unknown>, header: decoded.Header, trust, keys, now });
    expect(keys.calls).toEqual(['direct:78:65']);
    expect(r.path).toBe('direct');
    // the duplicate re-frames into TPM2_Import inputs; the contract certificate carries the storage key on for updates
    const dup = fromDirectTransport({ encryptedPrivateKey: Buffer.from(a.body.ContractSignatureEncryptedPrivateKey.CONTENT, 'hex'), dhPublicKey: Buffer.from(a.body.DHpublickey.CONTENT, 'hex') }, storageKeyPublic);
    expect(dup.encryptedSeed).toHaveLength(2 + 2 + 32 + 2 + 32);
    const upd = await answerCertificateUpdate({ Id: 'id0', eMAID: r.emaid, ContractSignatureCertChain: r.certificateChain, ListOfRootCertificateIDs: req.ListOfRootCertificateIDs }, { pki, now });
    expect(upd.transport).toBe('direct');
  });

  it('the CPS refuses a request whose signature does not verify with the request certificate', async () => {
    const a = await answerCertificateInstallation(req, { pki, now });
    await expect(answerCertificateInstallation(req, { pki, now, requestSignature: a.signature })).rejects.toMatchObject({ code: 'CPS_REQUEST_SIGNATURE_INVALID' });
  });
});
