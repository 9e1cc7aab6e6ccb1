import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, macFromString, type SlacMessage } from './codec.ts';
import { SlacEngine, type SlacOutput } from './engine.ts';
import { slacSettings } from './settings.ts';

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
    expect(o).toMatchObject({ state: 'WaitForLinkJoin', deadline: now + 7 + 12_000 }); // TT_match_join
    o = e.step({ kind: 'linkReady', now: now + 8 });
    expect(o.state).toBe('Matched');
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
