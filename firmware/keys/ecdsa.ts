import { EvccError } from '../../core/errors.ts';

/**
 * ECDSA signature encodings. `tpm2_sign -f plain` writes DER for ECDSA (TPM.md pitfall 15); an ISO 15118-2
 * SignatureValue is raw r||s, each left-padded to 32 bytes ([V2G2-771] xmldsig with ecdsa-sha256).
 * Strict parser: bounded, never throws a raw exception on hostile input.
 */
function bad(reason: string): EvccError {
  return new EvccError('KEYS_SIGNATURE_MALFORMED', `malformed ECDSA signature: ${reason}`, { reason });
}

export function derToRaw(der: Uint8Array, size = 32): Uint8Array {
  if (der.length < 8 || der.length > 2 + 2 * (size + 3)) throw bad('length');
  if (der[0] !== 0x30 || der[1] !== der.length - 2) throw bad('sequence header');
  const out = new Uint8Array(2 * size);
  let o = 2;
  for (let i = 0; i < 2; i++) {
    if (der[o] !== 0x02) throw bad('integer tag');
    const len = der[o + 1]!;
    if (len === 0 || len > size + 1 || o + 2 + len > der.length) throw bad('integer length');
    let v = der.subarray(o + 2, o + 2 + len);
    while (v.length > 1 && v[0] === 0) v = v.subarray(1);
    if (v.length > size) throw bad('integer too large');
    out.set(v, i * size + (size - v.length));
    o += 2 + len;
  }
  if (o !== der.length) throw bad('trailing bytes');
  return out;
}

function derInteger(v: Uint8Array): Uint8Array {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const body = v[i]! & 0x80 ? Uint8Array.of(0, ...v.subarray(i)) : v.subarray(i);
  return Uint8Array.of(0x02, body.length, ...body);
}

export function rawToDer(raw: Uint8Array): Uint8Array {
  if (raw.length !== 64) throw bad('raw signature must be 64 bytes');
  const body = Uint8Array.of(...derInteger(raw.subarray(0, 32)), ...derInteger(raw.subarray(32)));
  return Uint8Array.of(0x30, body.length, ...body);
}
