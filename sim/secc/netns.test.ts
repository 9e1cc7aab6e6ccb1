import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodeV2gMessage, encodeV2gMessage } from '../../firmware/exi/index.ts';
import { buildSupportedAppProtocolReq, DEFAULT_OFFER, evaluateSupportedAppProtocolRes } from '../../firmware/session/app-handshake.ts';
import { encodeV2gtp, V2gtpReassembler, type V2gtpMessage } from '../../firmware/v2gtp/codec.ts';
import { PayloadType } from '../../firmware/v2gtp/constants.ts';
import { describeWith, root, tool } from '../../test/support/prereq.ts';
import { until } from '../../test/support/until.ts';
import { createEvLink, startSeccProcess, type EvLink, type SeccProcess } from './netns-harness.ts';

/**
 * `evcc sim-secc --scenario` as a process in its own namespace, reached over a veth pair: the scenario sets the
 * transport (plain TCP for din-only), the SupportedAppProtocol choice, and every request shows up as a `request` line.
 */
let link: EvLink;
const running: SeccProcess[] = [];
const sockets: Socket[] = [];
beforeAll(async () => {
  if (process.getuid?.() !== 0) return;
  link = await createEvLink();
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const p of running) await p.stop();
  await link?.destroy();
});

describeWith([root, tool('ip')])('evcc sim-secc --scenario over a veth pair', () => {
  it('din-only: plain TCP, DIN chosen (the only protocol it accepts) from an offer with ISO-2 first, requests reported with their answers', async () => {
    const secc = await startSeccProcess(link, [], { scenario: 'din-only' });
    running.push(secc);
    expect(secc.scenario).toBe('din-only');
    const sock = connect({ host: `${secc.address}%${link.evIf}`, port: secc.port });
    sockets.push(sock);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve());
      sock.once('error', reject);
    });
    const reasm = new V2gtpReassembler();
    const inbox: V2gtpMessage[] = [];
    sock.on('data', (d) => inbox.push(...reasm.push(d)));
    const next = async (): Promise<V2gtpMessage> => {
      await until(() => inbox.length > 0, 10_000, 'an answer from the SECC');
      return inbox.shift()!;
    };
    sock.write(encodeV2gtp(PayloadType.EXI, buildSupportedAppProtocolReq(DEFAULT_OFFER)));
    expect(evaluateSupportedAppProtocolRes(DEFAULT_OFFER, (await next()).payload).namespace).toBe('urn:din:70121:2012:MsgDef');
    sock.write(encodeV2gtp(PayloadType.EXI, encodeV2gMessage('din', { Header: { SessionID: '00' }, Body: { SessionSetupReq: { EVCCID: '0a0b0c0d0e0f' } } })));
    const setup = decodeV2gMessage('din', (await next()).payload);
    expect(setup.Body.SessionSetupRes?.ResponseCode).toBe('OK_NewSessionEstablished');
    await secc.waitFor((e) => e.event === 'request');
    expect(secc.requests('SessionSetupReq')).toEqual([expect.objectContaining({ protocol: 'din', responseCode: 'OK_NewSessionEstablished', answered: true })]);
    expect(secc.events.find((e) => e.event === 'app-protocol')).toMatchObject({ chosen: { namespace: 'urn:din:70121:2012:MsgDef' } });
  });
});
