import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sh } from '../../test/support/netns.ts';
import { describeWith, root, tool, type Prerequisite } from '../../test/support/prereq.ts';
import { afPacketAvailable, AfPacketLink, type FrameMeta } from './af-packet.ts';

/** The real AF_PACKET link on a veth pair: both directions, no self-echo, the simulator tap, and no leaked socket. */
const addon: Prerequisite = { name: 'AF_PACKET addon (npm install builds hal/plc/native)', present: afPacketAvailable };

const tag = randomBytes(3).toString('hex');
const A = `evpa${tag}`;
const B = `evpb${tag}`;

function frame(src: Uint8Array, n: number): Uint8Array {
  const f = new Uint8Array(60);
  f.fill(0xff, 0, 6);
  f.set(src, 6);
  f[12] = 0x88; f[13] = 0xe1; f[14] = 1; f[15] = 0x64; f[16] = 0x60;
  f[20] = n;
  return f;
}
const openFds = () => readdirSync('/proc/self/fd').length;
const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

describeWith([root, tool('ip'), addon])('AfPacketLink on a veth pair', () => {
  beforeAll(async () => {
    await sh('ip', ['link', 'add', A, 'type', 'veth', 'peer', 'name', B]);
    await sh('ip', ['link', 'set', A, 'up']);
    await sh('ip', ['link', 'set', B, 'up']);
  });
  afterAll(async () => {
    await sh('ip', ['link', 'del', A]).catch(() => undefined);
  });

  it('exchanges frames both ways, never echoes its own, and a tap sees outgoing frames flagged', async () => {
    const fdsBefore = openFds();
    const a = await AfPacketLink.open(A);
    const b = await AfPacketLink.open(B);
    const tap = await AfPacketLink.open(A, { seeOutgoing: true });
    const gotA: number[] = [];
    const gotB: number[] = [];
    const gotTap: [number, boolean][] = [];
    a.onFrame((f) => gotA.push(f[20]!));
    b.onFrame((f) => gotB.push(f[20]!));
    tap.onFrame((f, m: FrameMeta) => gotTap.push([f[20]!, m.outgoing]));
    await a.send(frame(a.mac, 1));
    await b.send(frame(b.mac, 2));
    await a.send(frame(a.mac, 3).subarray(0, 30)); // short: padded to 60 by the link
    await until(() => gotB.length >= 2 && gotA.length >= 1 && gotTap.length >= 3);
    expect(gotB).toEqual([1, 3]);
    expect(gotA).toEqual([2]);
    expect(gotTap.sort()).toEqual([[1, true], [2, false], [3, true]]);
    expect(Array.from(a.mac)).toEqual(Array.from((await sh('cat', [`/sys/class/net/${A}/address`])).trim().split(':').map((h) => parseInt(h, 16))));
    await a.close();
    await a.close(); // idempotent
    await b.close();
    await tap.close();
    await expect(a.send(frame(a.mac, 4))).rejects.toMatchObject({ code: 'IO_FAILED' });
    await new Promise((r) => setTimeout(r, 20));
    expect(openFds()).toBe(fdsBefore); // every socket closed
  });

  it('an unknown interface is a typed error', async () => {
    await expect(AfPacketLink.open(`nope${tag}`)).rejects.toMatchObject({ code: 'NET_NO_INTERFACE' });
  });
});
