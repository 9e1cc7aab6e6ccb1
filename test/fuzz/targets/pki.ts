/**
 * X.509 parsing and certification path validation (firmware/pki): the chains a TLS peer presents, against anchors.
 * Seeds: every chain of the project's test PKI (firmware/pki/generate.ts) and its negative samples, each with its
 * anchor. Mutations: DER edits of one certificate (bit flips, truncation, TLV length edits, splices), chains
 * reordered, cut, duplicated or padded with foreign certificates, anchors swapped, other purposes and times.
 * JSON cases: the presented chain, the anchors, purpose and time, so a case replays without the PKI it came from.
 */
import { parseCert, pemToDerList, derToPem } from '../../../firmware/pki/cert.ts';
import { chainDer, chainsOf, generateTestPki, negativeSamples, type ChainSpec, type TestPki } from '../../../firmware/pki/generate.ts';
import type { ValidationPurpose } from '../../../firmware/pki/profiles.ts';
import { validateChain } from '../../../firmware/pki/validate.ts';
import { FuzzOracleError, hex, int, mutateBytes, pick, randomBytes, typed, unhex, type CaseFile, type LengthField, type Rng, type Target } from '../core.ts';

export interface ChainCase {
  presented: Uint8Array[];
  anchors: Uint8Array[];
  purpose: ValidationPurpose;
  /** Validation time, ms since the epoch. */
  now: number;
}

const PURPOSES: ValidationPurpose[] = ['secc-tls', 'vehicle-tls', 'contract', 'oem-provisioning', 'cps'];
const DAY_MS = 86_400_000;

/** DER TLV length bytes (first few levels): where length edits bite. */
export function derLengthFields(b: Uint8Array): LengthField[] {
  const out: LengthField[] = [];
  const walk = (off: number, end: number, depth: number) => {
    while (off + 2 <= end && out.length < 48) {
      const lenAt = off + 1;
      let len = b[lenAt]!;
      let hdr = 2;
      if (len & 0x80) {
        const n = len & 0x7f;
        if (n === 0 || n > 2 || lenAt + n >= end) return;
        out.push({ offset: lenAt + 1, size: n as 1 | 2 });
        len = n === 1 ? b[lenAt + 1]! : (b[lenAt + 1]! << 8) | b[lenAt + 2]!;
        hdr += n;
      } else out.push({ offset: lenAt, size: 1 });
      const constructed = (b[off]! & 0x20) !== 0;
      if (constructed && depth < 4) walk(off + hdr, Math.min(end, off + hdr + len), depth + 1);
      off += hdr + len;
    }
  };
  walk(0, b.length, 0);
  return out;
}

export function chainSeeds(pki: TestPki, negative: ChainSpec[], now: number): ChainCase[] {
  const chains = [...chainsOf(pki), ...negative];
  return chains.map((c) => ({ presented: chainDer(c), anchors: [c.root.der], purpose: c.purpose, now }));
}

function mutateChain(rng: Rng, seed: ChainCase, pool: readonly Uint8Array[]): ChainCase {
  let presented = [...seed.presented];
  let anchors = [...seed.anchors];
  let { purpose, now } = seed;
  for (let rounds = 1 + int(rng, 3); rounds > 0; rounds--) {
    switch (int(rng, 8)) {
      case 0:
      case 1:
      case 2: { // DER edits of one presented certificate
        const i = int(rng, presented.length);
        const der = presented[i]!;
        presented[i] = mutateBytes(rng, der, { lengthFields: derLengthFields, others: pool });
        break;
      }
      case 3: // DER edits of an anchor
        if (anchors.length) {
          const i = int(rng, anchors.length);
          anchors[i] = mutateBytes(rng, anchors[i]!, { lengthFields: derLengthFields, others: pool });
        }
        break;
      case 4: { // reorder, cut, duplicate
        const r = int(rng, 3);
        if (r === 0) presented = presented.sort(() => rng() - 0.5);
        else if (r === 1) presented = presented.slice(0, int(rng, presented.length + 1));
        else presented.push(pick(rng, presented.length ? presented : pool));
        break;
      }
      case 5: // a foreign certificate in the chain or among the anchors
        if (rng() < 0.5) presented.splice(int(rng, presented.length + 1), 0, pick(rng, pool));
        else anchors.push(pick(rng, pool));
        break;
      case 6: // anchors: none, all, swapped
        anchors = pick(rng, [[], [...pool], [pick(rng, pool)], anchors]);
        break;
      default: // purpose and time
        purpose = pick(rng, PURPOSES);
        now = seed.now + pick(rng, [-400, -2, 0, 1, 40, 400, 4000, 40_000]) * DAY_MS;
        break;
    }
  }
  if (rng() < 0.05) presented.push(randomBytes(rng, 400));
  return { presented: presented.slice(0, 8), anchors: anchors.slice(0, 8), purpose, now };
}

export function runChain(c: ChainCase): 'ok' | 'rejected' {
  const parsed = c.presented.map((der) => typed(() => parseCert(der)));
  const r = typed(() => {
    const v = validateChain(c.presented, { anchors: c.anchors, now: new Date(c.now), purpose: c.purpose });
    // A validated path starts at the presented leaf and ends at one of the anchors.
    if (v.path[0]!.der.length !== c.presented[0]!.length || !Buffer.from(v.path[0]!.der).equals(Buffer.from(c.presented[0]!))) throw new FuzzOracleError('path does not start at the leaf');
    if (!c.anchors.some((a) => Buffer.from(a).equals(Buffer.from(v.anchor.der)))) throw new FuzzOracleError('path ends at a certificate that is not an anchor');
  });
  // PEM round trip of what parses: the text form decodes to the same DER.
  const first = c.presented[0];
  if (first && parsed[0] === 'ok') {
    const back = pemToDerList(derToPem(first));
    if (back.length !== 1 || !Buffer.from(back[0]!).equals(Buffer.from(first))) throw new FuzzOracleError('PEM round trip changed the DER');
  }
  return r;
}

export const chainToFile = (c: ChainCase): CaseFile => ({
  ext: 'json',
  data: { presented: c.presented.map(hex), anchors: c.anchors.map(hex), purpose: c.purpose, now: new Date(c.now).toISOString() },
});
export function chainFromFile(f: CaseFile): ChainCase {
  const d = f.data as { presented: string[]; anchors: string[]; purpose: ValidationPurpose; now: string };
  return { presented: d.presented.map(unhex), anchors: d.anchors.map(unhex), purpose: d.purpose, now: Date.parse(d.now) };
}

export async function x509(): Promise<Target<ChainCase>> {
  const now = Date.now();
  const pki = await generateTestPki({ now: new Date(now) });
  const neg = await negativeSamples(pki, new Date(now));
  const negative = [neg.expiredLeaf, neg.wrongKeyUsageLeaf, neg.throughNonCa, neg.selfSignedLeaf];
  const seeds = chainSeeds(pki, negative, now);
  const pool = [...new Set(seeds.flatMap((s) => [...s.presented, ...s.anchors]))];
  return {
    name: 'x509',
    what: 'X.509 parsing and path validation (firmware/pki/cert.ts, validate.ts)',
    deterministicSeeds: false,
    seeds: () => seeds,
    generate: (rng, s) => mutateChain(rng, pick(rng, s), pool),
    run: runChain,
    toFile: chainToFile,
    fromFile: chainFromFile,
  };
}
