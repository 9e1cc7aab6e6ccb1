/**
 * Helpers for the SECC handler tests: an EV side that sends hand-written request bodies through the real EXI codec
 * (encode → decode, as on the wire) and encodes every answer (so a schema-invalid response fails the test).
 */
import { createPrivateKey, randomBytes } from 'node:crypto';
import { decodeV2gMessage, encodeV2gMessage, type Din, type Iso2 } from '../../firmware/exi/index.ts';
import type { VirtualClock } from '../../hal/clock/virtual.ts';
import type { SeccHandler, SeccReply } from './session.ts';

export interface Exchange<M> {
  reply: SeccReply<M>;
  /** The response body element (`{ ResponseCode, ... }`), undefined when the SECC stayed silent. */
  res: Record<string, unknown> & { ResponseCode?: string };
  header?: { SessionID: string };
}

/** A deterministic byte source: 01 02 03 … (SessionIDs and GenChallenges differ per call). */
export function counterRandom(start = 1): (n: number) => Uint8Array {
  let next = start;
  return (n) => Uint8Array.from({ length: n }, () => next++ & 0xff);
}

export class TestEv<M extends Iso2.V2G_MessageElement | Din.V2G_MessageElement> {
  sessionId = '00';

  constructor(private readonly schema: M extends Iso2.V2G_MessageElement ? 'iso2' : 'din', readonly secc: SeccHandler<M>, readonly clock: VirtualClock) {}

  /** Sends `{ <Name>Req: content }` with the current SessionID (or a given header), after waiting `afterMs`. */
  async send(body: Record<string, unknown>, o: { afterMs?: number; header?: Record<string, unknown> } = {}): Promise<Exchange<M>> {
    if (o.afterMs) this.clock.advance(o.afterMs);
    const message = { Header: { SessionID: this.sessionId, ...o.header }, Body: body };
    const wire = this.schema === 'iso2'
      ? decodeV2gMessage('iso2', encodeV2gMessage('iso2', message as Iso2.V2G_MessageElement))
      : decodeV2gMessage('din', encodeV2gMessage('din', message as Din.V2G_MessageElement));
    const reply = await this.secc.handle(wire as M, this.clock.now());
    if (!reply.response) return { reply, res: {} };
    const bytes = this.schema === 'iso2'
      ? encodeV2gMessage('iso2', reply.response as Iso2.V2G_MessageElement)
      : encodeV2gMessage('din', reply.response as Din.V2G_MessageElement);
    const decoded = (this.schema === 'iso2' ? decodeV2gMessage('iso2', bytes) : decodeV2gMessage('din', bytes)) as { Header: { SessionID: string }; Body: Record<string, unknown> };
    const res = decoded.Body[reply.responseName!] as Exchange<M>['res'];
    return { reply, res, header: decoded.Header };
  }
}

export const physical = (Value: number, Unit: string, Multiplier = 0) => ({ Multiplier, Unit, Value });
export const value = (p: unknown): number => {
  const v = p as { Multiplier: number; Value: number };
  return v.Value * 10 ** v.Multiplier;
};

/**
 * A software P-256 Signer for tests: signs the 32-byte digest it is handed, as the TPM does (node:crypto has no
 * prehashed ECDSA, so the curve arithmetic is done here; verification in the SECC uses node:crypto independently).
 */
export function softwareSigner(keyPem: string): { sign(digest32: Uint8Array): Promise<Uint8Array> } {
  const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
  const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
  const G = { x: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n, y: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n };
  type Point = { x: bigint; y: bigint } | null;
  const mod = (a: bigint, m: bigint): bigint => ((a % m) + m) % m;
  const pow = (b: bigint, e: bigint, m: bigint): bigint => {
    let r = 1n;
    for (b = mod(b, m); e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
    return r;
  };
  const inv = (a: bigint, m: bigint): bigint => pow(a, m - 2n, m); // m is prime
  const add = (a: Point, b: Point): Point => {
    if (!a) return b;
    if (!b) return a;
    if (a.x === b.x && mod(a.y + b.y, P) === 0n) return null;
    const slope = a.x === b.x ? mod(3n * a.x * a.x - 3n, P) * inv(2n * a.y, P) : mod(b.y - a.y, P) * inv(mod(b.x - a.x, P), P);
    const x = mod(slope * slope - a.x - b.x, P);
    return { x, y: mod(slope * (a.x - x) - a.y, P) };
  };
  const times = (k: bigint, p: Point): Point => {
    let acc: Point = null;
    for (let q = p; k > 0n; k >>= 1n, q = add(q, q)) if (k & 1n) acc = add(acc, q);
    return acc;
  };
  const jwk = createPrivateKey(keyPem).export({ format: 'jwk' }) as { d: string };
  const d = BigInt(`0x${Buffer.from(jwk.d, 'base64url').toString('hex')}`);
  const int = (b: Uint8Array): bigint => BigInt(`0x${Buffer.from(b).toString('hex') || '0'}`);
  const be32 = (x: bigint): Buffer => Buffer.from(x.toString(16).padStart(64, '0'), 'hex');
  return {
    async sign(digest32) {
      const z = int(digest32);
      for (;;) {
        const k = mod(int(randomBytes(40)), N - 1n) + 1n;
        const r = mod(times(k, G)!.x, N);
        const s = mod(inv(k, N) * (z + r * d), N);
        if (r !== 0n && s !== 0n) return new Uint8Array(Buffer.concat([be32(r), be32(s)]));
      }
    },
  };
}
