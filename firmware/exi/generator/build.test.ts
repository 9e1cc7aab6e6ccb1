import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bitsFor } from '../bitstream.ts';
import { P_AT, P_EE, P_SE, type SchemaTablesJson } from '../tables.ts';
import { buildSchema } from './build.ts';
import { SchemaSet } from './xsd.ts';

/**
 * The grammar builder on a small schema, against EXI 1.0 §8.5.4 by hand: attributes first (sorted by qname, the
 * required one alone), SE in schema order (a choice keeps Z before A), bounded repetition unrolled, EE last, one more
 * code for the non-strict escape in every state.
 */
const dir = mkdtempSync(join(tmpdir(), 'exi-gen-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const XSD = `<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" xmlns="urn:t" elementFormDefault="qualified">
  <xs:element name="Root" type="RootType"/>
  <xs:element name="Head" type="xs:string" abstract="true"/>
  <xs:element name="Beta" type="xs:string" substitutionGroup="Head"/>
  <xs:element name="Alpha" type="xs:string" substitutionGroup="Head"/>
  <xs:complexType name="RootType">
    <xs:sequence>
      <xs:element name="B" type="xs:string" minOccurs="0"/>
      <xs:choice>
        <xs:element name="Z" type="xs:boolean"/>
        <xs:element name="A" type="xs:boolean"/>
      </xs:choice>
      <xs:element name="L" type="Percent" maxOccurs="3"/>
      <xs:element ref="Head" minOccurs="0"/>
    </xs:sequence>
    <xs:attribute name="y" type="xs:string"/>
    <xs:attribute name="x" type="xs:string" use="required"/>
  </xs:complexType>
  <xs:simpleType name="Percent">
    <xs:restriction base="xs:unsignedByte"><xs:maxInclusive value="100"/></xs:restriction>
  </xs:simpleType>
</xs:schema>`;

function build(): SchemaTablesJson {
  writeFileSync(join(dir, 't.xsd'), XSD);
  const set = new SchemaSet();
  set.load(join(dir, 't.xsd'));
  return buildSchema(set).tables;
}

/** Walks a grammar by event names ('@x' attribute, 'B' element, 'EE'); returns [code, bits] per event. */
function walk(t: SchemaTablesJson, type: string, events: string[]): [number, number][] {
  const g = t.grammars.find((x) => x.n === type)!;
  let state = 0;
  return events.map((ev) => {
    const [, ...prods] = g.s[state]!;
    const i = prods.findIndex((p) => (ev === 'EE' ? p[0] === P_EE : ev.startsWith('@') ? p[0] === P_AT && t.names[p[1]!]![1] === ev.slice(1) : p[0] === P_SE && t.names[p[1]!]![1] === ev));
    if (i < 0) throw new Error(`${ev} not allowed in state ${state}`);
    const p = prods[i]!;
    if (p[0] !== P_EE) state = p[3]!;
    return [i, bitsFor(prods.length + 1)];
  });
}

describe('EXI grammar builder (EXI 1.0 §8.5.4)', () => {
  const t = build();

  it('event codes: attributes sorted, then SE in schema order, unrolled maxOccurs, EE; one escape code per state', () => {
    expect(walk(t, 'RootType', ['@x', '@y', 'B', 'A', 'L', 'L', 'L', 'EE'])).toEqual([
      [0, 1], // AT(x) alone: x is required
      [0, 3], // AT(y) | SE(B) SE(Z) SE(A): 4 + escape
      [0, 2], // SE(B) SE(Z) SE(A)
      [1, 2], // SE(Z) SE(A): the choice keeps schema order
      [0, 1], // SE(L)
      [0, 3], // SE(L) SE(Alpha) SE(Beta) SE(Head) EE
      [0, 3],
      [3, 3], // third L: SE(Alpha) SE(Beta) SE(Head) EE
    ]);
    // Skipping y, B: the content's first productions are offered right after the required attribute.
    expect(walk(t, 'RootType', ['@x', 'Z', 'L', 'Beta', 'EE'])).toEqual([[0, 1], [2, 3], [0, 1], [2, 3], [0, 1]]);
  });

  it('substitution group members sorted by qname, the abstract head included; global elements sorted by qname', () => {
    expect(walk(t, 'RootType', ['@x', 'Z', 'L', 'Alpha'])[3]).toEqual([1, 3]);
    expect(walk(t, 'RootType', ['@x', 'Z', 'L', 'Head'])[3]).toEqual([3, 3]);
    expect(t.doc.map(([n]) => t.names[n]![1])).toEqual(['Alpha', 'Beta', 'Head', 'Root']);
  });

  it('datatypes: bounded integer as n-bit (0..100 → 7 bits), string, boolean; second-level kinds per state', () => {
    const g = t.grammars.find((x) => x.n === 'Percent')!;
    const ch = g.s[0]![1]!;
    expect(t.datatypes[ch[1]!]).toEqual(['n', 7, 0, 100]);
    expect(t.datatypes).toContainEqual(['s']);
    expect(t.datatypes).toContainEqual(['o']);
    const root = t.grammars.find((x) => x.n === 'RootType')!;
    // State 0: first state; states 1..2 (up to content, A = 2 attributes): attribute states; the rest: content.
    expect(root.s.map((s) => s[0])).toEqual([0, 1, 1, ...new Array(root.s.length - 3).fill(2)]);
  });
});
