/**
 * The ISO 15118-2 test PKI, generated with @peculiar/x509 (P-256, ecdsa-with-SHA256, profiles of `profiles.ts`):
 * two independent V2G PKIs (A and B) each with CPO Sub-CA 1/2 and a SECC leaf, the OEM chain with the provisioning
 * certificate (storage-key extension) and the ISO 15118-20 vehicle certificate, the MO chain with a contract
 * certificate, a CPS chain under V2G root A, and the Solution A cross-certificates between the two V2G roots
 * (root B's key signed by root A, and root A's key signed by root B).
 *
 * Everything here is TEST material for benches and tests: the private keys are returned (PKCS#8 PEM) so that
 * `evcc pki init` can write them next to the certificates. A vehicle never keeps plaintext keys in its data dir.
 * `negativeSamples()` issues the deliberately broken SECC chains the rejection tests need.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { CERT_PROFILES, OID_STORAGE_KEY_EXTENSION, type CertRole } from './profiles.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface IssuedCert {
  /** File stem, e.g. `pki-a/secc-leaf`. */
  name: string;
  role: CertRole;
  cert: x509.X509Certificate;
  der: Uint8Array;
  pem: string;
  keys: CryptoKeyPair;
  /** PKCS#8 PEM of the private key: TEST material only. */
  keyPem: string;
}

export interface V2gPki {
  root: IssuedCert;
  cpoSub1: IssuedCert;
  cpoSub2: IssuedCert;
  seccLeaf: IssuedCert;
}

export interface TestPki {
  a: V2gPki;
  b: V2gPki;
  /** Root B's subject and key, issued by root A (Solution A of Kilic 2023, ISO 15118-20 cross-certificate). */
  crossBbyA: IssuedCert;
  /** The other direction: root A's subject and key, issued by root B. */
  crossAbyB: IssuedCert;
  oem: { root: IssuedCert; sub1: IssuedCert; sub2: IssuedCert; provisioning: IssuedCert; vehicle: IssuedCert };
  mo: { root: IssuedCert; sub1: IssuedCert; sub2: IssuedCert; contract: IssuedCert };
  cps: { sub1: IssuedCert; sub2: IssuedCert; leaf: IssuedCert };
}

export interface IssueOptions {
  name: string;
  role: CertRole;
  subject: string;
  issuer?: IssuedCert; // absent = self-signed
  /** Reuse a key pair (cross-certificates certify an existing key). */
  keys?: CryptoKeyPair;
  notBefore?: Date;
  notAfter?: Date;
  /** Override the profile's key usage / CA flags: used only to build negative samples. */
  keyUsage?: number;
  ca?: boolean;
  pathLen?: number | null;
  extraExtensions?: x509.Extension[];
  now?: Date;
}

function serial(): string {
  const b = randomBytes(8);
  b[0] = (b[0]! & 0x7f) | 0x01; // positive, no leading zero
  return b.toString('hex');
}

async function keyPem(keys: CryptoKeyPair): Promise<string> {
  const pkcs8 = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as webcrypto.CryptoKey));
  const b64 = Buffer.from(pkcs8).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

export async function newKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
}

/** DER of an OCTET STRING (short or long form length), the inner value of the storage-key extension. */
function octetString(content: Uint8Array): Uint8Array {
  const len = content.length;
  const head = len < 0x80 ? [0x04, len] : len < 0x100 ? [0x04, 0x81, len] : [0x04, 0x82, len >> 8, len & 0xff];
  return Uint8Array.from([...head, ...content]);
}

/** Issues one certificate according to its role's ISO 15118-2 profile. */
export async function issue(o: IssueOptions): Promise<IssuedCert> {
  const profile = CERT_PROFILES[o.role];
  const keys = o.keys ?? (await newKeyPair());
  const now = o.now ?? new Date();
  // Back-date by an hour: tolerate small clock differences between the test PKI host and the peers.
  const notBefore = o.notBefore ?? new Date(now.getTime() - 3_600_000);
  const notAfter = o.notAfter ?? new Date(notBefore.getTime() + profile.validityDays * DAY_MS);
  const ca = o.ca ?? profile.ca;
  const pathLen = o.pathLen === null ? undefined : (o.pathLen ?? profile.pathLen);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(ca, ca ? pathLen : undefined, true),
    new x509.KeyUsagesExtension(o.keyUsage ?? profile.keyUsage, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (o.issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(o.issuer.keys.publicKey));
  extensions.push(...(o.extraExtensions ?? []));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: o.subject,
    issuer: o.issuer ? o.issuer.cert.subject : o.subject,
    notBefore,
    notAfter,
    signingAlgorithm: SIGN,
    publicKey: keys.publicKey,
    signingKey: (o.issuer ?? { keys }).keys.privateKey,
    extensions,
  });
  return {
    name: o.name,
    role: o.role,
    cert,
    der: new Uint8Array(cert.rawData),
    pem: cert.toString('pem') + '\n',
    keys,
    keyPem: await keyPem(keys),
  };
}

async function v2gPki(tag: 'A' | 'B', now: Date): Promise<V2gPki> {
  const dir = `pki-${tag.toLowerCase()}`;
  const root = await issue({ name: `${dir}/v2g-root`, role: 'v2g-root', subject: `CN=V2G Root CA ${tag}, O=EVCC Test PKI ${tag}, C=DE, DC=V2G`, now });
  const cpoSub1 = await issue({ name: `${dir}/cpo-sub-ca-1`, role: 'cpo-sub-ca-1', subject: `CN=CPO Sub-CA 1 ${tag}, O=EVCC Test CPO ${tag}, C=DE, DC=V2G`, issuer: root, now });
  const cpoSub2 = await issue({ name: `${dir}/cpo-sub-ca-2`, role: 'cpo-sub-ca-2', subject: `CN=CPO Sub-CA 2 ${tag}, O=EVCC Test CPO ${tag}, C=DE, DC=V2G`, issuer: cpoSub1, now });
  const seccLeaf = await issue({ name: `${dir}/secc-leaf`, role: 'secc-leaf', subject: `CN=DE*T${tag}*E0001, O=EVCC Test CPO ${tag}, C=DE, DC=CPO`, issuer: cpoSub2, now });
  return { root, cpoSub1, cpoSub2, seccLeaf };
}

export async function generateTestPki(options: { now?: Date; storageKeyData?: Uint8Array } = {}): Promise<TestPki> {
  const now = options.now ?? new Date();
  const a = await v2gPki('A', now);
  const b = await v2gPki('B', now);
  const crossBbyA = await issue({
    name: 'cross/pki-b-root-by-pki-a', role: 'cross-root', subject: b.root.cert.subject, keys: b.root.keys, issuer: a.root, now,
  });
  const crossAbyB = await issue({
    name: 'cross/pki-a-root-by-pki-b', role: 'cross-root', subject: a.root.cert.subject, keys: a.root.keys, issuer: b.root, now,
  });

  const oemRoot = await issue({ name: 'oem/oem-root', role: 'oem-root', subject: 'CN=OEM Root CA, O=EVCC Test OEM, C=DE', now });
  const oemSub1 = await issue({ name: 'oem/oem-sub-ca-1', role: 'oem-sub-ca-1', subject: 'CN=OEM Sub-CA 1, O=EVCC Test OEM, C=DE', issuer: oemRoot, now });
  const oemSub2 = await issue({ name: 'oem/oem-sub-ca-2', role: 'oem-sub-ca-2', subject: 'CN=OEM Sub-CA 2, O=EVCC Test OEM, C=DE', issuer: oemSub1, now });
  const storageKey = options.storageKeyData ?? randomBytes(32);
  const provisioning = await issue({
    name: 'oem/oem-provisioning', role: 'oem-provisioning', subject: 'CN=WMIV0000000000001, O=EVCC Test OEM, C=DE', issuer: oemSub2, now,
    extraExtensions: [new x509.Extension(OID_STORAGE_KEY_EXTENSION, false, Uint8Array.from(octetString(storageKey)))],
  });
  const vehicle = await issue({ name: 'oem/vehicle', role: 'vehicle', subject: 'CN=EVCC-TEST-VEHICLE-1, O=EVCC Test OEM, C=DE', issuer: oemSub2, now });

  const moRoot = await issue({ name: 'mo/mo-root', role: 'mo-root', subject: 'CN=MO Root CA, O=EVCC Test MO, C=DE, DC=MO', now });
  const moSub1 = await issue({ name: 'mo/mo-sub-ca-1', role: 'mo-sub-ca-1', subject: 'CN=MO Sub-CA 1, O=EVCC Test MO, C=DE, DC=MO', issuer: moRoot, now });
  const moSub2 = await issue({ name: 'mo/mo-sub-ca-2', role: 'mo-sub-ca-2', subject: 'CN=MO Sub-CA 2, O=EVCC Test MO, C=DE, DC=MO', issuer: moSub1, now });
  const contract = await issue({ name: 'mo/contract', role: 'contract', subject: 'CN=DEEVCC000000001, O=EVCC Test MO, C=DE, DC=MO', issuer: moSub2, now });

  const cpsSub1 = await issue({ name: 'cps/cps-sub-ca-1', role: 'cps-sub-ca-1', subject: 'CN=CPS Sub-CA 1, O=EVCC Test CPS, C=DE, DC=V2G', issuer: a.root, now });
  const cpsSub2 = await issue({ name: 'cps/cps-sub-ca-2', role: 'cps-sub-ca-2', subject: 'CN=CPS Sub-CA 2, O=EVCC Test CPS, C=DE, DC=V2G', issuer: cpsSub1, now });
  const cpsLeaf = await issue({ name: 'cps/cps-leaf', role: 'cps-leaf', subject: 'CN=CPS Leaf, O=EVCC Test CPS, C=DE, DC=CPS', issuer: cpsSub2, now });

  return {
    a, b, crossBbyA, crossAbyB,
    oem: { root: oemRoot, sub1: oemSub1, sub2: oemSub2, provisioning, vehicle },
    mo: { root: moRoot, sub1: moSub1, sub2: moSub2, contract },
    cps: { sub1: cpsSub1, sub2: cpsSub2, leaf: cpsLeaf },
  };
}

/** A chain as it is sent or stored: leaf first, then issuing CAs up to (excluding) the root. */
export interface ChainSpec {
  /** What the chain is for, e.g. `secc-a`. */
  name: string;
  leaf: IssuedCert;
  intermediates: IssuedCert[];
  root: IssuedCert;
  purpose: 'secc-tls' | 'vehicle-tls' | 'contract' | 'oem-provisioning' | 'cps';
}

/** Every chain the test PKI contains (the `openssl verify -x509_strict` check walks exactly this list). */
export function chainsOf(pki: TestPki): ChainSpec[] {
  return [
    { name: 'secc-a', leaf: pki.a.seccLeaf, intermediates: [pki.a.cpoSub2, pki.a.cpoSub1], root: pki.a.root, purpose: 'secc-tls' },
    { name: 'secc-b', leaf: pki.b.seccLeaf, intermediates: [pki.b.cpoSub2, pki.b.cpoSub1], root: pki.b.root, purpose: 'secc-tls' },
    { name: 'secc-b-via-cross', leaf: pki.b.seccLeaf, intermediates: [pki.b.cpoSub2, pki.b.cpoSub1, pki.crossBbyA], root: pki.a.root, purpose: 'secc-tls' },
    { name: 'secc-a-via-cross', leaf: pki.a.seccLeaf, intermediates: [pki.a.cpoSub2, pki.a.cpoSub1, pki.crossAbyB], root: pki.b.root, purpose: 'secc-tls' },
    { name: 'oem-provisioning', leaf: pki.oem.provisioning, intermediates: [pki.oem.sub2, pki.oem.sub1], root: pki.oem.root, purpose: 'oem-provisioning' },
    { name: 'vehicle', leaf: pki.oem.vehicle, intermediates: [pki.oem.sub2, pki.oem.sub1], root: pki.oem.root, purpose: 'vehicle-tls' },
    { name: 'contract', leaf: pki.mo.contract, intermediates: [pki.mo.sub2, pki.mo.sub1], root: pki.mo.root, purpose: 'contract' },
    { name: 'cps', leaf: pki.cps.leaf, intermediates: [pki.cps.sub2, pki.cps.sub1], root: pki.a.root, purpose: 'cps' },
  ];
}

/** Deliberately broken SECC chains (under PKI-A) for the rejection tests. Never part of `chainsOf`. */
export interface NegativeSamples {
  expiredLeaf: ChainSpec;
  wrongKeyUsageLeaf: ChainSpec;
  throughNonCa: ChainSpec;
  selfSignedLeaf: ChainSpec;
}

export async function negativeSamples(pki: TestPki, now = new Date()): Promise<NegativeSamples> {
  const { a } = pki;
  const subj = (what: string): string => `CN=DE*TA*${what}, O=EVCC Test CPO A, C=DE, DC=CPO`;
  const expired = await issue({
    name: 'negative/expired-leaf', role: 'secc-leaf', subject: subj('EXPIRED'), issuer: a.cpoSub2,
    notBefore: new Date(now.getTime() - 400 * DAY_MS), notAfter: new Date(now.getTime() - DAY_MS),
  });
  // Signature-capable (so the TLS handshake itself works) but without keyAgreement and with keyEncipherment:
  // not the ISO 15118-2 SECC profile.
  const wrongKu = await issue({
    name: 'negative/wrong-ku-leaf', role: 'secc-leaf', subject: subj('WRONGKU'), issuer: a.cpoSub2, now,
    keyUsage: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
  });
  // A second SECC leaf (CA:FALSE) used as if it were a CA.
  const nonCa = await issue({ name: 'negative/non-ca-issuer', role: 'secc-leaf', subject: subj('NONCA'), issuer: a.cpoSub2, now });
  const underNonCa = await issue({ name: 'negative/leaf-under-non-ca', role: 'secc-leaf', subject: subj('UNDERNONCA'), issuer: nonCa, now });
  const selfSigned = await issue({ name: 'negative/self-signed-leaf', role: 'secc-leaf', subject: subj('SELFSIGNED'), now });
  return {
    expiredLeaf: { name: 'expired-leaf', leaf: expired, intermediates: [a.cpoSub2, a.cpoSub1], root: a.root, purpose: 'secc-tls' },
    wrongKeyUsageLeaf: { name: 'wrong-ku-leaf', leaf: wrongKu, intermediates: [a.cpoSub2, a.cpoSub1], root: a.root, purpose: 'secc-tls' },
    throughNonCa: { name: 'through-non-ca', leaf: underNonCa, intermediates: [nonCa, a.cpoSub2, a.cpoSub1], root: a.root, purpose: 'secc-tls' },
    selfSignedLeaf: { name: 'self-signed-leaf', leaf: selfSigned, intermediates: [], root: a.root, purpose: 'secc-tls' },
  };
}

/** PEM bundle leaf-first (what a TLS peer sends). */
export function chainPem(chain: ChainSpec): string {
  return [chain.leaf, ...chain.intermediates].map((c) => c.pem).join('');
}
export function chainDer(chain: ChainSpec): Uint8Array[] {
  return [chain.leaf, ...chain.intermediates].map((c) => c.der);
}
