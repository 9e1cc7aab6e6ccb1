import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeV2gMessage, encodeV2gMessage, type Din, type Iso2 } from '../../firmware/exi/index.ts';
import { buildSupportedAppProtocolReq, DEFAULT_OFFER, evaluateSupportedAppProtocolRes } from '../../firmware/session/app-handshake.ts';
import { encodeV2gtp, V2gtpReassembler, type V2gtpMessage } from '../../firmware/v2gtp/codec.ts';
import { PayloadType } from '../../firmware/v2gtp/constants.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import type { Udp6Transport } from '../../hal/net/types.ts';
import { until } from '../../test/support/until.ts';
import { loadScenario, parseScenario, type Scenario } from './scenario.ts';
import { startSimSecc, type SimRequestEvent, type SimSecc } from './secc.ts';

/**
 * The wiring of secc.ts on loopback TCP (no root, SDP off): SupportedAppProtocol picks the handler, requests and
 * answers travel in V2GTP, scenario delays run on the injected clock, a scenario TCP reset is a real RST.
 */
const noUdp = { open: async () => { throw new Error('SDP is off in these tests'); } } as unknown as Udp6Transport;
const open: { secc: SimSecc; sock?: Socket }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    o.sock?.destroy();
    await o.secc.close();
  }
});

async function start(scenario: Scenario, clock?: VirtualClock) {
  const secc = await startSimSecc({ udp: noUdp, iface: 'lo', address: '::1', transport: 'tcp', sdp: 'off', listenHost: '127.0.0.1', scenario, ...(clock ? { clock } : {}) });
  const sock = connect({ host: '127.0.0.1', port: secc.port });
  await new Promise<void>((r) => sock.once('connect', () => r()));
  open.push({ secc, sock });
  const reasm = new V2gtpReassembler();
  const inbox: V2gtpMessage[] = [];
  let closed: { error?: string } | undefined;
  sock.on('data', (d) => inbox.push(...reasm.push(d)));
  sock.on('error', (e: NodeJS.ErrnoException) => (closed = { error: e.code ?? e.message }));
  sock.on('close', () => (closed ??= {}));
  const next = async (): Promise<V2gtpMessage> => {
    await until(() => inbox.length > 0 || closed !== undefined, 5000);
    const m = inbox.shift();
    if (!m) throw new Error(`connection closed: ${JSON.stringify(closed)}`);
    return m;
  };
  return {
    secc, sock, inbox, closedState: () => closed, next,
    send: (payload: Uint8Array) => void sock.write(encodeV2gtp(PayloadType.EXI, payload)),
  };
}

describe('simulated SECC on a V2GTP stream (loopback TCP)', () => {
  it('echoes junk before SupportedAppProtocol, then picks DIN (din-picks-over-iso) and runs the DIN handler', async () => {
    const c = await start(loadScenario('din-picks-over-iso'));
    const requests: SimRequestEvent[] = [];
    c.secc.events.on('v2g-request', (e: SimRequestEvent) => requests.push(e));
    c.send(Uint8Array.from([0x80, 0x00]));
    expect(Buffer.from((await c.next()).payload).toString('hex')).toBe('8000');

    c.send(buildSupportedAppProtocolReq(DEFAULT_OFFER)); // ISO-2 priority 1, DIN priority 2
    const negotiated = evaluateSupportedAppProtocolRes(DEFAULT_OFFER, (await c.next()).payload);
    expect(negotiated.namespace).toBe('urn:din:70121:2012:MsgDef');

    c.send(encodeV2gMessage('din', { Header: { SessionID: '00' }, Body: { SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } } }));
    const res = decodeV2gMessage('din', (await c.next()).payload);
    expect(res.Body.SessionSetupRes?.ResponseCode).toBe('OK_NewSessionEstablished');
    expect(c.secc.connections[0]).toMatchObject({ appProtocolAnswered: true, v2g: 'din', sessionId: res.Header.SessionID });
    expect(requests.map((r) => [r.protocol, r.record.name, r.record.responseCode])).toEqual([['din', 'SessionSetupReq', 'OK_NewSessionEstablished']]);
  });

  it('a scenario delay waits on the injected clock before the answer goes out', async () => {
    const clock = new VirtualClock(0);
    const c = await start(parseScenario({ description: 'slow setup', transport: 'tcp', protocols: { supported: ['iso2'] }, delays: { SessionSetup: 1500 } }), clock);
    c.send(buildSupportedAppProtocolReq(DEFAULT_OFFER));
    await c.next();
    c.send(encodeV2gMessage('iso2', { Header: { SessionID: '00' }, Body: { SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } } }));
    await until(() => c.secc.connections[0]?.requests?.length === 1, 5000);
    clock.advance(1499);
    await new Promise((r) => setTimeout(r, 50));
    expect(c.inbox).toEqual([]);
    clock.advance(1);
    const res = decodeV2gMessage('iso2', (await c.next()).payload);
    expect(res.Body.SessionSetupRes?.ResponseCode).toBe('OK_NewSessionEstablished');
  });

  it('tcp reset in the loop is a real RST after N answered CurrentDemand requests', async () => {
    const c = await start(parseScenario({ description: 'reset', transport: 'tcp', protocols: { supported: ['iso2'] }, ongoing: { CableCheck: 0 }, loop: { resetConnectionAfter: 1 } }));
    c.send(buildSupportedAppProtocolReq(DEFAULT_OFFER));
    await c.next();
    let sid = '00';
    const ask = async (body: Iso2.BodyType): Promise<Iso2.BodyType> => {
      c.send(encodeV2gMessage('iso2', { Header: { SessionID: sid }, Body: body }));
      const m = decodeV2gMessage('iso2', (await c.next()).payload);
      sid = m.Header.SessionID;
      return m.Body;
    };
    const st = { EVReady: 1, EVErrorCode: 'NO_ERROR', EVRESSSOC: 50 } as const;
    const pv = (Value: number, Unit: 'V' | 'A' | 'W') => ({ Multiplier: 0, Unit, Value });
    await ask({ SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } });
    await ask({ ServiceDiscoveryReq: {} });
    await ask({ PaymentServiceSelectionReq: { SelectedPaymentOption: 'ExternalPayment', SelectedServiceList: { SelectedService: [{ ServiceID: 1 }] } } });
    await ask({ AuthorizationReq: {} });
    await ask({ ChargeParameterDiscoveryReq: { RequestedEnergyTransferMode: 'DC_extended', DC_EVChargeParameter: { DC_EVStatus: st, EVMaximumCurrentLimit: pv(200, 'A'), EVMaximumVoltageLimit: pv(430, 'V') } } });
    await ask({ CableCheckReq: { DC_EVStatus: st } });
    await ask({ PreChargeReq: { DC_EVStatus: st, EVTargetVoltage: pv(380, 'V'), EVTargetCurrent: pv(2, 'A') } });
    await ask({ PowerDeliveryReq: { ChargeProgress: 'Start', SAScheduleTupleID: 1 } });
    const loop: Iso2.BodyType = { CurrentDemandReq: { DC_EVStatus: st, EVTargetCurrent: pv(100, 'A'), ChargingComplete: 0, EVTargetVoltage: pv(390, 'V') } };
    expect((await ask(loop)).CurrentDemandRes?.ResponseCode).toBe('OK');
    await expect(ask(loop)).rejects.toThrow(/ECONNRESET/);
    await until(() => c.secc.connections[0]?.endedBy === 'reset', 5000);
    expect(c.secc.connections[0]!.requests!.map((r) => r.name).slice(-2)).toEqual(['CurrentDemandReq', 'CurrentDemandReq']);
  });

  it('a request with a SessionID of another session is answered FAILED_UnknownSession, then the SECC closes', async () => {
    const c = await start(loadScenario('din-only'));
    c.send(buildSupportedAppProtocolReq(DEFAULT_OFFER));
    expect(evaluateSupportedAppProtocolRes(DEFAULT_OFFER, (await c.next()).payload).namespace).toBe('urn:din:70121:2012:MsgDef');
    c.send(encodeV2gMessage('din', { Header: { SessionID: '00' }, Body: { SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } } }));
    await c.next();
    c.send(encodeV2gMessage('din', { Header: { SessionID: '0102030405060708' }, Body: { ServiceDiscoveryReq: {} } } as Din.V2G_MessageElement));
    const res = decodeV2gMessage('din', (await c.next()).payload);
    expect(res.Body.ServiceDiscoveryRes?.ResponseCode).toBe('FAILED_UnknownSession');
    await until(() => c.closedState() !== undefined, 5000);
    expect(c.secc.connections[0]!.endedBy).toBe('close');
  });
});
