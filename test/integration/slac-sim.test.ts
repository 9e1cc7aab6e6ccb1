import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { decodeFrame, macToString, toHex } from '../../firmware/slac/codec.ts';
import { runSlac } from '../../firmware/slac/driver.ts';
import type { SlacResult } from '../../firmware/slac/engine.ts';
import { SlacError } from '../../firmware/slac/errors.ts';
import { decodeQcaFrame, isVendorMme } from '../../firmware/slac/qca-vendor.ts';
import type { Clock, TimerId } from '../../hal/clock/types.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { SimSegment } from '../../hal/plc/sim.ts';
import type { FrameListener, PlcLink } from '../../hal/plc/types.ts';
import { startSimCharger, startSimEvModem, type EvseFault, type SimCharger } from '../../sim/evse-slac/index.ts';

/**
 * SLAC end to end in virtual time on an in-memory segment: our EV, its simulated modem, and one or more simulated
 * chargers (SLAC host + modem). Covers the multi-charger choice and every fault of the issue, each ending in a typed
 * error with no timer or listener left behind.
 */
const EV_MAC = '02:00:00:00:ee:01';

/** Counts the EV driver's armed timers (the shared VirtualClock also carries the simulators' timers). */
class TrackingClock implements Clock {
  readonly active = new Set<TimerId>();
  constructor(private readonly inner: VirtualClock) {}
  now(): number {
    return this.inner.now();
  }
  setTimer(cb: () => void, ms: number): TimerId {
    const id: TimerId = this.inner.setTimer(() => {
      this.active.delete(id);
      cb();
    }, ms);
    this.active.add(id);
    return id;
  }
  clearTimer(id: TimerId): void {
    this.active.delete(id);
    this.inner.clearTimer(id);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.inner.sleep(ms, signal);
  }
}

/** Counts the EV driver's frame listeners and records what it sends. */
class TrackingLink implements PlcLink {
  listeners = 0;
  readonly sent: Uint8Array[] = [];
  constructor(readonly inner: PlcLink) {}
  get mac() { return this.inner.mac; }
  get name() { return this.inner.name; }
  async send(frame: Uint8Array) {
    this.sent.push(frame);
    return this.inner.send(frame);
  }
  onFrame(l: FrameListener) {
    this.listeners++;
    const off = this.inner.onFrame(l);
    return () => {
      this.listeners--;
      off();
    };
  }
  close() { return this.inner.close(); }
}

async function drain(): Promise<void> {
  for (let i = 0; i < 12; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Runs virtual time until the promise settles (frames are delivered between timer steps). */
async function settle<T>(p: Promise<T>, clock: VirtualClock, maxSteps = 10_000): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let out: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  p.then((value) => (out = { ok: true, value }), (error: unknown) => (out = { ok: false, error }));
  for (let i = 0; i < maxSteps && !out; i++) {
    await drain();
    if (out) break;
    if (!clock.step()) await drain();
  }
  await drain();
  if (!out) throw new Error('did not settle');
  return out;
}

interface Bench {
  clock: VirtualClock;
  evClock: TrackingClock;
  segment: SimSegment;
  link: TrackingLink;
  chargers: SimCharger[];
  evModem: ReturnType<typeof startSimEvModem>;
  close(): Promise<void>;
}

let bench: Bench | undefined;
afterEach(async () => {
  await bench?.close();
  bench = undefined;
});

type EvModemOptions = { setKeyResult?: number; ignoreSetKey?: boolean; joinDelayMs?: number; neverJoin?: boolean; noHostActionInd?: boolean; noNwInfo?: boolean };

function setup(chargers: { mac: string; attenuationDb?: number; faults?: EvseFault[] }[], evModem: EvModemOptions = {}): Bench {
  const clock = new VirtualClock(1_000);
  const segment = new SimSegment();
  const evStation = segment.attach(EV_MAC, 'ev');
  const link = new TrackingLink(evStation);
  const sims = chargers.map((c, i) => startSimCharger(segment, {
    evseMac: c.mac, clock, nid: `0${i + 1}0203040506ab`, nmk: `${String(i + 1).padStart(2, '0')}112233445566778899aabbccddeeff`,
    evseId: `EVSE-${i + 1}`, ...(c.attenuationDb !== undefined ? { attenuationDb: c.attenuationDb } : {}), faults: c.faults ?? [],
  }));
  const modem = startSimEvModem(segment, { hostMac: EV_MAC, clock, ...evModem });
  const b: Bench = {
    clock, evClock: new TrackingClock(clock), segment, link, chargers: sims, evModem: modem,
    async close() {
      for (const c of sims) await c.close();
      await modem.close();
      await evStation.close();
    },
  };
  bench = b;
  return b;
}

function start(b: Bench, settings: Record<string, unknown> = {}, signal?: AbortSignal): Promise<SlacResult> {
  return runSlac({ link: b.link, clock: b.evClock, log: silentLogger(), settings, ...(signal ? { signal } : {}) });
}

/** The EV left nothing behind: no timer armed, no listener on the link; and, with the sims closed, no timer at all. */
async function expectClean(b: Bench): Promise<void> {
  expect(b.evClock.active.size).toBe(0);
  expect(b.link.listeners).toBe(0);
  for (const c of b.chargers) await c.close();
  await b.evModem.close();
  expect(b.clock.pending).toBe(0);
}

function sentTypes(b: Bench): string[] {
  return b.link.sent.map((f) => {
    if (isVendorMme(f)) {
      const v = decodeQcaFrame(f);
      return v.ok ? v.frame.message.type : 'undecodable';
    }
    const r = decodeFrame(f);
    return r.ok ? r.frame.message.type : 'undecodable';
  });
}

async function expectFailure(b: Bench, p: Promise<SlacResult>, code: string): Promise<SlacError> {
  const r = await settle(p, b.clock);
  expect(r.ok).toBe(false);
  const err = (r as { error: unknown }).error;
  expect(err).toBeInstanceOf(SlacError);
  expect((err as SlacError).code).toBe(code);
  await expectClean(b);
  return err as SlacError;
}

describe('SLAC EV on a simulated segment', () => {
  it('matches a single charger and sets exactly the NMK/NID of CM_SLAC_MATCH.CNF into its local modem', async () => {
    const b = setup([{ mac: '02:00:00:00:c0:01', attenuationDb: 22 }]);
    const r = await settle(start(b), b.clock);
    expect(r.ok).toBe(true);
    const res = (r as { value: SlacResult }).value;
    expect(res.evseMac).toBe('02:00:00:00:c0:01');
    expect(toHex(res.nmk)).toBe(toHex(b.chargers[0]!.nmk));
    expect(toHex(res.nid)).toBe(toHex(b.chargers[0]!.nid));
    expect(b.evModem.keys).toHaveLength(1);
    expect(b.evModem.keys[0]).toMatchObject({ host: EV_MAC, nmk: toHex(res.nmk), nid: toHex(res.nid) });
    expect(res.evses).toEqual([expect.objectContaining({ mac: '02:00:00:00:c0:01', parmCnf: true, averageAttenuationDb: 22, soundsReceived: 10, chosen: true })]);
    expect(sentTypes(b)).toEqual([
      'CM_SLAC_PARM.REQ', ...Array(3).fill('CM_START_ATTEN_CHAR.IND'), ...Array(10).fill('CM_MNBC_SOUND.IND'),
      'CM_ATTEN_CHAR.RSP', 'CM_SLAC_MATCH.REQ', 'CM_SET_KEY.REQ',
      // The join proof (default linkUp): first poll, then the modem's indications 0x09 and 0x0a, each answered.
      'VS_NW_INFO.REQ', 'VS_HST_ACTION.RSP', 'VS_HST_ACTION.RSP',
    ]);
    expect(res.link).toMatchObject({ proof: 'VS_HST_ACTION.IND', hostActions: [0x09, 0x0a], modemMac: macToString(b.evModem.modemMac) });
    expect(b.evModem.hostActionRsps).toEqual([0x09, 0x0a]);
    expect(b.chargers[0]!.modem.profilesSent).toBe(10);
    await expectClean(b);
  });

  it('with two chargers on one segment picks the lower attenuation and reports both', async () => {
    const b = setup([{ mac: '02:00:00:00:c0:01', attenuationDb: 31 }, { mac: '02:00:00:00:c0:02', attenuationDb: 17 }]);
    const r = await settle(start(b), b.clock);
    expect(r.ok).toBe(true);
    const res = (r as { value: SlacResult }).value;
    expect(res.evseMac).toBe('02:00:00:00:c0:02');
    expect(toHex(res.nmk)).toBe(toHex(b.chargers[1]!.nmk));
    const byMac = Object.fromEntries(res.evses.map((e) => [e.mac, e]));
    expect(Object.keys(byMac).sort()).toEqual(['02:00:00:00:c0:01', '02:00:00:00:c0:02']);
    expect(byMac['02:00:00:00:c0:01']).toMatchObject({ averageAttenuationDb: 31, chosen: false, parmCnf: true });
    expect(byMac['02:00:00:00:c0:01']!.rejected).toMatch(/higher attenuation/);
    expect(byMac['02:00:00:00:c0:02']).toMatchObject({ averageAttenuationDb: 17, chosen: true });
    // Both chargers got their CM_ATTEN_CHAR.RSP; only the chosen one a MATCH.REQ.
    const rsps = b.link.sent.map(decodeFrame).filter((d) => d.ok && d.frame.message.type === 'CM_ATTEN_CHAR.RSP');
    expect(rsps.map((d) => d.ok && macToString(d.frame.dst)).sort()).toEqual(['02:00:00:00:c0:01', '02:00:00:00:c0:02']);
    expect(b.chargers[1]!.evse.matched).toEqual([EV_MAC]);
    expect(b.chargers[0]!.evse.matched).toEqual([]);
    await expectClean(b);
  });

  it('rejects every charger above the attenuation threshold', async () => {
    const b = setup([{ mac: '02:00:00:00:c0:01', attenuationDb: 55 }]);
    const err = await expectFailure(b, start(b, { maxAverageAttenuationDb: 40 }), 'SLAC_NO_SUITABLE_EVSE');
    expect(err.details.evses).toEqual([expect.objectContaining({ averageAttenuationDb: 55, chosen: false })]);
  });

  describe('the modem joins the charger\'s AVLN after CM_SET_KEY (TT_match_join)', () => {
    it('a modem that joins 7 s late: SLAC waits for its indication, then succeeds within TT_match_join', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { joinDelayMs: 7000 });
      const r = await settle(start(b), b.clock);
      expect(r.ok).toBe(true);
      const res = (r as { value: SlacResult }).value;
      expect(res.link.proof).toBe('VS_HST_ACTION.IND');
      expect(res.link.afterKeySetMs).toBeGreaterThanOrEqual(7000);
      expect(res.link.afterKeySetMs).toBeLessThan(7100);
      // Polled all along (every 500 ms), and the modem said "no AVLN" each time before the join.
      expect(res.link.nwInfoPolls).toBeGreaterThanOrEqual(14);
      expect(b.evModem.nwInfoAnswered).toBe(res.link.nwInfoPolls);
      expect(b.evModem.joinedNid).toBe(toHex(res.nid));
      await expectClean(b);
    });

    it('a late modem that only answers VS_NW_INFO (no indication): found by polling, the charger bridged', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { joinDelayMs: 3000, noHostActionInd: true });
      const r = await settle(start(b), b.clock);
      expect(r.ok).toBe(true);
      const res = (r as { value: SlacResult }).value;
      expect(res.link).toMatchObject({ proof: 'VS_NW_INFO.CNF', evseBridged: true, hostActions: [] });
      expect(res.link.afterKeySetMs).toBeGreaterThanOrEqual(3000);
      await expectClean(b);
    });

    it('a modem that only indicates (no VS_NW_INFO answers) with linkUp vendor-indication', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { joinDelayMs: 2000, noNwInfo: true });
      const r = await settle(start(b, { linkUp: 'vendor-indication' }), b.clock);
      expect(r.ok).toBe(true);
      expect((r as { value: SlacResult }).value.link).toMatchObject({ proof: 'VS_HST_ACTION.IND', nwInfoPolls: 0 });
      expect(sentTypes(b)).not.toContain('VS_NW_INFO.REQ');
      await expectClean(b);
    });

    it('a modem that never joins: SLAC_LINK_NOT_JOINED after TT_match_join (12 s), no SDP-worthy result', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { neverJoin: true });
      const t0 = b.clock.now();
      const err = await expectFailure(b, start(b), 'SLAC_LINK_NOT_JOINED');
      expect(b.clock.now() - t0).toBeGreaterThanOrEqual(12_000);
      expect(err.details).toMatchObject({ hostActions: [0x09], state: 'WaitForNwInfoCnf' });
      expect(err.message).toMatch(/in no AVLN/);
    });

    it('a modem that joins later than TT_match_join fails the same way (the deadline is a setting)', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { joinDelayMs: 5000 });
      await expectFailure(b, start(b, { matchJoinTimeoutMs: 4000 }), 'SLAC_LINK_NOT_JOINED');
    });

    it('linkUp immediate (links without such a modem): Matched at the key, no vendor MME sent', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { neverJoin: true });
      const r = await settle(start(b, { linkUp: 'immediate' }), b.clock);
      expect(r.ok).toBe(true);
      expect((r as { value: SlacResult }).value.link.proof).toBe('immediate');
      expect(sentTypes(b).filter((t) => t.startsWith('VS_'))).toEqual([]);
      await expectClean(b);
    });
  });

  describe('faults end in a typed error and a clean state', () => {
    it('no CM_SLAC_PARM.CNF: retries C_EV_match_retry times, then SLAC_TIMEOUT_PARM_CNF', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01', faults: ['noParmCnf'] }]);
      await expectFailure(b, start(b), 'SLAC_TIMEOUT_PARM_CNF');
      expect(sentTypes(b)).toEqual(['CM_SLAC_PARM.REQ', 'CM_SLAC_PARM.REQ', 'CM_SLAC_PARM.REQ']);
    });

    it('PARM.REQ retries are a setting (field chargers need many)', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01', faults: ['noParmCnf'] }]);
      await expectFailure(b, start(b, { parmReqRetries: 7 }), 'SLAC_TIMEOUT_PARM_CNF');
      expect(sentTypes(b).filter((t) => t === 'CM_SLAC_PARM.REQ')).toHaveLength(8);
    });

    it('no CM_ATTEN_CHAR.IND: SLAC_TIMEOUT_ATTEN_CHAR after the sounding', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01', faults: ['noAttenCharInd'] }]);
      const err = await expectFailure(b, start(b), 'SLAC_TIMEOUT_ATTEN_CHAR');
      expect(err.details.evses).toEqual([expect.objectContaining({ mac: '02:00:00:00:c0:01', parmCnf: true })]);
      expect(sentTypes(b).filter((t) => t === 'CM_MNBC_SOUND.IND')).toHaveLength(10);
    });

    it('a second charger that never reports is waited for until TT_EV_atten_results, then the reporting one is matched', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01', attenuationDb: 26 }, { mac: '02:00:00:00:c0:02', faults: ['noAttenCharInd'] }]);
      const r = await settle(start(b), b.clock);
      expect(r.ok).toBe(true);
      const res = (r as { value: SlacResult }).value;
      expect(res.evseMac).toBe('02:00:00:00:c0:01');
      expect(res.evses).toEqual([
        expect.objectContaining({ mac: '02:00:00:00:c0:01', chosen: true }),
        expect.objectContaining({ mac: '02:00:00:00:c0:02', parmCnf: true, chosen: false }),
      ]);
      expect(res.evses[1]!.averageAttenuationDb).toBeUndefined();
      expect(res.timings.decided).toBeGreaterThanOrEqual(1200); // the whole window, since one charger stayed silent
      await expectClean(b);
    });

    it('no CM_SLAC_MATCH.CNF: retries, then SLAC_TIMEOUT_MATCH', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01', faults: ['noMatchCnf'] }]);
      await expectFailure(b, start(b), 'SLAC_TIMEOUT_MATCH');
      expect(sentTypes(b).filter((t) => t === 'CM_SLAC_MATCH.REQ')).toHaveLength(3);
      expect(b.evModem.keys).toHaveLength(0);
    });

    it('the local modem never confirms CM_SET_KEY: SLAC_TIMEOUT_SET_KEY', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { ignoreSetKey: true });
      await expectFailure(b, start(b), 'SLAC_TIMEOUT_SET_KEY');
      expect(sentTypes(b).filter((t) => t === 'CM_SET_KEY.REQ')).toHaveLength(3);
    });

    it('the local modem refuses the key: SLAC_SET_KEY_REJECTED (Result 0x01 and 0x00 both count as success)', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { setKeyResult: 0x07 });
      await expectFailure(b, start(b), 'SLAC_SET_KEY_REJECTED');
    });

    it('a modem answering Result 0x00 (Green PHY reading) is accepted', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01' }], { setKeyResult: 0x00 });
      const r = await settle(start(b), b.clock);
      expect(r.ok).toBe(true);
      await expectClean(b);
    });

    it('a charger answering with a foreign RunID is ignored (alone: SLAC_TIMEOUT_PARM_CNF)', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01', faults: ['foreignRunId'] }]);
      await expectFailure(b, start(b), 'SLAC_TIMEOUT_PARM_CNF');
    });

    it('foreign RunIDs and garbage frames mixed into the exchange are dropped; the good charger is matched', async () => {
      const b = setup([
        { mac: '02:00:00:00:c0:01', attenuationDb: 5, faults: ['foreignRunId', 'garbage'] },
        { mac: '02:00:00:00:c0:02', attenuationDb: 25, faults: ['garbage'] },
      ]);
      // A rogue station injects random and mutated frames to the EV and to broadcast throughout the exchange.
      const rogue = b.segment.attach('02:00:00:00:66:66', 'rogue');
      const samples = fc.sample(fc.uint8Array({ minLength: 0, maxLength: 400 }), { numRuns: 200, seed: 42 });
      let i = 0;
      const unsubscribe = b.link.inner.onFrame(() => {
        if (i >= samples.length) return;
        const junk = Uint8Array.from(samples[i++]!);
        if (junk.length >= 14) {
          junk.set(i % 2 ? [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] : b.link.mac, 0);
          if (i % 3) { junk[12] = 0x88; junk[13] = 0xe1; junk[14] = 1; junk[15] = [0x65, 0x6e, 0x7d, 0x09][i % 4]!; junk[16] = 0x60; }
        }
        if (junk.length >= 14) void rogue.send(junk);
      });
      const r = await settle(start(b), b.clock);
      unsubscribe();
      await rogue.close();
      expect(r.ok).toBe(true);
      const res = (r as { value: SlacResult }).value;
      expect(res.evseMac).toBe('02:00:00:00:c0:02');
      expect(res.evses.map((e) => e.mac)).toEqual(['02:00:00:00:c0:02']);
      expect(i).toBeGreaterThan(10);
      await expectClean(b);
    });

    it('abort via signal: SLAC_ABORTED', async () => {
      const b = setup([{ mac: '02:00:00:00:c0:01', faults: ['noParmCnf'] }]);
      const ac = new AbortController();
      const p = start(b, {}, ac.signal);
      await drain();
      ac.abort(new Error('unplugged'));
      await expectFailure(b, p, 'SLAC_ABORTED');
    });
  });
});
