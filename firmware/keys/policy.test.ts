import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { decodeImportBlob, encodeImportBlob, kdfa, marshalEccPublic, objectName, parseEccPublic, wrapForImport } from './duplicate.ts';
import { externalEccName, nvCounterName, pcrSelection, policyAuthValue, toHex, u64be, ZERO_DIGEST } from './policy.ts';
import { approvedPolicy, checkSignedPolicy, parseSignedPolicy } from './signed-policy.ts';

describe('offline policy arithmetic (pure; TPM-checked in test/integration/tpm-negative.test.ts)', () => {
  it('PolicyAuthValue from the empty digest is the well-known value', () => {
    expect(toHex(policyAuthValue(ZERO_DIGEST))).toBe('8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e');
  });
  it('PCR 14 selection bytes are 00 40 00 (TPM.md §4)', () => {
    expect(toHex(pcrSelection([14]))).toBe('00000001000b03004000');
    expect(() => pcrSelection([24])).toThrow();
  });
  it('operandB is 8 bytes big-endian', () => {
    expect(toHex(u64be(2))).toBe('0000000000000002');
  });
  it('names are nameAlg-prefixed SHA-256 digests', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(toHex(externalEccName(publicKey.export({ type: 'spki', format: 'pem' }) as string))).toMatch(/^000b[0-9a-f]{64}$/);
    expect(toHex(nvCounterName(0x01800101))).toMatch(/^000b[0-9a-f]{64}$/);
  });
  it('approved policy changes with version and root file system', () => {
    const b = new Uint8Array(32).fill(1);
    const p1 = approvedPolicy({ version: 1, rootfsSha256: b, nvIndex: 0x01800101 }).policy;
    expect(toHex(approvedPolicy({ version: 2, rootfsSha256: b, nvIndex: 0x01800101 }).policy)).not.toBe(toHex(p1));
    expect(toHex(approvedPolicy({ version: 1, rootfsSha256: new Uint8Array(32), nvIndex: 0x01800101 }).policy)).not.toBe(toHex(p1));
  });
  it('KDFa yields the requested length', () => {
    expect(kdfa(new Uint8Array(32), 'STORAGE', new Uint8Array(34), new Uint8Array(0), 128).length).toBe(16);
  });
});

describe('import blobs and signed policies: hostile input', () => {
  const storage = marshalEccPublic({
    nameAlg: 0x000b, attributes: 0x00030072, authPolicy: new Uint8Array(32), symmetric: { alg: 0x0006, keyBits: 128, mode: 0x0043 },
    scheme: { alg: 0x0010 }, curve: 0x0003, x: new Uint8Array(32).fill(2), y: new Uint8Array(32).fill(3),
  });
  const storageTpm2b = Uint8Array.of(storage.length >> 8, storage.length & 0xff, ...storage);

  it('public areas round-trip through the parser', () => {
    const p = parseEccPublic(storageTpm2b);
    expect(p.symmetric).toEqual({ alg: 6, keyBits: 128, mode: 0x43 });
    expect(objectName(storageTpm2b).length).toBe(34);
  });
  it('refuses to wrap for a non-storage key', () => {
    const signKey = marshalEccPublic({ ...parseEccPublic(storageTpm2b), attributes: 1 << 18, symmetric: { alg: 0x0010 } });
    expect(() => wrapForImport(new Uint8Array(32).fill(1), { storageKeyPublic: Uint8Array.of(0, signKey.length, ...signKey), authPolicy: new Uint8Array(32) }))
      .toThrow(/restricted decryption/);
  });
  it('random bytes never make the TPM2B_PUBLIC parser throw a raw exception', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
      try {
        parseEccPublic(b);
      } catch (err) {
        expect(isEvccError(err, 'KEYS_BLOB_MALFORMED')).toBe(true);
      }
    }), { numRuns: 3000 });
  });
  it('import blob decoding refuses malformed documents with a typed error', () => {
    for (const bad of [null, 1, 'x', {}, { format: 'evcc-tpm-import/1' }, { format: 'evcc-tpm-import/1', storageKeyName: 'zz', public: '', duplicate: '', encryptedSeed: '' }]) {
      expect(() => decodeImportBlob(bad)).toThrow();
      try {
        decodeImportBlob(bad);
      } catch (err) {
        expect(isEvccError(err, 'KEYS_BLOB_MALFORMED')).toBe(true);
      }
    }
    const blob = encodeImportBlob({ public: storageTpm2b, duplicate: new Uint8Array(4), encryptedSeed: new Uint8Array(4) }, objectName(storageTpm2b));
    expect(decodeImportBlob(JSON.parse(JSON.stringify(blob))).storageKeyName.length).toBe(34);
  });
  it('signed policy parsing is strict', () => {
    expect(() => parseSignedPolicy({ format: 'evcc-signed-state-policy/1', version: -1 })).toThrow(/malformed/);
    fc.assert(fc.property(fc.jsonValue(), (v) => {
      try {
        parseSignedPolicy(v);
      } catch (err) {
        expect(isEvccError(err, 'POLICY_MALFORMED')).toBe(true);
      }
    }), { numRuns: 500 });
  });
  it('a signed policy whose digest does not match its fields is refused before any signature check', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const a = approvedPolicy({ version: 3, rootfsSha256: new Uint8Array(32).fill(9), nvIndex: 0x01800101 });
    const p = parseSignedPolicy({
      format: 'evcc-signed-state-policy/2', version: 3, bundle: { sha256: '08'.repeat(32) }, rootfs: { sha256: '09'.repeat(32), size: 4096 },
      pcrs: { bank: 'sha256', index: 14, value: toHex(a.pcrValue) },
      nv: { index: 0x01800101, name: toHex(nvCounterName(0x01800101)), operation: 'UNSIGNED_LE', operandB: toHex(u64be(4)) },
      policy: toHex(a.policy), policyRef: '00', key: { name: toHex(externalEccName(pem)), fingerprint: '00'.repeat(32) }, signature: 'AA==',
    });
    expect(() => checkSignedPolicy({ ...p, key: { ...p.key, fingerprint: p.key.fingerprint } }, { oemPolicyKeyPem: pem, nvIndex: 0x01800101, nvName: nvCounterName(0x01800101), policyRef: new Uint8Array([0]) }))
      .toThrow(/not the provisioned OEM policy key/);
  });
});
