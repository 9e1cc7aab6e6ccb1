import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { SimIpv6Link } from '../../hal/net/sim-net.ts';
import { isEvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { parseSettings } from '../settings.ts';
import { encodeV2gtp } from '../v2gtp/codec.ts';
import { PayloadType } from '../v2gtp/constants.ts';
import { discoverSecc } from './client.ts';
import { bytesToIpv6, decodeDiscoveryReq, decodeDiscoveryRes, encodeDiscoveryRes, ipv6ToBytes } from './codec.ts';
import { SDP_MAX_REQUESTS, SDP_RESPONSE_TIMEOUT_MS, SDP_SERVER_PORT } from './constants.ts';
import { SdpEngine } from './engine.ts';
import { SdpSettings } from './settings.ts';

const settings = (raw: Record<string, unknown> = {}) => parseSettings(SdpSettings, raw, 'sdp');
const res = (over: Partial<Parameters<typeof encodeDiscoveryRes>[0]> = {}) =>
  encodeDiscoveryRes({ address: 'fe80::2', port: 61000, security: 'tls', transport: 'tcp', ...over });

describe('SDP codec', () => {
  it('round-trips requests and responses with the ISO 15118-2 layout', () => {
    const r = res();
    expect(r.length).toBe(28);
    expect(Buffer.from(r.subarray(0, 8)).toString('hex')).toBe('01fe900100000014');
    expect(decodeDiscoveryRes(r)).toEqual({ address: 'fe80::2', port: 61000, security: 'tls', transport: 'tcp' });
    expect(decodeDiscoveryReq(Uint8Array.from([1, 0xfe, 0x90, 0, 0, 0, 0, 2, 0x10, 0]))).toEqual({ security: 'none', transport: 'tcp' });
  });
  it('converts IPv6 text and bytes both ways', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      expect(Buffer.from(ipv6ToBytes(bytesToIpv6(b))).toString('hex')).toBe(Buffer.from(b).toString('hex'));
    }));
  });
  it('never throws a raw exception on arbitrary datagrams', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      try { decodeDiscoveryRes(b); } catch (e) { expect(isEvccError(e)).toBe(true); }
    }));
  });
});

describe('SDP engine (virtual time)', () => {
  it('repeats every 250 ms and gives up after 50 requests with SDP_NO_RESPONSE', () => {
    const e = new SdpEngine(settings());
    let now = 0;
    let step = e.start(now);
    let sent = 1;
    while (!step.error) {
      now = step.deadline!;
      step = e.onTimer(now);
      if (step.send) sent++;
    }
    expect(sent).toBe(SDP_MAX_REQUESTS);
    expect(now).toBe(SDP_MAX_REQUESTS * SDP_RESPONSE_TIMEOUT_MS);
    expect(step.error.code).toBe('SDP_NO_RESPONSE');
  });

  it('ignores junk and takes the first valid answer', () => {
    const e = new SdpEngine(settings());
    e.start(0);
    const junk = [
      new Uint8Array([1, 2, 3]), // malformed
      res().subarray(0, 27), // wrong length
      encodeV2gtp(PayloadType.SDP_REQUEST, new Uint8Array(20)), // wrong type
      encodeV2gtp(PayloadType.EXI, res().subarray(8)),
      (() => { const b = res(); b[26] = 0x20; return b; })(), // bad Security
      (() => { const b = res(); b[27] = 0x10; return b; })(), // UDP transport
      res({ address: 'ff02::1' }), res({ address: '::' }), res({ address: '2001:db8::1' }), res({ port: 80 }), res({ port: 0 }),
    ];
    for (const j of junk) expect(e.onDatagram(j, 'fe80::9').ignored, Buffer.from(j).toString('hex')).toBeDefined();
    expect(e.ignoredCount.value).toBe(junk.length);
    expect(e.onDatagram(res(), 'fe80::2').result).toMatchObject({ address: 'fe80::2', port: 61000, security: 'tls' });
  });

  it('refuses a no-TLS answer when TLS is required (PnC) and logs a downgrade only when EIM allows it', () => {
    const pnc = new SdpEngine(settings());
    pnc.start(0);
    expect(pnc.onDatagram(res({ security: 'none' }), 'fe80::2').error?.code).toBe('SDP_TLS_REQUIRED');
    const eim = new SdpEngine(settings({ security: 'tls-preferred' }));
    eim.start(0);
    expect(eim.onDatagram(res({ security: 'none' }), 'fe80::2')).toMatchObject({ downgrade: true, result: { security: 'none' } });
  });

  it('never fails or accepts on random datagrams unless they are a valid answer', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 20 }), (datagrams) => {
      const e = new SdpEngine(settings());
      e.start(0);
      for (const d of datagrams) {
        const step = e.onDatagram(d, 'fe80::9');
        if (step.result) expect(d.length).toBe(28);
        if (step.error) expect(['SDP_TLS_REQUIRED']).toContain(step.error.code);
        if (e.state.name !== 'WaitForSECCDiscoveryRes') break;
      }
    }), { numRuns: 300 });
  });

  it('refuses settings below the standard', () => {
    expect(() => settings({ responseTimeoutMs: 100 })).toThrow(/responseTimeoutMs/);
    expect(() => settings({ maxRequests: 51 })).toThrow(/maxRequests/);
  });
});

describe('discoverSecc on the simulated link', () => {
  it('finds a responder after lost requests, multicast to port 15118', async () => {
    const link = new SimIpv6Link();
    const clock = new VirtualClock();
    const secc = await link.host('sim-se', 'fe80::2').open({ iface: 'sim-se', port: SDP_SERVER_PORT });
    let seen = 0;
    secc.onMessage((data, from) => {
      decodeDiscoveryReq(data);
      if (++seen < 3) return; // stays silent for two requests
      void secc.send(res(), from);
    });
    const p = discoverSecc({ udp: link.host('sim-ev', 'fe80::1'), clock, log: silentLogger() }, { iface: 'sim-ev', settings: settings() });
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r));
      clock.advance(SDP_RESPONSE_TIMEOUT_MS);
    }
    await expect(p).resolves.toMatchObject({ address: 'fe80::2', port: 61000, requests: 3, iface: 'sim-ev' });
    await secc.close();
  });
});
