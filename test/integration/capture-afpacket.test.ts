import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AfPacketTap } from '../../hal/capture/af-packet-tap.ts';
import { PcapngWriter, readPcapng } from '../../hal/capture/pcapng.ts';
import { AfPacketLink, afPacketAvailable } from '../../hal/plc/af-packet.ts';
import { describeWith, root, tool, type Prerequisite } from '../support/prereq.ts';
import { until } from '../support/until.ts';

const run = promisify(execFile);
const addon: Prerequisite = { name: 'AF_PACKET addon (hal/plc/native)', present: afPacketAvailable };

/**
 * The capture tap on a real interface: an AF_PACKET ETH_P_ALL socket on one end of a veth pair sees the frames this
 * host sends there (outgoing) and the frames the other end sends (incoming), every protocol; tshark reads the file.
 */
describeWith([root, tool('ip'), tool('tshark'), addon])('AF_PACKET ETH_P_ALL capture tap (veth)', () => {
  const tag = randomBytes(2).toString('hex');
  const a = `evcap${tag}a`;
  const b = `evcap${tag}b`;
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'evcc-tap-'));
    await run('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
    for (const i of [a, b]) {
      await run('sysctl', ['-qw', `net.ipv6.conf.${i}.disable_ipv6=1`]).catch(() => undefined);
      await run('ip', ['link', 'set', i, 'up']);
    }
  });
  afterAll(async () => {
    await run('ip', ['link', 'del', a]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('records both directions with their flags, SLAC frames as tshark decodes them', async () => {
    const w = PcapngWriter.open(join(dir, 'tap.pcapng'));
    const id = w.addInterface({ name: a, description: `AF_PACKET ETH_P_ALL tap on ${a}` });
    let seen = 0;
    const tap = await AfPacketTap.open(a, { frame: (f, o) => { seen++; w.packet(id, f, { atMs: Date.now(), direction: o.direction }); } });
    const ours = await AfPacketLink.open(a);
    const theirs = await AfPacketLink.open(b);
    try {
      // CM_SLAC_PARM.REQ from our side, CM_SLAC_PARM.CNF-typed frame from the other end.
      const parm = new Uint8Array(60);
      parm.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0);
      parm.set(ours.mac, 6);
      parm.set([0x88, 0xe1, 0x01, 0x64, 0x60, 0x00, 0x00, 0x00, 0x00], 12);
      parm.set(randomBytes(8), 21);
      await ours.send(parm);
      const cnf = Uint8Array.from(parm);
      cnf.set(ours.mac, 0);
      cnf.set(theirs.mac, 6);
      cnf[15] = 0x65;
      await theirs.send(cnf);
      await until(() => seen >= 2, 3000);
    } finally {
      tap.close();
      await ours.close();
      await theirs.close();
      w.close();
    }
    const f = readPcapng(new Uint8Array(await readFile(join(dir, 'tap.pcapng'))));
    const slac = f.packets.filter((p) => p.data[12] === 0x88 && p.data[13] === 0xe1);
    expect(slac.map((p) => `${p.direction}:${p.data[15]!.toString(16)}`)).toEqual(['out:64', 'in:65']);
    const { stdout } = await run('tshark', ['-r', join(dir, 'tap.pcapng'), '-Y', 'homeplug-av', '-T', 'fields', '-e', 'frame.p2p_dir', '-e', '_ws.col.Info']);
    expect(stdout).toMatch(/CM_SLAC_PARM\.REQ/);
    expect(stdout).toMatch(/CM_SLAC_PARM\.CNF/);
  }, 30_000);
});

