import { beforeAll, describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { chainDer, chainsOf, generateTestPki, issue, negativeSamples, type NegativeSamples, type TestPki } from './generate.ts';
import { parseCert } from './cert.ts';
import { UnknownRootError, validateChain } from './validate.ts';

let pki: TestPki;
let neg: NegativeSamples;
beforeAll(async () => {
  pki = await generateTestPki();
  neg = await negativeSamples(pki);
});

const now = () => new Date();
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isEvccError(err)) return err.code;
    throw err;
  }
  return 'OK';
}

describe('validateChain (our path validation)', () => {
  it('accepts every chain of the test PKI against its own root', () => {
    for (const c of chainsOf(pki)) {
      const r = validateChain(chainDer(c), { anchors: [c.root.der], now: now(), purpose: c.purpose });
      expect(r.anchor.fingerprint, c.name).toBe(parseCert(c.root.der).fingerprint);
      expect(r.path[0]!.subject).toBe(c.leaf.cert.subject);
    }
  });

  it('reports an unknown root with the issuer DN and AKI of the top presented certificate', () => {
    const presented = [pki.b.seccLeaf.der, pki.b.cpoSub2.der, pki.b.cpoSub1.der];
    let err: unknown;
    try {
      validateChain(presented, { anchors: [pki.a.root.der], now: now(), purpose: 'secc-tls' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnknownRootError);
    const u = err as UnknownRootError;
    expect(u.code).toBe('PKI_UNKNOWN_ROOT');
    expect(u.issuerDn).toBe(pki.b.root.cert.subject);
    expect(u.authorityKeyId).toBe(parseCert(pki.b.root.der).subjectKeyId);
    expect(u.topSubjectDn).toBe(pki.b.cpoSub1.cert.subject);
    expect(u.presentedChain.map((d) => Buffer.from(d).toString('hex'))).toEqual(presented.map((d) => Buffer.from(d).toString('hex')));
  });

  it('accepts PKI-B through the cross-certificate (Solution A) with only root A installed', () => {
    const presented = [pki.b.seccLeaf.der, pki.b.cpoSub2.der, pki.b.cpoSub1.der, pki.crossBbyA.der];
    const r = validateChain(presented, { anchors: [pki.a.root.der], now: now(), purpose: 'secc-tls' });
    expect(r.viaCrossCertificate).toBe(true);
    expect(r.anchor.subject).toBe(pki.a.root.cert.subject);
  });

  it('does not trust a root the peer sends along unless it is installed', () => {
    const presented = [pki.b.seccLeaf.der, pki.b.cpoSub2.der, pki.b.cpoSub1.der, pki.b.root.der];
    expect(codeOf(() => validateChain(presented, { anchors: [pki.a.root.der], now: now(), purpose: 'secc-tls' }))).toBe('PKI_UNKNOWN_ROOT');
  });

  it('rejects each broken chain with its own code', () => {
    const anchors = [pki.a.root.der];
    const v = (c: typeof neg.expiredLeaf) => codeOf(() => validateChain(chainDer(c), { anchors, now: now(), purpose: 'secc-tls' }));
    expect(v(neg.expiredLeaf)).toBe('PKI_CERT_EXPIRED');
    expect(v(neg.wrongKeyUsageLeaf)).toBe('PKI_KEY_USAGE');
    expect(v(neg.throughNonCa)).toBe('PKI_NOT_CA');
    expect(v(neg.selfSignedLeaf)).toBe('PKI_SELF_SIGNED_LEAF');
  });

  it('enforces pathLen, signatures and the leaf role', async () => {
    // A third CA level under Sub-CA 2 (pathLen 0).
    const sub3 = await issue({ name: 'x', role: 'cpo-sub-ca-2', subject: 'CN=Sub-CA 3', issuer: pki.a.cpoSub2 });
    const leaf = await issue({ name: 'y', role: 'secc-leaf', subject: 'CN=deep leaf', issuer: sub3 });
    const o = { anchors: [pki.a.root.der], now: now(), purpose: 'secc-tls' as const };
    expect(codeOf(() => validateChain([leaf.der, sub3.der, pki.a.cpoSub2.der, pki.a.cpoSub1.der], o))).toBe('PKI_PATH_LENGTH');
    // Bit flip in the signature of the leaf.
    const bad = Uint8Array.from(pki.a.seccLeaf.der);
    bad[bad.length - 5]! ^= 0x01;
    expect(codeOf(() => validateChain([bad, pki.a.cpoSub2.der, pki.a.cpoSub1.der], o))).toMatch(/PKI_BAD_SIGNATURE|PKI_CERT_MALFORMED/);
    // A CPS leaf is not a SECC certificate (no keyAgreement).
    expect(codeOf(() => validateChain([pki.cps.leaf.der, pki.cps.sub2.der, pki.cps.sub1.der], o))).toBe('PKI_KEY_USAGE');
    // Expiry is judged at the given time.
    const later = new Date(Date.now() + 5000 * 86_400_000);
    expect(codeOf(() => validateChain(chainDer(chainsOf(pki)[0]!), { ...o, now: later }))).toBe('PKI_CERT_EXPIRED');
  });

  it('answers hostile input with typed errors', () => {
    const o = { anchors: [pki.a.root.der], now: now(), purpose: 'secc-tls' as const };
    expect(codeOf(() => validateChain([], o))).toBe('PKI_CHAIN_EMPTY');
    expect(codeOf(() => validateChain([new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00])], o))).toBe('PKI_CERT_MALFORMED');
    expect(codeOf(() => validateChain([new Uint8Array(5000)], o))).toBe('PKI_CERT_MALFORMED');
    expect(codeOf(() => validateChain(Array(7).fill(pki.a.seccLeaf.der), o))).toBe('PKI_CHAIN_TOO_LONG');
  });
});
