import { afterAll, beforeAll, expect, it } from 'vitest';
import { afPacketAvailable } from '../../hal/plc/af-packet.ts';
import { VethPair } from '../support/netns.ts';
import { describeWith, root, tool, type Prerequisite } from '../support/prereq.ts';
import { evccArgs, SlacRig } from './slac-rig.ts';

/**
 * Our charger-side simulator as a standalone process on a real link, checked by an independent EV: Debian's `pev`
 * matches `evcc sim evse-slac` (behind `evcc sim modem`), and so does our EV. Plus the CLI's typed failure when no
 * charger answers.
 */
const addon: Prerequisite = { name: 'AF_PACKET addon (npm install builds hal/plc/native)', present: afPacketAvailable };
const describeReal = describeWith([root, tool('ip'), tool('pev'), addon]);

describeReal('SLAC simulators on a real link', () => {
  let rig: SlacRig;
  beforeAll(async () => {
    rig = await SlacRig.start({ charger: 'evcc-sim', attenuationDb: 17 });
  }, 60_000);
  afterAll(async () => {
    await rig?.destroy();
  });

  it("Debian pev matches our charger simulator and sets the simulator's NMK/NID into its modem", async () => {
    const r = await rig.runPev(20);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/<-- CM_SLAC_MATCH\.CNF/);
    expect(r.stdout).toMatch(/Average attenuation \(17\)/);
    // pev sets a key at start (its ini's) and the matched one after CM_SLAC_MATCH.CNF: ours must be among them.
    const keys = (await rig.evModemKeys()).filter((k) => k.host === rig.evMac);
    expect(keys.map((k) => k.nmk)).toContain(rig.nmk);
    expect(keys.find((k) => k.nmk === rig.nmk)?.nid).toBe(rig.nid);
  });

  it('our EV matches our charger simulator over the same link', async () => {
    const r = await rig.runOurEv();
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout.trim().split('\n').pop()!) as { evseMac: string; nmk: string; nid: string };
    expect(result).toMatchObject({ evseMac: rig.seMac, nmk: rig.nmk, nid: rig.nid });
  });
});

describeWith([root, tool('ip'), addon])('evcc slac without a charger', () => {
  let pair: VethPair;
  beforeAll(async () => {
    pair = await VethPair.create();
  });
  afterAll(async () => {
    await pair?.destroy();
  });

  it('exits 1 with the stable code SLAC_TIMEOUT_PARM_CNF after the configured retries', async () => {
    const [node, args] = evccArgs(['slac', '-i', pair.evIf, '--parm-retries', '4']);
    const child = pair.spawn(pair.ev, node, args);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code).toBe(1);
    expect(stderr).toMatch(/evcc: SLAC_TIMEOUT_PARM_CNF: no CM_SLAC_PARM\.CNF after 5 request\(s\)/);
    expect(stderr.match(/retrying CM_SLAC_PARM\.REQ/g)).toHaveLength(4);
  });
});
