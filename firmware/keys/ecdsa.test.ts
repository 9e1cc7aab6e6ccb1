import { createSign, generateKeyPairSync, createVerify, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { derToRaw, rawToDer } from './ecdsa.ts';

describe('ECDSA DER <-> raw r||s', () => {
  it('round-trips real P-256 signatures and verifies after conversion', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (let i = 0; i < 50; i++) {
      const msg = randomBytes(40);
      const der = new Uint8Array(createSign('sha256').update(msg).sign(privateKey));
      const raw = derToRaw(der);
      expect(raw.length).toBe(64);
      expect(createVerify('sha256').update(msg).verify({ key: publicKey, dsaEncoding: 'ieee-p1363' }, raw)).toBe(true);
      expect(createVerify('sha256').update(msg).verify(publicKey, rawToDer(raw))).toBe(true);
    }
  });
  it('left-pads short integers', () => {
    const raw = new Uint8Array(64);
    raw[31] = 1;
    raw[63] = 0x80;
    expect(derToRaw(rawToDer(raw))).toEqual(raw);
  });
  it('hostile input gives a typed error, never a raw exception', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      try {
        expect(derToRaw(bytes).length).toBe(64);
      } catch (err) {
        expect(isEvccError(err, 'KEYS_SIGNATURE_MALFORMED')).toBe(true);
      }
    }), { numRuns: 2000 });
  });
});
