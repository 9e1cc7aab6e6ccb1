import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, macFromString, type SlacMessage } from './codec.ts';
import { SlacEngine, type SlacOutput } from './engine.ts';
import { slacSettings } from './settings.ts';
import { decodeQcaFrame, encodeQcaFrame, type QcaMessage } from './qca-vendor.ts';

/** The engine alone: inputs with explicit times, outputs checked frame by frame. No driver, no clock, no link. */
const EV = macFromString('02:00:00:00:ee:01');
const SE = macFromString('02:00:00:00:c0:01');
const RUN = Uint8Array.of(9, 8, 7, 6, 5, 4, 3, 2);
const zeros = (n: number) => new Uint8Array(n);

function engine(settings: Record<string, unknown> = {}) {
  let r = 0;
  return new SlacEngine({ mac: EV, settings: slacSettings(settings), runId: RUN, random: (n) => new Uint8Array(n).fill(++r) });
}
const from = (message: SlacMessage, src = SE, dst = EV) => encodeFrame({ dst, src, message });
const MODEM = macFromString('00:b0:52:11:22:33');
const vendor = (message: QcaMessage, src = MODEM, mmv: 0 | 1 = 0) => encodeQcaFrame({ dst: EV, src, mmv, message });
const vtypes = (o: SlacOutput) => o.send.map((f) => { const d = decodeQcaFrame(f); return d.ok ? d.frame.message.type : '?'; }).filter((t) => t !== '?');
const types = (o: SlacOutput) => o.send.map((f) => { const d = decodeFrame(f); return d.ok ? d.frame.message.type : '?'; });
const parmCnf = (runId = RUN) => from({ type: 'CM_SLAC_PARM.CNF', msoundTarget: macFromString('ff:ff:ff:ff:ff:ff'), numSounds: 10, timeOut: 6, respType: 0, forwardingSta: EV, applicationType: 0, securityType: 0, runId });
const attenInd = (db: number, src = SE) => from({ type: 'CM_ATTEN_CHAR.IND', applicationType: 0, securityType: 0, sourceAddress: EV, runId: RUN, sourceId: zeros(17), respId: zeros(17), numSounds: 10, groups: new Uint8Array(58).fill(db) }, src);

describe('SlacEngine (pure)', () => {
  it('runs the EV sequence with the standard timers as deadlines', () => {
    const e = engine();
    let o = e.step({ kind: 'start', now: 1000 });
    expect(types(o)).toEqual(['CM_SLAC_PARM.REQ']);
    expect(o).toMatchObject({ state: 'WaitForParmCnf', deadline: 1200 }); // TT_match_response
    expect(e.step({ kind: 'timer', now: 1100 }).send).toEqual([]); // not due yet
    o = e.step({ kind: 'frame', now: 1010, bytes: parmCnf() });
    expect(types(o)).toEqual(['CM_START_ATTEN_CHAR.IND']); // TP_match_sequence: at once
    expect(o).toMatchObject({ state: 'Sounding', deadline: 1050 }); // TP_EV_batch_msg_interval 40 ms
    const sent: string[] = [];
    let now = 1010;
    for (let i = 0; i < 12; i++) {
      now += 40;
      o = e.step({ kind: 'timer', now });
      sent.push(...types(o));
    }
    expect(sent).toEqual(['CM_START_ATTEN_CHAR.IND', 'CM_START_ATTEN_CHAR.IND', ...Array(10).fill('CM_MNBC_SOUND.IND')]);
    expect(o).toMatchObject({ state: 'WaitForAttenCharInd', deadline: 1010 + 1200 }); // TT_EV_atten_results from the first START
    o = e.step({ kind: 'frame', now: now + 5, bytes: attenInd(20) });
    expect(types(o)).toEqual(['CM_ATTEN_CHAR.RSP', 'CM_SLAC_MATCH.REQ']); // every answering charger reported: decide now
    expect(o.state).toBe('WaitForMatchCnf');
    o = e.step({ kind: 'frame', now: now + 6, bytes: from({ type: 'CM_SLAC_MATCH.CNF', applicationType: 0, securityType: 0, pevId: zeros(17), pevMac: EV, evseId: zeros(17), evseMac: SE, runId: RUN, nid: Uint8Array.of(1, 2, 3, 4, 5, 6, 7), nmk: new Uint8Array(16).fill(0x42) }) });
    expect(types(o)).toEqual(['CM_SET_KEY.REQ']);
    const setKey = decodeFrame(o.send[0]!);
    expect(setKey.ok && setKey.frame.dst).toEqual(macFromString('00:b0:52:00:00:01'));
    o = e.step({ kind: 'frame', now: now + 7, bytes: from({ type: 'CM_SET_KEY.CNF', result: 1, myNonce: 0, yourNonce: 0, pid: 4, prn: 0, pmn: 0, ccoCapability: 0 }, macFromString('00:b0:52:11:22:33')) });
    expect(types(o)).toEqual(['?']); // a vendor MME, not a SLAC one
    expect(vtypes(o)).toEqual(['VS_NW_INFO.REQ']);
    expect(o).toMatchObject({ state: 'WaitForNwInfoCnf', deadline: now + 7 + 500 }); // first poll; TT_match_join bounds the wait
    o = e.step({ kind: 'frame', now: now + 8, bytes: vendor({ type: 'VS_HST_ACTION.IND', action: 0x0a, sessionId: 0, outstandingRetries: 0, retryTimer10ms: 0 }) });
    expect(vtypes(o)).toEqual(['VS_HST_ACTION.RSP']);
    expect(o.state).toBe('Matched');
    expect(o.result!.link).toMatchObject({ proof: 'VS_HST_ACTION.IND', afterKeySetMs: 1, modemMac: '00:b0:52:11:22:33', hostActions: [0x0a] });
    expect(o.result).toMatchObject({ evseMac: '02:00:00:00:c0:01', retries: { parmReq: 0, matchReq: 0, setKey: 0 } });
    expect(o.deadline).toBeUndefined();
  });

  it('drops foreign RunIDs, foreign destinations and its own frames without output', () => {
    const e = engine();
    e.step({ kind: 'start', now: 0 });
    for (const bytes of [parmCnf(Uint8Array.of(1, 1, 1, 1, 1, 1, 1, 1)), from({ type: 'CM_SLAC_PARM.CNF', msoundTarget: EV, numSounds: 10, timeOut: 6, respType: 0, forwardingSta: EV, applicationType: 0, securityType: 0, runId: RUN }, SE, SE), parmCnf().fill(0, 6, 12).map((b, i) => (i >= 6 && i < 12 ? EV[i - 6]! : b)), Uint8Array.of(1, 2, 3)]) {
      const o = e.step({ kind: 'frame', now: 1, bytes });
      expect(o.send).toEqual([]);
      expect(o.events.map((ev) => ev.type)).toEqual(['dropped']);
      expect(o.state).toBe('WaitForParmCnf');
    }
  });

  it('with early decision off, waits out TT_EV_atten_results and then picks the lowest of all reports', () => {
    const e = engine({ attenResultsEarlyDecision: false });
    e.step({ kind: 'start', now: 0 });
    e.step({ kind: 'frame', now: 1, bytes: parmCnf() });
    for (let t = 41; t <= 481; t += 40) e.step({ kind: 'timer', now: t });
    let o = e.step({ kind: 'frame', now: 500, bytes: attenInd(30) });
    expect(types(o)).toEqual(['CM_ATTEN_CHAR.RSP']);
    const late = macFromString('02:00:00:00:c0:02'); // never sent PARM.CNF (lost), reports anyway
    o = e.step({ kind: 'frame', now: 600, bytes: attenInd(12, late) });
    expect(types(o)).toEqual(['CM_ATTEN_CHAR.RSP']);
    o = e.step({ kind: 'timer', now: 1201 });
    expect(types(o)).toEqual(['CM_SLAC_MATCH.REQ']);
    const req = decodeFrame(o.send[0]!);
    expect(req.ok && req.frame.dst).toEqual(late);
  });

  it('a repeated CM_ATTEN_CHAR.IND is answered again but counted once', () => {
    const e = engine({ attenResultsEarlyDecision: false });
    e.step({ kind: 'start', now: 0 });
    e.step({ kind: 'frame', now: 1, bytes: parmCnf() });
    e.step({ kind: 'frame', now: 2, bytes: attenInd(30) });
    const o = e.step({ kind: 'frame', now: 3, bytes: attenInd(5) });
    expect(types(o)).toEqual(['CM_ATTEN_CHAR.RSP']);
    expect(e.observations()).toEqual([expect.objectContaining({ averageAttenuationDb: 30 })]);
  });
});

const NID = Uint8Array.of(1, 2, 3, 4, 5, 6, 7);
/** Drives an engine to CM_SET_KEY.CNF at t=100; returns it and the output of that step. */
function keySet(settings: Record<string, unknown> = {}) {
  const e = engine(settings);
  e.step({ kind: 'start', now: 0 });
  e.step({ kind: 'frame', now: 1, bytes: parmCnf() });
  for (let t = 41; t <= 481; t += 40) e.step({ kind: 'timer', now: t });
  e.step({ kind: 'frame', now: 490, bytes: attenInd(20) });
  e.step({ kind: 'frame', now: 495, bytes: from({ type: 'CM_SLAC_MATCH.CNF', applicationType: 0, securityType: 0, pevId: zeros(17), pevMac: EV, evseId: zeros(17), evseMac: SE, runId: RUN, nid: NID, nmk: new Uint8Array(16).fill(0x42) }) });
  const o = e.step({ kind: 'frame', now: 500, bytes: from({ type: 'CM_SET_KEY.CNF', result: 1, myNonce: 0, yourNonce: 0, pid: 4, prn: 0, pmn: 0, ccoCapability: 0 }, MODEM) });
  return { e, o };
}
const avln = (nid: Uint8Array, stations = 1) => ({
  nid, snid: 1, tei: 2, role: 0, ccoMac: macFromString('00:b0:52:00:00:c1'), ccoTei: 1,
  stations: Array.from({ length: stations }, () => ({ mac: macFromString('00:b0:52:00:00:c1'), tei: 1, bda: SE, avgPhyTxMbps: 9, avgPhyRxMbps: 9 })),
});

describe('SlacEngine: the modem joins the charger\'s AVLN after CM_SET_KEY (virtual time)', () => {
  it('a late join (7 s, as one charger needs) found by VS_NW_INFO polling within TT_match_join', () => {
    const { e, o } = keySet({ linkUp: 'nw-info' });
    expect(o).toMatchObject({ state: 'WaitForNwInfoCnf', deadline: 1000 });
    let polls = 1;
    let now = 500;
    // The modem is in no AVLN until 7 s after the key, then in the charger's.
    for (;;) {
      now = e.step({ kind: 'timer', now: 0 }).deadline ?? now; // not due: no output
      const t = e.step({ kind: 'timer', now });
      polls += vtypes(t).length;
      expect(t.state).toBe('WaitForNwInfoCnf');
      const joined = now - 500 >= 7000;
      const r = e.step({ kind: 'frame', now, bytes: vendor({ type: 'VS_NW_INFO.CNF', avlns: joined ? [avln(NID)] : [] }, MODEM, 1) });
      if (joined) {
        expect(r.state).toBe('Matched');
        expect(r.result!.link).toMatchObject({ proof: 'VS_NW_INFO.CNF', afterKeySetMs: 7000, evseBridged: true, nwInfoPolls: polls });
        expect(r.result!.timings.linkReady).toBe(7500);
        break;
      }
      expect(r.state).toBe('WaitForNwInfoCnf');
    }
    expect(polls).toBe(15); // one every 500 ms
  });

  it('never joined: SLAC_LINK_NOT_JOINED at TT_match_join (12 s after the key), with what the modem said', () => {
    const { e } = keySet();
    let now = 500;
    let last: SlacOutput | undefined;
    for (let i = 0; i < 100 && (!last || last.state !== 'Failed'); i++) {
      now = last?.deadline ?? 1000;
      last = e.step({ kind: 'timer', now });
      if (last.state !== 'Failed') e.step({ kind: 'frame', now, bytes: vendor({ type: 'VS_NW_INFO.CNF', avlns: [avln(Uint8Array.of(9, 9, 9, 9, 9, 9, 9))] }, MODEM, 1) });
    }
    expect(now).toBe(500 + 12_000);
    expect(last!.error?.code).toBe('SLAC_LINK_NOT_JOINED');
    expect(last!.error?.details).toMatchObject({ nwInfoPolls: 24, linkUp: 'vendor-indication-or-nw-info' });
    expect(last!.error?.message).toMatch(/090909090909 ?09\/1 station/);
  });

  it('our NID without another station is not a join; 0x09 is not a join; only our modem counts', () => {
    const { e } = keySet();
    let o = e.step({ kind: 'frame', now: 600, bytes: vendor({ type: 'VS_NW_INFO.CNF', avlns: [avln(NID, 0)] }, MODEM, 1) });
    expect(o.state).toBe('WaitForNwInfoCnf');
    o = e.step({ kind: 'frame', now: 601, bytes: vendor({ type: 'VS_HST_ACTION.IND', action: 0x09, sessionId: 0, outstandingRetries: 0, retryTimer10ms: 0 }) });
    expect(vtypes(o)).toEqual(['VS_HST_ACTION.RSP']); // answered, so the modem stops repeating
    expect(o.state).toBe('WaitForNwInfoCnf');
    const rogue = macFromString('02:00:00:00:66:66');
    o = e.step({ kind: 'frame', now: 602, bytes: vendor({ type: 'VS_HST_ACTION.IND', action: 0x0a, sessionId: 0, outstandingRetries: 0, retryTimer10ms: 0 }, rogue) });
    expect(o.send).toEqual([]);
    expect(o.events).toEqual([expect.objectContaining({ type: 'dropped', reason: expect.stringMatching(/not our modem/) })]);
    o = e.step({ kind: 'frame', now: 603, bytes: vendor({ type: 'VS_NW_INFO.CNF', avlns: [avln(NID)] }, rogue, 1) });
    expect(o.state).toBe('WaitForNwInfoCnf');
    o = e.step({ kind: 'frame', now: 604, bytes: vendor({ type: 'VS_HST_ACTION.IND', action: 0x0a, sessionId: 0, outstandingRetries: 0, retryTimer10ms: 0 }) });
    expect(o.state).toBe('Matched');
    expect(o.result!.link.hostActions).toEqual([0x09, 0x0a]);
  });

  it('malformed vendor MMEs are dropped with a typed code, never thrown; the wait goes on', () => {
    const { e } = keySet();
    const good = vendor({ type: 'VS_NW_INFO.CNF', avlns: [avln(NID, 2)] }, MODEM, 1);
    const badOui = Uint8Array.from(good);
    badOui[19] = 0x11;
    const cases: [Uint8Array, string][] = [
      [good.slice(0, 40), 'SLAC_DECODE_TRUNCATED'], // 2 stations announced, frame cut
      [badOui, 'SLAC_DECODE_BAD_FIELD'],
      [Uint8Array.from(good).fill(0xa0, 15, 16), 'SLAC_DECODE_UNKNOWN_MMTYPE'],
      [Uint8Array.from(good).fill(7, 14, 15), 'SLAC_DECODE_BAD_MMV'],
    ];
    for (const [bytes, code] of cases) {
      const o = e.step({ kind: 'frame', now: 700, bytes });
      expect(o.events).toEqual([expect.objectContaining({ type: 'dropped', code })]);
      expect(o.state).toBe('WaitForNwInfoCnf');
    }
    fc.assert(fc.property(fc.uint8Array({ minLength: 17, maxLength: 300 }), fc.integer({ min: 0, max: 0xff }), (junk, lo) => {
      junk[12] = 0x88; junk[13] = 0xe1; junk[15] = lo; junk[16] = 0xa0;
      const o = e.step({ kind: 'frame', now: 701, bytes: junk });
      expect(o.send.length).toBeLessThanOrEqual(1);
    }), { numRuns: 300 });
  });

  it('vendor-indication only: waits for VS_HST_ACTION.IND, sends no poll; immediate: Matched at the key', () => {
    const v = keySet({ linkUp: 'vendor-indication' });
    expect(v.o).toMatchObject({ state: 'WaitForHostActionInd', deadline: 12_500 });
    expect(v.o.send).toEqual([]);
    expect(v.e.step({ kind: 'timer', now: 12_500 }).error?.code).toBe('SLAC_LINK_NOT_JOINED');
    const i = keySet({ linkUp: 'immediate' });
    expect(i.o.state).toBe('Matched');
    expect(i.o.result!.link).toMatchObject({ proof: 'immediate', afterKeySetMs: 0 });
  });

  it('rejects a linkUp mode that does not exist (validated config)', () => {
    expect(() => slacSettings({ linkUp: 'sometimes' })).toThrow(/linkUp/);
  });
});

describe('SlacEngine on a hostile segment', () => {
  it('never throws and keeps its bookkeeping bounded whatever frames arrive in whatever state', () => {
    const anyFrame = fc.oneof(
      fc.uint8Array({ maxLength: 400 }),
      // Valid-looking answers with our RunID from random stations (the RunID is broadcast, anyone can copy it).
      fc.tuple(fc.uint8Array({ minLength: 6, maxLength: 6 }), fc.integer({ min: 0, max: 255 })).map(([mac, db]) => attenInd(db, mac)),
      fc.uint8Array({ minLength: 6, maxLength: 6 }).map((mac) => { const f = parmCnf(); f.set(mac, 6); return f; }),
    );
    fc.assert(fc.property(fc.array(fc.tuple(anyFrame, fc.integer({ min: 0, max: 3 })), { maxLength: 80 }), (inputs) => {
      const e = engine({ maxChargers: 4, attenResultsEarlyDecision: false });
      let now = 0;
      e.step({ kind: 'start', now });
      for (const [bytes, tick] of inputs) {
        now += tick * 50;
        const o1 = e.step({ kind: 'timer', now });
        const o2 = e.step({ kind: 'frame', now, bytes });
        for (const o of [o1, o2]) expect(o.send.length).toBeLessThanOrEqual(3);
      }
      expect(e.observations().length).toBeLessThanOrEqual(4);
    }), { numRuns: 300 });
  });
});
