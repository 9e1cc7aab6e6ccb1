import { createHash, generateKeyPairSync, randomBytes, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decode, encode, encodeFragment, type Iso2 } from '../../firmware/exi/index.ts';
import { buildSignedInfo, referenceDigest, sign, signedInfoBytes, verify, verifyDetached, XmldsigError, type SignedElement, type Signer } from '../../firmware/exi/xmldsig/index.ts';
import { exiVectorsPath } from './exi-support.ts';

/** Must show 2 (issue #3): reference digests reproduced from the decoded messages; the given ECDSA signatures verify. */
interface SigVector {
  message: string;
  hex: string;
  references: { URI: string; element: string; DigestValue: string; cbv2g: { fragment_hex?: string } }[];
  signedinfo: { xmldsig_standalone_fragment_hex: string; msgdef_fragment_hex: string };
  SignatureValue: string;
  signer_certificate_der_hex?: string;
  ecdsa_valid_over?: { xmldsig_standalone_fragment: boolean; msgdef_fragment: boolean };
}

const vectors = JSON.parse(readFileSync(exiVectorsPath('exi-signatures.json'), 'utf8')) as SigVector[];
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const v2g = (v: SigVector): Iso2.V2G_MessageElement => (decode('iso2', new Uint8Array(Buffer.from(v.hex, 'hex'))) as { V2G_Message: Iso2.V2G_MessageElement }).V2G_Message;

function elementById(body: unknown, id: string, name = ''): SignedElement | undefined {
  if (Array.isArray(body)) return body.map((b) => elementById(b, id, name)).find(Boolean);
  if (!body || typeof body !== 'object') return undefined;
  if ((body as { Id?: string }).Id === id) return { [name]: body } as SignedElement;
  for (const [k, v] of Object.entries(body)) {
    const f = elementById(v, id, k);
    if (f) return f;
  }
  return undefined;
}

describe('xmldsig over EXI: public signature vectors', () => {
  it('has six signed messages, three with the signer certificate', () => {
    expect(vectors).toHaveLength(6);
    expect(vectors.filter((v) => v.signer_certificate_der_hex)).toHaveLength(3);
  });

  for (const v of vectors) {
    it(`${v.message}: every reference digest and both SignedInfo encodings are reproduced`, () => {
      const m = v2g(v);
      for (const ref of v.references) {
        const element = elementById(m.Body, ref.URI.slice(1));
        expect(element, ref.URI).toBeDefined();
        expect(Object.keys(element!)[0]).toBe(ref.element);
        const fragment = encodeFragment('iso2', element!, { ignoreLengthFacets: true });
        if (ref.cbv2g.fragment_hex) expect(hex(fragment)).toBe(ref.cbv2g.fragment_hex);
        expect(hex(referenceDigest(element!))).toBe(ref.DigestValue);
        expect(createHash('sha256').update(fragment).digest('hex')).toBe(ref.DigestValue);
      }
      const si = m.Header.Signature!.SignedInfo;
      expect(hex(signedInfoBytes(si, 'xmldsig'))).toBe(v.signedinfo.xmldsig_standalone_fragment_hex);
      expect(hex(signedInfoBytes(si, 'msgdef'))).toBe(v.signedinfo.msgdef_fragment_hex);
      expect(m.Header.Signature!.SignatureValue.CONTENT).toBe(v.SignatureValue);
    });
  }

  for (const v of vectors.filter((x) => x.signer_certificate_der_hex)) {
    it(`${v.message}: the ECDSA signature verifies with the signer certificate, over the encoding it was made on`, () => {
      const cert = new X509Certificate(Buffer.from(v.signer_certificate_der_hex!, 'hex'));
      const result = verify({ V2G_Message: v2g(v) }, cert);
      expect(result.references).toEqual(v.references.map((r) => r.URI.slice(1)));
      expect(result.signatureFormat).toBe('raw');
      expect(result.signedInfoEncoding).toBe(v.ecdsa_valid_over!.xmldsig_standalone_fragment ? 'xmldsig' : 'msgdef');
    });
  }

  it('a tampered signed element fails its digest; a wrong key fails the signature', () => {
    const v = vectors.find((x) => x.message === 'AuthorizationReq' && x.signer_certificate_der_hex)!;
    const cert = new X509Certificate(Buffer.from(v.signer_certificate_der_hex!, 'hex'));
    const m = v2g(v);
    const tampered = structuredClone(m);
    (tampered.Body as { AuthorizationReq: Iso2.AuthorizationReqType }).AuthorizationReq.GenChallenge = '00'.repeat(16);
    expect(() => verify({ V2G_Message: tampered }, cert)).toThrow(expect.objectContaining({ code: 'XMLDSIG_DIGEST_MISMATCH' }));
    const other = vectors.find((x) => x.message === 'CertificateInstallationReq')!;
    const otherCert = new X509Certificate(Buffer.from(other.signer_certificate_der_hex!, 'hex'));
    expect(() => verify({ V2G_Message: m }, otherCert)).toThrow(expect.objectContaining({ code: 'XMLDSIG_BAD_SIGNATURE' }));
  });
});

/**
 * A prehash ECDSA P-256 signer (what a TPM does: it signs the 32-byte digest it is handed). node:crypto has no
 * prehashed ECDSA sign, so the test does the curve arithmetic itself; verification uses node:crypto independently.
 */
function prehashSigner(privateKeyDer: Buffer): Signer {
  const p = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
  const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
  const G: [bigint, bigint] = [0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n, 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n];
  const mod = (a: bigint, m: bigint): bigint => ((a % m) + m) % m;
  const inv = (a: bigint, m: bigint): bigint => {
    let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
    while (r1 !== 0n) {
      const q = r0 / r1;
      [r0, r1] = [r1, r0 - q * r1];
      [s0, s1] = [s1, s0 - q * s1];
    }
    return mod(s0, m);
  };
  const add = (P: [bigint, bigint] | null, Q: [bigint, bigint] | null): [bigint, bigint] | null => {
    if (!P) return Q;
    if (!Q) return P;
    if (P[0] === Q[0] && mod(P[1] + Q[1], p) === 0n) return null;
    const l = P[0] === Q[0] ? mod(3n * P[0] * P[0] - 3n, p) * inv(2n * P[1], p) : mod(Q[1] - P[1], p) * inv(Q[0] - P[0], p);
    const x = mod(l * l - P[0] - Q[0], p);
    return [x, mod(l * (P[0] - x) - P[1], p)];
  };
  const mul = (k: bigint, P: [bigint, bigint]): [bigint, bigint] => {
    let R: [bigint, bigint] | null = null;
    let A: [bigint, bigint] | null = P;
    for (let e = k; e > 0n; e >>= 1n) {
      if (e & 1n) R = add(R, A);
      A = add(A, A);
    }
    return R!;
  };
  // PKCS#8 P-256: the 32-byte private scalar follows the OCTET STRING header 04 20 inside the ECPrivateKey.
  const at = privateKeyDer.indexOf(Buffer.from('0201010420', 'hex'));
  const d = BigInt(`0x${privateKeyDer.subarray(at + 5, at + 37).toString('hex')}`);
  const big = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).toString('hex')}`);
  const be32 = (x: bigint): Buffer => Buffer.from(x.toString(16).padStart(64, '0'), 'hex');
  return {
    async sign(digest32) {
      if (digest32.length !== 32) throw new Error('digest must be 32 bytes');
      const z = big(digest32);
      for (;;) {
        const k = mod(big(randomBytes(40)), n - 1n) + 1n;
        const r = mod(mul(k, G)[0], n);
        const s = mod(inv(k, n) * (z + r * d), n);
        if (r !== 0n && s !== 0n) return new Uint8Array(Buffer.concat([be32(r), be32(s)]));
      }
    },
  };
}

describe('xmldsig over EXI: signing through an injected Signer', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signer = prehashSigner(privateKey.export({ format: 'der', type: 'pkcs8' }));

  it('the stand-in signer is a real ECDSA P-256 signer (node:crypto verifies its output)', async () => {
    const data = Buffer.from('SignedInfo bytes');
    const sig = await signer.sign(createHash('sha256').update(data).digest());
    expect(cryptoVerify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig)).toBe(true);
  });

  it('signs a PnC AuthorizationReq (Id + GenChallenge), puts the signature in the header, and verifies after the wire', async () => {
    const body = { AuthorizationReq: { Id: 'id1', GenChallenge: '0102030405060708090a0b0c0d0e0f10' } };
    const signature = await sign([body], signer);
    expect(Buffer.from(signature.SignatureValue.CONTENT, 'hex')).toHaveLength(64);
    const message = { V2G_Message: { Header: { SessionID: '0011223344556677', Signature: signature }, Body: body } };
    const wire = encode('iso2', message);
    const back = decode('iso2', wire);
    expect(back).toEqual(message);
    expect(verify(back, publicKey)).toEqual({ references: ['id1'], signedInfoEncoding: 'xmldsig', signatureFormat: 'raw' });
    // The digest the signer saw is the SHA-256 of SignedInfo as a standalone-xmldsig fragment.
    expect(cryptoVerify('sha256', signedInfoBytes(buildSignedInfo([body])), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature.SignatureValue.CONTENT, 'hex'))).toBe(true);
  });

  it('refuses keys that are not EC P-256 and garbage signature values with typed errors', async () => {
    const body = { AuthorizationReq: { Id: 'id1', GenChallenge: '0102030405060708090a0b0c0d0e0f10' } };
    const signature = await sign([body], signer);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    expect(() => verifyDetached(signature, body, rsa)).toThrow(expect.objectContaining({ code: 'XMLDSIG_BAD_KEY' }));
    expect(() => verifyDetached(signature, body, new Uint8Array([1, 2, 3]))).toThrow(expect.objectContaining({ code: 'XMLDSIG_BAD_KEY' }));
    const garbage = { ...signature, SignatureValue: { CONTENT: '30'.repeat(70) } };
    expect(() => verifyDetached(garbage, body, publicKey)).toThrow(expect.objectContaining({ code: 'XMLDSIG_BAD_SIGNATURE' }));
    // As non-strict EXI can deliver it: an empty SignatureValue, a SignedInfo ended early.
    const empty = { ...signature, SignatureValue: {} } as unknown as typeof signature;
    expect(() => verifyDetached(empty, body, publicKey)).toThrow(expect.objectContaining({ code: 'XMLDSIG_BAD_SIGNATURE' }));
    const truncated = { ...signature, SignedInfo: { CanonicalizationMethod: signature.SignedInfo.CanonicalizationMethod } } as unknown as typeof signature;
    expect(() => verifyDetached(truncated, body, publicKey)).toThrow(expect.objectContaining({ code: 'XMLDSIG_BAD_SIGNATURE' }));
  });

  it('refuses a signer that returns DER or fails, and duplicate Ids in the body', async () => {
    const body = { AuthorizationReq: { Id: 'id1', GenChallenge: '0102030405060708090a0b0c0d0e0f10' } };
    await expect(sign([body], { sign: async () => new Uint8Array(70) })).rejects.toMatchObject({ code: 'XMLDSIG_SIGNER_FAILED' });
    await expect(sign([body], { sign: async () => { throw new Error('tpm down'); } })).rejects.toBeInstanceOf(XmldsigError);
    const signature = await sign([body], signer);
    const dup = { V2G_Message: { Header: { SessionID: '00', Signature: signature }, Body: { AuthorizationReq: body.AuthorizationReq, Extra: [{ Id: 'id1' }] } } };
    expect(() => verify(dup as unknown as Iso2.Document, publicKey)).toThrow(expect.objectContaining({ code: 'XMLDSIG_DUPLICATE_ID' }));
  });
});
