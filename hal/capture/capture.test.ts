import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ipv6Bytes, ipv6Text, parseFrame, tcpSegment, udpDatagram } from './packets.ts';
import { PcapngWriter, readPcapng } from './pcapng.ts';
import { parseSessionCapture } from './read-session.ts';
import { TcpFlowWriter } from './sim-taps.ts';
import type { FrameSink } from './types.ts';

describe('pcapng writer and reader', () => {
  it('round-trips interfaces, timestamps, directions and data (odd lengths padded)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'evcc-pcapng-'));
    try {
      const w = PcapngWriter.open(join(dir, 'x.pcapng'));
      const a = w.addInterface({ name: 'eth1', description: 'tap' });
      const b = w.addInterface({ name: 'sim', description: 'reconstructed' });
      expect(w.addInterface({ name: 'eth1', description: 'again' })).toBe(a);
      w.packet(a, Uint8Array.of(1, 2, 3), { atMs: 1_796_285_644_123.456, direction: 'out' });
      w.packet(b, new Uint8Array(61).fill(7), { atMs: 1_796_285_644_124, direction: 'in', comment: 'hi' });
      w.close();
      const f = readPcapng(new Uint8Array(await readFile(join(dir, 'x.pcapng'))));
      expect(f.application).toBe('evcc');
      expect(f.interfaces.map((i) => i.name)).toEqual(['eth1', 'sim']);
      expect(f.packets.map((p) => [p.interfaceId, p.direction, p.data.length, p.timestampUs])).toEqual([[0, 'out', 3, 1_796_285_644_123_456n], [1, 'in', 61, 1_796_285_644_124_000n]]);
      expect(f.packets[1]!.comment).toBe('hi');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('refuses what is not pcapng, typed', () => {
    expect(() => readPcapng(new Uint8Array(16))).toThrow(expect.objectContaining({ code: 'CAPTURE_INVALID' }));
  });
});

describe('packets', () => {
  it('IPv6 text ↔ bytes', () => {
    for (const a of ['fe80::e7:1', 'ff02::1', '2001:db8::1:0:0:1', '::1']) expect(ipv6Text(ipv6Bytes(a))).toBe(a);
    expect(() => ipv6Bytes('fe80::1::2')).toThrow();
  });
  it('UDP and TCP checksums verify (one\'s complement sum over pseudo-header and segment is 0xffff)', () => {
    const src = ipv6Bytes('fe80::e7:1');
    const dst = ipv6Bytes('fe80::5ecc:1');
    const verify = (upper: Uint8Array, proto: number) => {
      let sum = 0;
      const add = (b: Uint8Array) => {
        for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) | (b[i + 1] ?? 0);
      };
      add(src);
      add(dst);
      sum += upper.length + proto;
      add(upper);
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      return sum;
    };
    expect(verify(udpDatagram(src, dst, 49152, 15118, Uint8Array.of(1, 0xfe, 0x90, 0, 0, 0, 0, 2, 0, 0, 9)), 17)).toBe(0xffff);
    expect(verify(tcpSegment(src, dst, { srcPort: 1, dstPort: 2, seq: 5, ack: 9, flags: 0x18, payload: randomBytes(33) }), 6)).toBe(0xffff);
  });
});

describe('TCP reconstruction → reader', () => {
  it('a rebuilt connection reads back as its two byte streams, in order, with its orderly close', () => {
    const frames: Uint8Array[] = [];
    const w = PcapngWriter.open(join(tmpdir(), `evcc-flow-${process.pid}-${Date.now()}.pcapng`));
    const id = w.addInterface({ name: 'x', description: 'y' });
    let t = 1_000;
    const sink: FrameSink = { frame: (f, o) => { frames.push(f); w.packet(id, f, { atMs: t++, direction: o.direction }); } };
    const a = { evMac: Uint8Array.of(2, 0, 0, 0, 0, 1), peerMac: Uint8Array.of(2, 0, 0, 0, 0, 2), evAddress: 'fe80::1' };
    const flow = new TcpFlowWriter(sink, a, { address: 'fe80::1', port: 40000 }, { address: 'fe80::2', port: 15118 }, { ev: 0xfffffff0, peer: 7 });
    flow.open();
    const big = randomBytes(4000);
    flow.data('out', Uint8Array.of(1, 0xfe, 0x80, 1, 0, 0, 0, 1, 0x80));
    flow.data('in', big);
    flow.fin('out');
    flow.fin('in');
    w.close();
    expect(frames.map((f) => parseFrame(f)!.ipv6!.tcp!.flags)).toEqual([0x02, 0x12, 0x10, 0x18, 0x18, 0x18, 0x18, 0x11, 0x11, 0x10]);
    const bytes = new Uint8Array(readFileSync(w.path));
    rmSync(w.path);
    const c = parseSessionCapture(bytes).connections;
    expect(c).toHaveLength(1);
    expect(c[0]!.end).toBe('fin');
    expect(Buffer.concat(c[0]!.serverData.map((x) => x.bytes)).equals(big)).toBe(true); // seq wrapped past 2^32 on the EV side
    expect(c[0]!.clientData[0]!.bytes[1]).toBe(0xfe);
  });
});
