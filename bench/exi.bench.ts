import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { decode, encode, type SchemaDocuments, type SchemaId } from '../firmware/exi/index.ts';
import type { BenchReport, BenchRow } from './run.ts';
import { summarize } from './stats.ts';

/**
 * EXI codec speed: ns per message (median of repeated runs) for encode and decode, with the ratio to libcbv2g
 * (C, -O3) figures on this class of machine where known (issue #3: target within 5×).
 */
interface Case {
  name: string;
  schema: SchemaId;
  message: SchemaDocuments[SchemaId];
  /** libcbv2g encode/decode µs, where given in the issue. */
  c?: [number, number];
}

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

function signedAuthorizationReq(): SchemaDocuments['iso2'] {
  // A real signed PnC AuthorizationReq (EVerest interop run, public signature vectors).
  const vectorsPath = new URL('../../shared/vectors/exi-signatures.json', import.meta.url);
  try {
    const v = (JSON.parse(readFileSync(vectorsPath, 'utf8')) as { message: string; hex: string }[]).find((x) => x.message === 'AuthorizationReq')!;
    return decode('iso2', hex(v.hex));
  } catch {
    return {
      V2G_Message: {
        Header: {
          SessionID: 'c890092700000000',
          Signature: {
            SignedInfo: {
              CanonicalizationMethod: { Algorithm: 'http://www.w3.org/TR/canonical-exi/' },
              SignatureMethod: { Algorithm: 'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256' },
              Reference: [{ URI: '#id1', Transforms: { Transform: { Algorithm: 'http://www.w3.org/TR/canonical-exi/' } }, DigestMethod: { Algorithm: 'http://www.w3.org/2001/04/xmlenc#sha256' }, DigestValue: 'a5'.repeat(32) }],
            },
            SignatureValue: { CONTENT: 'ac'.repeat(64) },
          },
        },
        Body: { AuthorizationReq: { Id: 'id1', GenChallenge: 'db83a9b131567a0e4a9bf071c45df9e0' } },
      },
    };
  }
}

const sap = (n: number): SchemaDocuments['appHandshake'] => ({
  supportedAppProtocolReq: {
    AppProtocol: [
      { ProtocolNamespace: 'urn:iso:15118:2:2013:MsgDef', VersionNumberMajor: 2, VersionNumberMinor: 0, SchemaID: 1, Priority: 1 },
      { ProtocolNamespace: 'urn:din:70121:2012:MsgDef', VersionNumberMajor: 2, VersionNumberMinor: 0, SchemaID: 2, Priority: 2 },
    ].slice(0, n),
  },
});

const CASES: Case[] = [
  { name: 'SupportedAppProtocolReq (1 protocol)', schema: 'appHandshake', message: sap(1), c: [0.3, 0.47] },
  { name: 'SupportedAppProtocolReq (2 protocols)', schema: 'appHandshake', message: sap(2) },
  { name: 'ISO-2 AuthorizationReq (EIM)', schema: 'iso2', message: { V2G_Message: { Header: { SessionID: '37da98f73608903e' }, Body: { AuthorizationReq: {} } } }, c: [0.11, 0.17] },
  { name: 'ISO-2 AuthorizationReq (PnC)', schema: 'iso2', message: { V2G_Message: { Header: { SessionID: '37da98f73608903e' }, Body: { AuthorizationReq: { Id: 'id1', GenChallenge: 'db83a9b131567a0e4a9bf071c45df9e0' } } } } },
  { name: 'ISO-2 AuthorizationReq (PnC, header signature)', schema: 'iso2', message: signedAuthorizationReq(), c: [2.7, 3.9] },
  {
    name: 'ISO-2 ChargeParameterDiscoveryReq (DC)',
    schema: 'iso2',
    message: {
      V2G_Message: {
        Header: { SessionID: '37da98f73608903e' },
        Body: {
          ChargeParameterDiscoveryReq: {
            RequestedEnergyTransferMode: 'DC_extended',
            DC_EVChargeParameter: {
              DepartureTime: 0,
              DC_EVStatus: { EVReady: 1, EVErrorCode: 'NO_ERROR', EVRESSSOC: 60 },
              EVMaximumCurrentLimit: { Multiplier: -3, Unit: 'A', Value: 32000 },
              EVMaximumPowerLimit: { Multiplier: 1, Unit: 'W', Value: 8000 },
              EVMaximumVoltageLimit: { Multiplier: 1, Unit: 'V', Value: 40 },
              EVEnergyCapacity: { Multiplier: 1, Unit: 'Wh', Value: 7000 },
              EVEnergyRequest: { Multiplier: 1, Unit: 'Wh', Value: 6000 },
              FullSOC: 90,
              BulkSOC: 80,
            },
          },
        },
      },
    },
  },
];

function timeNs(fn: () => void, iterations: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - t0) / iterations;
}

function measure(fn: () => void): ReturnType<typeof summarize> {
  // Calibrate to ~20 ms per run, warm up, then 25 runs (the median resists other processes on a shared machine).
  let iterations = 100;
  while (timeNs(fn, iterations) * iterations < 20e6 && iterations < 1e7) iterations *= 2;
  for (let i = 0; i < 3; i++) timeNs(fn, iterations);
  const samples: number[] = [];
  for (let r = 0; r < 25; r++) samples.push(timeNs(fn, iterations));
  return summarize(samples);
}

export async function run(): Promise<BenchReport> {
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  for (const c of CASES) {
    const bytes = encode(c.schema, c.message);
    let sink = 0;
    const enc = measure(() => {
      sink += encode(c.schema, c.message).length;
    });
    const dec = measure(() => {
      sink += decode(c.schema, bytes) ? 1 : 0;
    });
    if (sink < 0) notes.push('unreachable');
    const ratio = (ns: number, cUs: number | undefined): string | undefined => (cUs === undefined ? undefined : `${(ns / 1000 / cUs).toFixed(1)}× libcbv2g (${cUs} µs)`);
    rows.push({ name: `encode ${c.name} [${bytes.length} B]`, median: enc.median, unit: 'ns/msg', min: enc.min, max: enc.max, n: enc.n, note: ratio(enc.median, c.c?.[0]) });
    rows.push({ name: `decode ${c.name}`, median: dec.median, unit: 'ns/msg', min: dec.min, max: dec.max, n: dec.n, note: ratio(dec.median, c.c?.[1]) });
  }
  notes.push('Target (issue #3): within 5× of libcbv2g (C, -O3) on this class of machine.');
  // Other processes inflate medians on a shared machine: say how busy it was.
  notes.push(`Load average ${loadavg().map((l) => l.toFixed(1)).join(' / ')} on ${cpus().length} CPUs while measuring.`);
  return { title: 'EXI codec (table-driven grammar runtime, bit-packed, non-strict)', rows, notes };
}
