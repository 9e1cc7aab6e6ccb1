import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { approveRoot, rootApprovalsFile } from '../../deploy/oem-backend/approvals.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { generateTestPki, type TestPki } from './generate.ts';
import { parseRootApprovalsFile, RootApprovalVerifier, ROOT_APPROVAL_CONTEXT, rootApprovalSigningInput } from './root-approval.ts';

const signer = KeyObjectSigner.fromPem(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
const verifier = new RootApprovalVerifier([{ publicKey: createPublicKey(signer.publicKeyPem), keyId: signer.keyId, origin: 'release' }]);
let pki: TestPki;
beforeAll(async () => {
  pki = await generateTestPki();
});

describe('approved-V2G-root statement', () => {
  it('signs context, purpose, certificate SHA-256 and expiry: nothing vehicle- or request-specific', () => {
    const input = new TextDecoder().decode(rootApprovalSigningInput({ sha256: 'ab'.repeat(32), purpose: 'v2g-root', validUntil: '2030-01-01T00:00:00.000Z' }));
    expect(input).toBe(`${ROOT_APPROVAL_CONTEXT}\nv2g-root\n${'ab'.repeat(32)}\n2030-01-01T00:00:00.000Z`);
  });

  it('verifies until validUntil and not after; the OEM cannot extend it beyond the certificate', () => {
    const until = new Date(Date.now() + 3600_000);
    const a = approveRoot(signer, pki.a.root.der, { validUntil: until });
    expect(verifier.check(pki.a.root.der, a, new Date(until.getTime() - 1))).toMatchObject({ ok: true, key: { origin: 'release' } });
    expect(verifier.check(pki.a.root.der, a, new Date(until.getTime() + 1))).toMatchObject({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(approveRoot(signer, pki.a.root.der, { validUntil: new Date('2999-01-01') }).validUntil).toBe(pki.a.root.cert.notAfter.toISOString());
    // a later validUntil pasted in breaks the signature
    expect(verifier.check(pki.a.root.der, { ...a, validUntil: '2999-01-01T00:00:00.000Z' }, new Date())).toMatchObject({ ok: false, reason: 'OEM signature does not verify' });
  });

  it('check is total: any attacker-written value is a refusal, never an exception', () => {
    const good = approveRoot(signer, pki.a.root.der);
    fc.assert(fc.property(fc.anything(), (v) => verifier.check(pki.a.root.der, v, new Date()).ok === false));
    fc.assert(fc.property(fc.string(), fc.string(), (sig, validUntil) => verifier.check(pki.a.root.der, { ...good, sig, validUntil }, new Date()).ok === false));
  });

  it('the factory approvals file round-trips by certificate SHA-256; a malformed file is CONFIG_INVALID', () => {
    const file = rootApprovalsFile(signer, [pki.a.root.der, pki.b.root.der]);
    const byDigest = parseRootApprovalsFile(JSON.stringify(file));
    expect(byDigest.size).toBe(2);
    const a = byDigest.get(file.approvals[0]!.sha256)!;
    expect(verifier.check(pki.a.root.der, a, new Date()).ok).toBe(true);
    expect(verifier.check(pki.b.root.der, a, new Date()).ok).toBe(false);
    expect(() => parseRootApprovalsFile('{"format":"evcc-v2g-root-approvals/1","approvals":[{"sha256":"x"}]}')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => parseRootApprovalsFile('nope')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
