import { describe, expect, it } from 'vitest';
import { decodeAny, encodeAny, EXI_CHILD_ORDER } from '../../firmware/exi/index.ts';
import type { ExiObject } from '../../firmware/exi/index.ts';

/**
 * Issue #13 item 7: re-encoding a decoded message must keep the document order of children that may interleave —
 * xmldsig KeyInfo and X509Data are repeated choices, and the message shape (one property per name) groups them.
 * Before, KeyInfo [X509Data, KeyName] came back as [KeyName, X509Data]: other bytes, so a signature over a
 * re-encoded KeyInfo (a relay, a trace replay) broke.
 */
const ORDER = EXI_CHILD_ORDER as unknown as string;
const orderOf = (o: unknown): string[] | undefined => (o as Record<string, string[] | undefined>)[ORDER];

/** Builds `{ key: [items] }` for a sequence of child keys, with the sequence as the document-order hint. */
function withChildren(seq: string[], item: (key: string, i: number) => unknown, attrs: Record<string, unknown> = {}): ExiObject {
  const o: Record<string, unknown> = { ...attrs };
  seq.forEach((k, i) => ((o[k] ??= []) as unknown[]).push(item(k, i)));
  Object.defineProperty(o, EXI_CHILD_ORDER, { value: [...seq], enumerable: false });
  return o as ExiObject;
}

const bits = (s: string): Uint8Array => {
  const b = s.replace(/[\s|]/g, '');
  const out = new Uint8Array(Math.ceil(b.length / 8));
  for (let i = 0; i < b.length; i++) if (b[i] === '1') out[i >> 3]! |= 0x80 >> (i & 7);
  return out;
};
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('xmldsig choice children keep their document order through decode → encode', () => {
  it('a hand-coded stream KeyInfo [X509Data, KeyName] re-encodes to the same bytes', () => {
    // Event codes from the xmldsig grammars (EXI 1.0 §8.5.4, non-strict): header; SE(KeyInfo) = 4 of 24 global
    // elements (5 bits); KeyInfo state 0: SE(X509Data) = 4 (4 bits); X509Data: SE(X509SKI) = 1 (3 bits), CH (1 bit),
    // binary length 1 + 0xab, EE (1 bit); X509Data EE = 6 (3 bits); KeyInfo: SE(KeyName) = 0 (4 bits), CH, string
    // "k" (length + 2 = 3), EE; KeyInfo EE = 8 (4 bits); ED.
    const stream = bits('10000000 | 00100 | 0100 | 001 | 0 | 00000001 10101011 | 0 | 110 | 0000 | 0 | 00000011 01101011 | 0 | 1000');
    const decoded = decodeAny('xmldsig', stream);
    expect(decoded).toEqual({ KeyInfo: { KeyName: ['k'], X509Data: [{ X509SKI: ['ab'] }] } });
    expect(orderOf(decoded.KeyInfo)).toEqual(['X509Data', 'KeyName']);
    expect(hex(encodeAny('xmldsig', decoded))).toBe(hex(stream));
  });

  // The hostile tester's 81: every sequence of four KeyInfo children from three alternatives.
  const keyInfoKinds = ['KeyName', 'X509Data', 'MgmtData'];
  const keyInfoSeqs: string[][] = [];
  for (let n = 0; n < 81; n++) keyInfoSeqs.push([0, 1, 2, 3].map((d) => keyInfoKinds[Math.floor(n / 3 ** d) % 3]!));
  const keyInfoItem = (k: string, i: number): unknown =>
    k === 'X509Data' ? withChildren(i % 2 ? ['X509SKI', 'X509SubjectName'] : ['X509SubjectName', 'X509SKI'], (c, j) => (c === 'X509SKI' ? `0${i}0${j}` : `CN=S${i}.${j}`)) : `${k}-${i}`;

  it('81 KeyInfo child sequences: decoded order = document order, re-encoded bytes identical', () => {
    const changed: string[] = [];
    for (const seq of keyInfoSeqs) {
      const bytes = encodeAny('xmldsig', { KeyInfo: withChildren(seq, keyInfoItem, { Id: 'ki' }) });
      const decoded = decodeAny('xmldsig', bytes);
      const ki = decoded.KeyInfo as ExiObject;
      const distinct = seq.some((k) => k !== seq[0]);
      if (distinct) expect(orderOf(ki)).toEqual(seq);
      for (const x of (ki.X509Data ?? []) as ExiObject[]) expect(orderOf(x)).toHaveLength(2);
      if (hex(encodeAny('xmldsig', decoded)) !== hex(bytes)) changed.push(seq.join(','));
    }
    expect(changed).toEqual([]);
  });

  it('inside an ISO 15118-2 V2G_Message header signature, re-encoding keeps the bytes', () => {
    const signature = {
      SignedInfo: {
        CanonicalizationMethod: { Algorithm: 'http://www.w3.org/TR/canonical-exi/' },
        SignatureMethod: { Algorithm: 'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256' },
        Reference: [{ URI: '#id1', Transforms: { Transform: { Algorithm: 'http://www.w3.org/TR/canonical-exi/' } }, DigestMethod: { Algorithm: 'http://www.w3.org/2001/04/xmlenc#sha256' }, DigestValue: '00'.repeat(32) }],
      },
      SignatureValue: { CONTENT: '11'.repeat(64) },
      KeyInfo: withChildren(['X509Data', 'KeyName', 'X509Data'], keyInfoItem),
    };
    const message = { V2G_Message: { Header: { SessionID: '0011223344556677', Signature: signature }, Body: { AuthorizationReq: { Id: 'id1', GenChallenge: '22'.repeat(16) } } } };
    const bytes = encodeAny('iso2', message);
    const decoded = decodeAny('iso2', bytes);
    const ki = ((decoded.V2G_Message as ExiObject).Header as ExiObject).Signature as ExiObject;
    expect(orderOf(ki.KeyInfo)).toEqual(['X509Data', 'KeyName', 'X509Data']);
    expect(hex(encodeAny('iso2', decoded))).toBe(hex(bytes));
  });

  it('an order hint that no longer matches the object (edited) falls back to schema order, never to an error or a lost child', () => {
    const ki = withChildren(['X509Data', 'KeyName'], keyInfoItem);
    (ki as Record<string, unknown>).KeyName = ['a', 'b']; // one more KeyName than the hint names
    (ki as Record<string, unknown>).MgmtData = ['m']; // and a child it does not name at all
    const decoded = decodeAny('xmldsig', encodeAny('xmldsig', { KeyInfo: ki }));
    expect(decoded).toEqual({ KeyInfo: { X509Data: [expect.anything()], KeyName: ['a', 'b'], MgmtData: ['m'] } });
    expect(orderOf(decoded.KeyInfo)).toEqual(['X509Data', 'KeyName', 'KeyName', 'MgmtData']);
  });
});
