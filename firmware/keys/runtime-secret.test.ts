import { hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { HmacIntegrity } from '../pki/store.ts';
import { RuntimeSecret, sealedObjectMismatch, TpmSealedIntegrity } from './runtime-secret.ts';

const A = new Uint8Array(32).fill(0xa5);

/** TPM2B_PUBLIC of a keyedhash object (type, nameAlg, attributes, authPolicy, then a null scheme and empty unique). */
function sealedPublic(attrs: number, policy: Uint8Array, type = 0x0008): Uint8Array {
  const body = Buffer.concat([
    Buffer.from([type >> 8, type & 0xff, 0x00, 0x0b]), Buffer.from([(attrs >>> 24) & 0xff, (attrs >>> 16) & 0xff, (attrs >>> 8) & 0xff, attrs & 0xff]),
    Buffer.from([policy.length >> 8, policy.length & 0xff]), Buffer.from(policy), Buffer.from([0x00, 0x10, 0x00, 0x00]),
  ]);
  return new Uint8Array(Buffer.concat([Buffer.from([body.length >> 8, body.length & 0xff]), body]));
}

describe('runtime secret', () => {
  it('derives one independent HKDF-SHA256 key per purpose, deterministic for the same secret', () => {
    const ikm = new Uint8Array(32).map((_, i) => i);
    const s = RuntimeSecret.fromBytes(Uint8Array.from(ikm));
    const store = s.derive('pkiStoreIntegrity');
    expect(Buffer.from(store)).toEqual(Buffer.from(hkdfSync('sha256', ikm, new Uint8Array(0), 'evcc pki-store integrity v1', 32)));
    expect(s.linkKeyPassphrase()).toBe(Buffer.from(hkdfSync('sha256', ikm, new Uint8Array(0), 'evcc ota link-key passphrase v1', 32)).toString('hex'));
    expect(Buffer.from(s.derive('otaBackendKeyIntegrity')).equals(Buffer.from(store))).toBe(false);
    const other = RuntimeSecret.fromBytes(new Uint8Array(32).fill(1));
    expect(Buffer.from(other.derive('pkiStoreIntegrity')).equals(Buffer.from(store))).toBe(false);
  });

  it('destroy() zeroes the secret in place and refuses further derivations; wrong sizes are refused', () => {
    const bytes = new Uint8Array(32).fill(9);
    const s = RuntimeSecret.fromBytes(bytes);
    s.destroy();
    expect(bytes.every((b) => b === 0)).toBe(true);
    expect(() => s.derive('pkiStoreIntegrity')).toThrow(EvccError);
    expect(() => RuntimeSecret.fromBytes(new Uint8Array(31))).toThrow(/32 bytes/);
  });

  it('the store guard has its own scheme and the tag of an HMAC with the derived key', async () => {
    const s = RuntimeSecret.fromBytes(new Uint8Array(32).fill(3));
    const guard = s.storeIntegrity();
    expect(guard.scheme).toBe(TpmSealedIntegrity.SCHEME);
    const data = new TextEncoder().encode('{"roots":[]}');
    const tag = await guard.tag(data);
    expect(await new HmacIntegrity(s.derive('pkiStoreIntegrity')).verify(data, tag)).toBe(true);
    expect(await guard.verify(new TextEncoder().encode('{"roots":[1]}'), tag)).toBe(false);
  });

  it('recognises a sealed data object bound to A, and says why anything else is not one', () => {
    const ok = 0x2 | 0x10; // fixedTPM | fixedParent
    expect(sealedObjectMismatch(sealedPublic(ok, A), A)).toBeUndefined();
    expect(sealedObjectMismatch(sealedPublic(ok | 0x40, A), A)).toMatch(/userWithAuth/);
    expect(sealedObjectMismatch(sealedPublic(ok | 0x40000, A), A)).toMatch(/a key/);
    expect(sealedObjectMismatch(sealedPublic(0x2, A), A)).toMatch(/duplicable/);
    expect(sealedObjectMismatch(sealedPublic(ok, new Uint8Array(32)), A)).toMatch(/authPolicy/);
    expect(sealedObjectMismatch(sealedPublic(ok, A, 0x0023), A)).toMatch(/keyedhash/);
    expect(sealedObjectMismatch(sealedPublic(ok, A).subarray(0, 9), A)).toMatch(/malformed/);
  });
});
