import { describe, expect, it } from 'vitest';
import type { EvStatus } from '../../hal/ev/types.ts';
import { answerSupportedAppProtocolReq } from './app-handshake.ts';
import { decodeV2gMessage, encodeV2gMessage } from '../exi/index.ts';
import { SessionEngine, type SessionOutput } from './engine.ts';
import { next, stopWith, type ProtocolModule, type Step } from './exchange.ts';
import { ISO2_TIMERS } from './timers.ts';
import { fromPhysical, toPhysical } from './units.ts';

const ISO2_NS = 'urn:iso:15118:2:2013:MsgDef';
const OFFER = [{ namespace: ISO2_NS, major: 2, minor: 0, schemaId: 1, priority: 1 }];

const EV_STATUS: EvStatus = {
  socPercent: 20, batteryVoltageV: 350, targetVoltageV: 360, targetCurrentA: 100, ready: true, errorCode: 'NO_ERROR',
  chargingComplete: false, bulkChargingComplete: false, energyRequestWh: 30_000, stopRequested: false, pauseRequested: false,
  contactorsClosed: false, energyDeliveredWh: 0,
};
const EV = {
  limits: { maxVoltageV: 450, maxCurrentA: 200, minCurrentA: 6, maxPowerW: 80_000, energyCapacityWh: 60_000, fullSocPercent: 100, bulkSocPercent: 80 },
  status: () => EV_STATUS,
};

interface Ctx { sessionId?: string; stopReqs: number }

/** A two-message set (SessionSetup → SessionStop) that exercises the exchange core only. */
function tinyModule(): ProtocolModule<Ctx> {
  const ctx: Ctx = { stopReqs: 0 };
  const setup: Step<Ctx> = {
    request: 'SessionSetupReq', response: 'SessionSetupRes', timeout: () => ISO2_TIMERS.msgDefault,
    build: () => ({ body: { SessionSetupReq: { EVCCID: '02e7cc000001' } } }),
    check: (res) => (typeof res.EVSEID === 'string' ? undefined : 'EVSEID'),
    handle: (res, c) => {
      c.sessionId = String((res as { __sid?: string }).__sid ?? '');
      return next('stop');
    },
  };
  const stop: Step<Ctx> = {
    request: 'SessionStopReq', response: 'SessionStopRes', timeout: () => ISO2_TIMERS.msgDefault,
    build: (c) => { c.stopReqs++; return { body: { SessionStopReq: { ChargingSession: 'Terminate' } } }; },
    handle: () => ({ kind: 'end', paused: false }),
  };
  return {
    protocol: 'iso2', schema: 'iso2', subsystem: 'ISO2', codePrefix: 'ISO2', first: 'setup', steps: { setup, stop }, ctx,
    header: (c) => ({ SessionID: c.sessionId ?? '00' }),
    expectedSessionId: (c) => c.sessionId,
    stopPath: (from) => (from === 'stop' ? undefined : 'stop'),
    summary: (c) => ({ protocol: 'iso2', ...(c.sessionId ? { sessionId: c.sessionId } : {}) }),
  };
}

/** SECC answers as a function of the decoded request. */
type Secc = (req: { Header: Record<string, unknown>; Body: Record<string, unknown> }) => Uint8Array | undefined;

function run(secc: Secc, o: { module?: () => ProtocolModule<Ctx>; silentAt?: string } = {}) {
  let mod: ProtocolModule<Ctx> | undefined;
  const engine = new SessionEngine({ ev: EV, offer: OFFER, modules: { [ISO2_NS]: () => (mod = (o.module ?? tinyModule)()) as ProtocolModule<unknown> } });
  let now = 0;
  const outs: SessionOutput[] = [];
  let out = engine.step({ kind: 'start', now });
  for (let i = 0; i < 100 && !out.result; i++) {
    outs.push(out);
    if (out.send) {
      const bytes = out.send.bytes;
      let answer: Uint8Array | undefined;
      if (!mod) answer = answerSupportedAppProtocolReq(bytes, [{ namespace: ISO2_NS, major: 2, minor: 0 }]);
      else answer = secc(decodeV2gMessage('iso2', bytes) as never);
      now += 5;
      if (answer) { out = engine.step({ kind: 'payload', now, payloadType: 0x8001, bytes: answer }); continue; }
    }
    if (out.deadline === undefined) throw new Error('engine stalled without a deadline');
    now = out.deadline;
    out = engine.step({ kind: 'timer', now });
  }
  outs.push(out);
  return { result: out.result!, outs, ctx: mod?.ctx, events: outs.flatMap((x) => x.events) };
}

const SID = '0a0b0c0d0e0f1011';
const res = (body: Record<string, unknown>, sid = SID) => encodeV2gMessage('iso2', { Header: { SessionID: sid }, Body: body as never });

describe('session engine: the exchange core', () => {
  it('runs SupportedAppProtocol, then the module steps to SessionStopRes, in order, with the SECC SessionID', () => {
    const r = run((req) => {
      if (req.Body.SessionSetupReq) return res({ SessionSetupRes: { ResponseCode: 'OK_NewSessionEstablished', EVSEID: 'DE*ABC*E1' } });
      expect(req.Header.SessionID).toBe(SID);
      return res({ SessionStopRes: { ResponseCode: 'OK' } });
    }, { module: () => { const m = tinyModule(); m.steps.setup!.handle = (_r, c) => { c.sessionId = SID; return next('stop'); }; return m; } });
    expect(r.result).toMatchObject({ outcome: 'completed', orderly: true, reason: { code: 'SESSION_COMPLETED' }, requests: { supportedAppProtocolReq: 1, SessionSetupReq: 1, SessionStopReq: 1 } });
    expect(r.result.timeline.map((t) => t.state)).toEqual(['WaitForSupportedAppProtocolRes', 'WaitForSessionSetupRes', 'WaitForSessionStopRes', 'Ended']);
    expect(r.events.filter((e) => e.type === 'checkpoint').map((e) => (e as { id: string }).id)).toEqual(['APPHAND_OK', 'SESSION_SETUP_OK', 'SESSION_COMPLETED']);
  });

  it('a response with another SessionID is a typed failure and the session still stops in order', () => {
    let stops = 0;
    const r = run((req) => {
      if (req.Body.SessionSetupReq) return res({ SessionSetupRes: { ResponseCode: 'OK', EVSEID: 'E1' } });
      stops++;
      return res({ SessionStopRes: { ResponseCode: 'OK' } }, 'ffffffffffffffff');
    }, { module: () => { const m = tinyModule(); m.steps.setup!.handle = (_r, c) => { c.sessionId = SID; return next('stop'); }; return m; } });
    // The stop path's own response is the mismatching one: the session ends, typed, not in order, after one try.
    expect(r.result).toMatchObject({ outcome: 'failed', orderly: false, reason: { code: 'ISO2_SESSION_ID_MISMATCH' } });
    expect(stops).toBe(1);
  });

  it('FAILED_* response codes end with ISO2_RESPONSE_FAILED naming the code, after an orderly SessionStop', () => {
    const r = run((req) => req.Body.SessionSetupReq
      ? res({ SessionSetupRes: { ResponseCode: 'FAILED', EVSEID: 'E1' } }, '00')
      : res({ SessionStopRes: { ResponseCode: 'OK' } }, '00'));
    expect(r.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_RESPONSE_FAILED', details: { responseCode: 'FAILED' } } });
    expect(r.result.requests.SessionStopReq).toBe(1);
  });

  it('a response lacking a mandatory field is never acted on (ISO2_INVALID_RESPONSE names the field)', () => {
    // EVSEID is mandatory in the schema, but a non-strict stream may end the element early: simulate the decoded form.
    const m = tinyModule();
    m.steps.setup!.check = () => 'EVSEID';
    const r = run((req) => req.Body.SessionSetupReq ? res({ SessionSetupRes: { ResponseCode: 'OK', EVSEID: 'E1' } }) : res({ SessionStopRes: { ResponseCode: 'OK' } }), { module: () => m });
    expect(r.result.reason).toMatchObject({ code: 'ISO2_INVALID_RESPONSE', details: { field: 'EVSEID' } });
  });

  it('silence ends with ISO2_TIMEOUT after exactly V2G_EVCC_Msg_Timeout', () => {
    const r = run((req) => (req.Body.SessionSetupReq ? undefined : res({ SessionStopRes: { ResponseCode: 'OK' } })));
    expect(r.result).toMatchObject({ outcome: 'failed', orderly: false, reason: { code: 'ISO2_TIMEOUT' } });
    expect(r.result.timeline.find((t) => t.state === 'WaitForSessionSetupRes')?.ms).toBe(2_000);
  });

  it('a wrong message type and garbage are typed failures, never a throw', () => {
    const wrong = run((req) => req.Body.SessionSetupReq ? res({ SessionStopRes: { ResponseCode: 'OK' } }) : res({ SessionStopRes: { ResponseCode: 'OK' } }));
    expect(wrong.result.reason.code).toBe('ISO2_UNEXPECTED_MESSAGE');
    const garbage = run(() => Uint8Array.of(0x80, 0xff, 0xff, 0xff));
    expect(garbage.result.reason.code).toBe('ISO2_DECODE_FAILED');
  });

  it('a module that stops with a reason goes through its stop path; the first reason is the one reported', () => {
    const m = tinyModule();
    m.steps.setup!.handle = () => stopWith({ code: 'ISO2_EVSE_EMERGENCY_SHUTDOWN', message: 'EVSE_EmergencyShutdown', failure: true });
    const r = run((req) => req.Body.SessionSetupReq ? res({ SessionSetupRes: { ResponseCode: 'OK', EVSEID: 'E1' } }, '00') : res({ SessionStopRes: { ResponseCode: 'OK' } }, '00'), { module: () => m });
    expect(r.result).toMatchObject({ outcome: 'failed', orderly: true, reason: { code: 'ISO2_EVSE_EMERGENCY_SHUTDOWN' } });
  });
});

describe('PhysicalValue', () => {
  it('uses the finest multiplier that fits 16 bits, and round-trips', () => {
    expect(toPhysical(400.5, 'V')).toEqual({ Multiplier: -1, Unit: 'V', Value: 4005 });
    expect(toPhysical(150_000, 'W')).toEqual({ Multiplier: 1, Unit: 'W', Value: 15_000 });
    expect(toPhysical(0, 'A', { withUnit: false })).toEqual({ Multiplier: -3, Value: 0 });
    for (const v of [0.001, 12.5, 399.9, 920, 32_767, 350_000, 3_000_000]) expect(fromPhysical(toPhysical(v, 'W'))).toBeCloseTo(v, 0);
    expect(() => toPhysical(1e12, 'W')).toThrow(expect.objectContaining({ code: 'SESSION_VALUE_RANGE' }));
  });
});
