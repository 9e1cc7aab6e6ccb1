import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { decodeV2gMessage, encodeAny } from '../../firmware/exi/index.ts';
import { sign as xmldsigSign, type SignedElement } from '../../firmware/exi/xmldsig/index.ts';
import { generateTestPki, type TestPki } from '../../firmware/pki/generate.ts';
import { SessionEngine, type SessionOutput, type SessionResult } from '../../firmware/session/engine.ts';
import { channelPlan, securityPolicy } from '../../firmware/vehicle/policy.ts';
import { contractFromPem } from '../../firmware/vehicle/contract.ts';
import { sessionModules, VehicleSessionSettings } from '../../firmware/vehicle/session-modules.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { SimEv } from '../../hal/ev/sim.ts';
import { answerAppProtocol, appProtocolsOf } from '../../sim/secc/app-protocol.ts';
import { createDinHandler } from '../../sim/secc/din.ts';
import { createIso2Handler } from '../../sim/secc/iso2.ts';
import { listScenarios, loadScenario, type Scenario } from '../../sim/secc/scenario.ts';
import type { SeccHandler } from '../../sim/secc/session.ts';
import { softwareSigner } from '../../sim/secc/test-support.ts';

/**
 * Every declared charger behaviour (sim/secc/scenarios/*.json) against the product's session path — the vehicle's
 * channel plan, the SupportedAppProtocol offer, the ISO-2 / DIN modules on the session engine — in virtual time (the
 * charger simulator's own sans-I/O handler, no sockets): each ends as a demanding user expects, completed or stopped
 * in order with its typed reason, and no state sends more requests than its pacing allows.
 * Transport-level scenarios (unknown root) are covered on real sockets by the main-job and netns tests.
 */
interface Expect {
  outcome: SessionResult['outcome'];
  code: string | RegExp;
  orderly: boolean;
  protocol?: 'iso2' | 'din';
  payment?: 'Contract' | 'ExternalPayment';
  /** Upper bounds on request counts (pacing). */
  atMost?: Record<string, number>;
  /** The last request the EV sent. */
  last?: string;
}

const EXPECT: Record<string, Expect> = {
  'normal-dc-pnc': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, protocol: 'iso2', payment: 'Contract', last: 'SessionStopReq' },
  'normal-dc-eim': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, protocol: 'iso2', payment: 'ExternalPayment', last: 'SessionStopReq' },
  'normal-ac-pnc': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, protocol: 'iso2', payment: 'Contract', atMost: { MeteringReceiptReq: 2 }, last: 'SessionStopReq' },
  'normal-ac-eim': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, protocol: 'iso2', payment: 'ExternalPayment', last: 'SessionStopReq' },
  'din-only': { outcome: 'completed', code: /SESSION_COMPLETED|DIN_EV_CHARGING_COMPLETE/, orderly: true, protocol: 'din', payment: 'ExternalPayment', last: 'SessionStopReq' },
  'din-picks-over-iso': { outcome: 'completed', code: /SESSION_COMPLETED|DIN_EV_CHARGING_COMPLETE/, orderly: true, protocol: 'din', last: 'SessionStopReq' },
  'no-tls': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, payment: 'ExternalPayment', last: 'SessionStopReq' },
  'pnc-offered-over-tcp': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, payment: 'ExternalPayment', last: 'SessionStopReq' },
  // 10 s of Ongoing at 1 s pacing: at most 11 AuthorizationReq, then the session goes on.
  'ongoing-authorization-10s': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, atMost: { AuthorizationReq: 12 }, last: 'SessionStopReq' },
  // Ongoing forever: paced (≤ 62 requests in the 60 s Ongoing timeout, never a busy loop), then a typed, orderly stop.
  'ongoing-forever': { outcome: 'failed', code: /_ONGOING_TIMEOUT$/, orderly: true, atMost: { AuthorizationReq: 62 }, last: 'SessionStopReq' },
  'cablecheck-ongoing-forever': { outcome: 'failed', code: /CABLE_CHECK_TIMEOUT|CABLECHECK_TIMEOUT/, orderly: true, atMost: { CableCheckReq: 82 }, last: 'SessionStopReq' },
  'slow-cablecheck': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, atMost: { CableCheckReq: 62 }, last: 'SessionStopReq' },
  'slow-chargeparameterdiscovery': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, last: 'SessionStopReq' },
  'slow-powerdelivery': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, last: 'SessionStopReq' },
  'emergency-shutdown': { outcome: 'failed', code: /EMERGENCY_SHUTDOWN/, orderly: true, last: 'SessionStopReq' },
  'evse-stop-charging': { outcome: 'completed', code: /STOP_CHARGING/, orderly: true, last: 'SessionStopReq' },
  'overvoltage': { outcome: 'failed', code: /OVERVOLTAGE/, orderly: true, last: 'SessionStopReq' },
  'renegotiation': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, atMost: { ChargeParameterDiscoveryReq: 3 }, last: 'SessionStopReq' },
  // The charger closes the connection after its FAILED answer (scenario faults.afterFailed): the EV had begun its
  // stop path; no SessionStop can follow on a closed channel, so the end is typed but not in order.
  'welding-failed': { outcome: 'failed', code: /RESPONSE_FAILED/, orderly: false },
  'welding-never-answered': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, last: 'SessionStopReq' },
  'welding-voltage-stays-high': { outcome: 'completed', code: 'SESSION_COMPLETED', orderly: true, last: 'SessionStopReq' },
  'wrong-sessionid': { outcome: 'failed', code: /SESSION_ID_MISMATCH/, orderly: false },
  'failed-signature': { outcome: 'failed', code: /RESPONSE_FAILED/, orderly: false, payment: 'Contract', last: 'SessionStopReq' },
  'failed-certificate-expired': { outcome: 'failed', code: /RESPONSE_FAILED/, orderly: false, payment: 'Contract', last: 'SessionStopReq' },
  'tcp-reset-in-loop': { outcome: 'failed', code: 'SESSION_CHANNEL_CLOSED', orderly: false },
};
/** Transport-level behaviours: exercised on real sockets elsewhere (bench-session, charge-netns, tls-* tests). */
const ON_SOCKETS = new Set(['unknown-root']);

interface Run { result: SessionResult; sent: string[]; handler: SeccHandler<unknown> }

async function runScenario(scenario: Scenario, pki: TestPki): Promise<Run> {
  const clock = new VirtualClock(1_000);
  const tls = scenario.transport !== 'tcp';
  const readiness = { ready: true as const, version: 2, contractKey: 'k1' };
  const plan = channelPlan(securityPolicy(readiness), tls ? 'tls' : 'none');
  const ac = scenario.charger.energyTransferModes.every((m) => m.startsWith('AC_'));
  const settings = VehicleSessionSettings.parse({ iso2: ac ? { energyTransferModes: ['AC_three_phase_core', 'AC_single_phase_core'] } : {} });
  const contract = contractFromPem(pki.mo.contract.pem + pki.mo.sub2.pem + pki.mo.sub1.pem);
  const modules = sessionModules({ plan, evccId: Uint8Array.of(2, 0xe7, 0xcc, 0, 0, 1), settings, contract, wallClock: new Date(), plugInAt: 0 });
  // A battery close to its target so the loop is short in virtual time but still charges.
  const ev = new SimEv({ clock, log: silentLogger() }, { initialSocPercent: 74, timeScale: 60, contactorDelayMs: 20 });
  const engine = new SessionEngine({ ev, offer: plan.offer, modules });
  const contractSigner = softwareSigner(pki.mo.contract.keyPem);
  const options = { scenario, clock, tls, contractRoots: [pki.mo.root.der, pki.a.root.der], wallClock: () => Date.now() };
  let handler: SeccHandler<unknown> | undefined;
  let schema: 'iso2' | 'din' = 'iso2';
  const sent: string[] = [];
  const queue: { at: number; input: Parameters<SessionEngine['step']>[0] }[] = [];
  let out: SessionOutput = engine.step({ kind: 'start', now: clock.now() });
  for (let i = 0; i < 200_000; i++) {
    if (out.result) return { result: out.result, sent, handler: handler! };
    for (const e of out.effects) {
      const r = e.request;
      let result: unknown;
      if (r.kind === 'sign') result = await xmldsigSign(r.elements as SignedElement[], contractSigner);
      else if (r.kind === 'contactors') await Promise.all([ev.setContactors(r.closed), (async () => clock.advance(25))()]);
      queue.push({ at: clock.now(), input: { kind: 'effectDone', now: clock.now(), id: e.id, result } });
    }
    if (out.send) {
      if (!handler) {
        const a = answerAppProtocol(out.send.bytes, appProtocolsOf(scenario.protocols.supported), scenario.protocols.choice)!;
        schema = a.chosen?.protocol ?? 'iso2';
        handler = (schema === 'din' ? createDinHandler(options) : createIso2Handler(options)) as SeccHandler<unknown>;
        queue.push({ at: clock.now() + 2, input: { kind: 'payload', now: clock.now() + 2, payloadType: 0x8001, bytes: a.response } });
      } else {
        const msg = decodeV2gMessage(schema as 'iso2', out.send.bytes);
        sent.push(Object.keys(msg.Body)[0]!);
        const reply = await handler.handle(msg, clock.now());
        const at = clock.now() + Math.max(2, reply.delayMs);
        if (reply.response) queue.push({ at, input: { kind: 'payload', now: at, payloadType: 0x8001, bytes: encodeAny(schema, { V2G_Message: reply.response }, { ignoreLengthFacets: true }) } });
        if (reply.after) queue.push({ at: at + 1, input: { kind: 'channelClosed', now: at + 1, ...(reply.after === 'reset' ? { error: new Error('ECONNRESET') } : {}) } });
      }
    }
    queue.sort((a, b) => a.at - b.at);
    const next = queue[0];
    if (next && (out.deadline === undefined || next.at <= out.deadline)) {
      queue.shift();
      clock.advance(Math.max(0, next.at - clock.now()));
      out = engine.step({ ...next.input, now: clock.now() } as Parameters<SessionEngine['step']>[0]);
    } else if (out.deadline !== undefined) {
      clock.advance(Math.max(0, out.deadline - clock.now()));
      out = engine.step({ kind: 'timer', now: clock.now() });
    } else {
      throw new Error(`${scenario.name}: the session stalled in ${out.state}`);
    }
  }
  throw new Error(`${scenario.name}: no end after 200,000 steps`);
}

describe('every declared charger behaviour against the product session path (virtual time)', async () => {
  const pki = await generateTestPki();
  it('every scenario file has an expectation (a new behaviour needs a stated outcome)', () => {
    expect(listScenarios().filter((n) => !(n in EXPECT) && !ON_SOCKETS.has(n))).toEqual([]);
  });
  for (const [name, want] of Object.entries(EXPECT)) {
    it(`${name}: ${want.outcome} with ${String(want.code)}${want.orderly ? ', in order' : ''}`, async () => {
      const { result, sent, handler } = await runScenario(loadScenario(name), pki);
      const why = `${result.reason.code}: ${result.reason.message}; sent ${sent.join(' ')}`;
      expect(result.outcome, why).toBe(want.outcome);
      if (typeof want.code === 'string') expect(result.reason.code, why).toBe(want.code);
      else expect(result.reason.code, why).toMatch(want.code);
      expect(result.orderly, why).toBe(want.orderly);
      if (want.protocol) expect(result.negotiated?.protocol).toBe(want.protocol);
      if (want.payment) expect(result.protocol?.payment, why).toBe(want.payment);
      for (const [msg, max] of Object.entries(want.atMost ?? {})) expect(result.requests[msg] ?? 0, `${msg} count`).toBeLessThanOrEqual(max);
      if (want.last) expect(sent.at(-1), why).toBe(want.last);
      // The charger saw the same requests the EV counted (nothing lost, nothing invented).
      expect(handler.requests.records.length).toBe(sent.length);
    });
  }
});
