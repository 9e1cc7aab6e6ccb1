import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { encodeFrame, macFromString } from '../../firmware/slac/codec.ts';
import { encodeQcaFrame } from '../../firmware/slac/qca-vendor.ts';
import { afPacketAvailable } from '../../hal/plc/af-packet.ts';
import { describeWith, root, tool, type Prerequisite } from '../support/prereq.ts';
import { readCapture, SlacRig, type TsharkPacket } from './slac-rig.ts';

/**
 * Must-show 2 and 3: our EV (a separate `evcc slac` process on a raw AF_PACKET socket) matches Debian's `evse`
 * (plc-utils-extra, `-t 10000`) running behind our modem simulator, over a veth pair between two network
 * namespaces; tshark captures the run and independently decodes every frame our EV sent.
 */
const addon: Prerequisite = { name: 'AF_PACKET addon (npm install builds hal/plc/native)', present: afPacketAvailable };
const describeReal = describeWith([root, tool('ip'), tool('evse'), tool('tshark'), tool('stdbuf'), addon]);

const MALFORMED = '_ws.malformed || _ws.expert.severity >= "error"';

/** A classic pcap file (ethernet link type) holding the given frames. */
function pcap(frames: Uint8Array[]): Buffer {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(65535, 16);
  head.writeUInt32LE(1, 20);
  const recs = frames.map((f) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    return Buffer.concat([r, Buffer.from(f)]);
  });
  return Buffer.concat([head, ...recs]);
}

const colon = (hex: string) => hex.match(/../g)!.join(':');

describeReal('SLAC on a real link against Debian evse', () => {
  let rig: SlacRig;
  let result: {
    evseMac: string; nid: string; nmk: string; runId: string;
    evses: { mac: string; averageAttenuationDb?: number; chosen: boolean }[];
  };
  let packets: TsharkPacket[];
  let run: { code: number | null; stdout: string; stderr: string };

  beforeAll(async () => {
    rig = await SlacRig.start({ capture: true, attenuationDb: 23 });
    run = await rig.runOurEv();
    packets = await rig.stopCapture();
    if (run.code === 0) result = JSON.parse(run.stdout.trim().split('\n').pop()!);
  }, 90_000);
  afterAll(async () => {
    await rig?.destroy();
  });

  it('our EV matches evse and sets exactly the NMK/NID of CM_SLAC_MATCH.CNF into its local modem', async () => {
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/\[INFO\] SLAC: matching process successful/);
    expect(result.evseMac).toBe(rig.seMac);
    expect(result.evses).toEqual([expect.objectContaining({ mac: rig.seMac, averageAttenuationDb: 23, chosen: true })]);
    // The key evse was configured with, as evse sent it in CM_SLAC_MATCH.CNF (decoded by tshark, not by us) …
    const cnf = packets.filter((p) => p.mmtype === 0x607d && p.src === rig.seMac && p.dst === rig.evMac);
    expect(cnf).toHaveLength(1);
    const cnfNmk = cnf[0]!.fields['homeplug_av.gp.cm_slac_match.nmk'];
    const cnfNid = cnf[0]!.fields['homeplug_av.gp.cm_slac_match.nid'];
    expect(cnfNmk).toBe(colon(rig.nmk));
    expect(cnfNid).toBe(colon(rig.nid));
    // … is what our EV set into its local modem (as the modem simulator recorded it) and reported.
    const keys = (await rig.evModemKeys()).filter((k) => k.host === rig.evMac);
    expect(keys).toHaveLength(1);
    expect(colon(keys[0]!.nmk)).toBe(cnfNmk);
    expect(colon(keys[0]!.nid)).toBe(cnfNid);
    expect(colon(result.nmk)).toBe(cnfNmk);
    expect(colon(result.nid)).toBe(cnfNid);
  });

  it('tshark decodes every frame our EV sent as the expected SLAC message with the expected fields', () => {
    const ours = packets.filter((p) => p.src === rig.evMac);
    const runId = colon(result.runId);
    expect(ours.map((p) => p.mmtype)).toEqual([
      0x6064, 0x606a, 0x606a, 0x606a, ...Array(10).fill(0x6076), 0x606f, 0x607c, 0x6008,
      // The join probe: the first VS_NW_INFO.REQ, then the answers to the modem's VS_HST_ACTION.IND 0x09 and 0x0a.
      0xa038, 0xa063, 0xa063,
    ]);
    const [parm, ...rest] = ours;
    expect(parm!.dst).toBe('ff:ff:ff:ff:ff:ff');
    expect(parm!.fields).toMatchObject({
      'homeplug_av.gp.cm_slac_parm.apptype': '0x00', 'homeplug_av.gp.cm_slac_parm.sectype': '0x00', 'homeplug_av.gp.cm_slac_parm.runid': runId,
    });
    const starts = rest.slice(0, 3);
    for (const s of starts) {
      expect(s.dst).toBe('ff:ff:ff:ff:ff:ff');
      expect(s.fields).toMatchObject({
        'homeplug_av.gp.cm_start_atten_char.sounds_count': '0x0a', 'homeplug_av.gp.cm_start_atten_char.time_out': '6',
        'homeplug_av.gp.cm_start_atten_char.resptype': '0x00', 'homeplug_av.gp.cm_start_atten_char.sound_forwarding_sta': rig.evMac,
        'homeplug_av.gp.cm_start_atten_char.runid': runId,
      });
    }
    const sounds = rest.slice(3, 13);
    expect(sounds.map((s) => s.fields['homeplug_av.gp.cm_mnbc_sound.countdown'])).toEqual(['9', '8', '7', '6', '5', '4', '3', '2', '1', '0']);
    for (const s of sounds) {
      expect(s.dst).toBe('ff:ff:ff:ff:ff:ff');
      expect(s.fields['homeplug_av.gp.cm_mnbc_sound.runid']).toBe(runId);
      expect(s.fields['homeplug_av.gp.cm_mnbc_sound.rnd']).toMatch(/^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
    }
    const [rsp, match, setKey] = rest.slice(13, 16);
    expect(rsp!.dst).toBe(rig.seMac);
    expect(rsp!.fields).toMatchObject({
      'homeplug_av.gp.cm_atten_char.source_mac': rig.evMac, 'homeplug_av.gp.cm_atten_char.runid': runId, 'homeplug_av.gp.cm_atten_char.result': '0x00',
    });
    expect(match!.dst).toBe(rig.seMac);
    expect(match!.fields).toMatchObject({
      'homeplug_av.gp.cm_slac_match.length': '0x003e', 'homeplug_av.gp.cm_slac_match.pev_mac': rig.evMac,
      'homeplug_av.gp.cm_slac_match.evse_mac': rig.seMac, 'homeplug_av.gp.cm_slac_match.runid': runId,
    });
    expect(setKey!.dst).toBe('00:b0:52:00:00:01');
    expect(setKey!.fields).toMatchObject({
      'homeplug_av.nw_info.key_type': '0x01', 'homeplug_av.nw_info.pid': '0x04', 'homeplug_av.nw_info.peks': '0x01',
      'homeplug_av.nw_info.nid': colon(rig.nid), 'homeplug_av.cm_set_key_req.nw_key': colon(rig.nmk),
    });
  });

  it('the EV waited for its modem\'s join: tshark decodes the vendor MMEs both sides sent (VS_HST_ACTION, VS_NW_INFO)', () => {
    expect(run.stderr).toMatch(/\[INFO\] SLAC: PLC link up \(VS_HST_ACTION\.IND\)/);
    expect(run.stderr).toMatch(/cp=SLAC_LINK_UP/);
    const vendor = packets.filter((p) => p.mmtype >= 0xa000);
    const oui = (p: TsharkPacket) => p.fields['homeplug_av.vendor.oui'];
    expect(vendor.length).toBeGreaterThanOrEqual(5);
    for (const p of vendor) expect(oui(p)).toBe('0x00b052');
    const poll = vendor.find((p) => p.mmtype === 0xa038 && p.src === rig.evMac)!;
    expect(poll.dst).toBe('00:b0:52:00:00:01');
    const inds = vendor.filter((p) => p.mmtype === 0xa062 && p.dst === rig.evMac);
    expect(inds.map((p) => p.fields['homeplug_av.host_action_ind.action']).slice(0, 2)).toEqual(['0x09', '0x0a']);
    const modem = inds[0]!.src;
    expect(modem).toMatch(/^00:b0:52:/);
    const rsps = vendor.filter((p) => p.mmtype === 0xa063 && p.src === rig.evMac);
    expect(rsps.map((p) => [p.dst, p.fields['homeplug_av.host_action_rsp.status']])).toEqual([[modem, '0x00'], [modem, '0x00']]);
    // The modem simulator's answer to the poll, decoded by tshark: joined at once, so our AVLN with the charger's station.
    const cnf = vendor.find((p) => p.mmtype === 0xa039 && p.dst === rig.evMac)!;
    expect(cnf.src).toBe(modem);
    expect(cnf.fields).toMatchObject({
      'homeplug_av.nw_info.num_avlns': '1', 'homeplug_av.nw_info.nid': colon(rig.nid), 'homeplug_av.nw_info_cnf.num_stas': '1',
      'homeplug_av.nw_info_cnf.sta_indo.bda': rig.seMac,
    });
  });

  it('tshark finds no malformed frame in the whole run', async () => {
    expect(packets.length).toBeGreaterThan(30);
    expect(await readCapture(rig.capturePath, MALFORMED)).toEqual([]);
  });

  it('the malformed-frame filter does flag a cut CM_SLAC_MATCH.CNF (the check can fail)', async () => {
    const cnf = encodeFrame({
      dst: macFromString(rig.evMac), src: macFromString(rig.seMac),
      message: {
        type: 'CM_SLAC_MATCH.CNF', applicationType: 0, securityType: 0, pevId: new Uint8Array(17), pevMac: macFromString(rig.evMac),
        evseId: new Uint8Array(17), evseMac: macFromString(rig.seMac), runId: new Uint8Array(8), nid: new Uint8Array(7), nmk: new Uint8Array(16),
      },
    }).subarray(0, 70);
    const path = join(rig.dir, 'cut.pcap');
    await writeFile(path, pcap([cnf]));
    expect(await readCapture(path, MALFORMED)).toHaveLength(1);
  });

  it('the same filter flags a cut VS_NW_INFO.CNF (two stations announced, one present)', async () => {
    const mac = (m: string) => macFromString(m);
    const station = { mac: mac('00:b0:52:00:00:c1'), tei: 1, bda: mac(rig.seMac), avgPhyTxMbps: 9, avgPhyRxMbps: 9 };
    const cnf = encodeQcaFrame({
      dst: mac(rig.evMac), src: mac('00:b0:52:00:00:e1'), mmv: 1,
      message: { type: 'VS_NW_INFO.CNF', avlns: [{ nid: new Uint8Array(7), snid: 1, tei: 2, role: 0, ccoMac: station.mac, ccoTei: 1, stations: [station, station] }] },
    });
    const path = join(rig.dir, 'cut-nwinfo.pcap');
    await writeFile(path, pcap([cnf.subarray(0, cnf.length - 10)]));
    expect(await readCapture(path, MALFORMED)).toHaveLength(1);
  });
});
