import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { generateTestPki } from '../../firmware/pki/generate.ts';
import { discoverSecc } from '../../firmware/sdp/client.ts';
import { SDP_MAX_REQUESTS, SDP_RESPONSE_TIMEOUT_MS } from '../../firmware/sdp/constants.ts';
import { SdpSettings } from '../../firmware/sdp/settings.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { NodeUdp6 } from '../../hal/net/udp6.ts';
import { writeTestPki } from '../../bin/commands/pki.ts';
import { describeWith, root, tool } from '../support/prereq.ts';
import { createEvLink, startSeccProcess, type EvLink, type SeccProcess } from '../../sim/secc/netns-harness.ts';

/**
 * SDP over a real veth pair: the SECC simulator runs in its own namespace (`evcc sim-secc`), the EV side runs here
 * on the other end of the veth with real UDP/IPv6 multicast to ff02::1 port 15118.
 */
let link: EvLink;
let dir: string;
const running: SeccProcess[] = [];

beforeAll(async () => {
  if (process.getuid?.() !== 0) return;
  dir = await mkdtemp(join(tmpdir(), 'evcc-sdp-'));
  await writeTestPki(join(dir, 'pki'), await generateTestPki());
  link = await createEvLink();
});
afterAll(async () => {
  for (const p of running) await p.stop();
  await link?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function secc(args: string[]): Promise<SeccProcess> {
  const p = await startSeccProcess(link, ['--pki', join(dir, 'pki'), ...args]);
  running.push(p);
  return p;
}
async function stop(p: SeccProcess): Promise<void> {
  await p.stop();
  running.splice(running.indexOf(p), 1);
}

/** First packet matching `filter` on `iface`, as tshark decodes it: ipv6.src, ipv6.dst, hop limit, UDP port, payload hex. */
function tsharkOnce(iface: string, filter: string): { started: Promise<void>; fields: Promise<string> } {
  const child = spawn('tshark', ['-i', iface, '-c', '1', '-a', 'duration:20', '-f', filter, '-T', 'fields',
    '-e', 'ipv6.src', '-e', 'ipv6.dst', '-e', 'ipv6.hlim', '-e', 'udp.dstport', '-e', 'data.data'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const started = new Promise<void>((resolve, reject) => {
    // "Capture started" marks the armed capture; older tsharks only print "Capturing on", so give that a second.
    child.stderr.on('data', (d: Buffer) => {
      const t = d.toString();
      if (t.includes('Capture started')) resolve();
      else if (t.includes('Capturing on')) setTimeout(resolve, 1000);
    });
    child.once('exit', () => reject(new Error('tshark exited before capturing')));
  });
  const fields = new Promise<string>((resolve) => child.once('exit', () => resolve(out.trim())));
  return { started, fields };
}

const discover = (settings: Record<string, unknown> = {}) =>
  discoverSecc({ udp: new NodeUdp6(), clock: new SystemClock(), log: silentLogger() }, {
    iface: link.evIf, localAddress: link.evLinkLocal, settings: parseSettings(SdpSettings, settings, 'sdp'),
  });

describeWith([root, tool('ip'), tool('tshark')])('SDP over a veth pair between namespaces', () => {
  it('finds the simulated SECC via ff02::1 and ignores malformed, wrong-length and wrong-type answers', async () => {
    const p = await secc(['--transport', 'tls12', '--sdp', 'junk-first']);
    // tshark, as an independent decoder, watches the EV end of the veth.
    const capture = tsharkOnce(link.evIf, 'udp dst port 15118');
    await capture.started;
    const found = await discover();
    expect(found).toMatchObject({ address: p.address, port: p.port, security: 'tls', transport: 'tcp', iface: link.evIf, requests: 1 });
    // Four junk datagrams came before the answer, every one ignored.
    expect(found.ignored).toBe(4);
    // One request, sent from the EV's link-local address (the SECC saw it arrive over the veth).
    const req = await p.waitFor((e) => e.event === 'sdp-request');
    expect([req.n, req.from]).toEqual([1, link.evLinkLocal]);
    const [src, dst, hlim, dport, payload] = (await capture.fields).split('\t');
    expect({ src, dst, hlim, dport, payload }).toEqual({ src: link.evLinkLocal, dst: 'ff02::1', hlim: '1', dport: '15118', payload: '01fe9000000000020000' });
    await stop(p);
  });

  it('ends 50 unanswered requests with SDP_NO_RESPONSE within the standard\'s time', async () => {
    const p = await secc(['--transport', 'tls12', '--sdp', 'silent']);
    const t0 = performance.now();
    const err = await discover().catch((e: unknown) => e);
    const elapsed = performance.now() - t0;
    expect(isEvccError(err, 'SDP_NO_RESPONSE')).toBe(true);
    // The SECC side counted exactly 50 requests on the wire.
    await p.waitFor((e) => e.event === 'sdp-request' && e.n === SDP_MAX_REQUESTS);
    await new Promise((r) => setTimeout(r, 300));
    expect(p.events.filter((e) => e.event === 'sdp-request')).toHaveLength(SDP_MAX_REQUESTS);
    // [V2G2-159]/[V2G2-161]: ≥ 250 ms per request, 50 requests; finished right after the last wait.
    expect(elapsed).toBeGreaterThanOrEqual(SDP_MAX_REQUESTS * SDP_RESPONSE_TIMEOUT_MS - 5);
    expect(elapsed).toBeLessThan(SDP_MAX_REQUESTS * SDP_RESPONSE_TIMEOUT_MS + 2500);
    await stop(p);
  }, 40_000);

  it('refuses a plain-TCP (no TLS) answer while PnC is configured; EIM may accept it, with a logged downgrade', async () => {
    const p = await secc(['--transport', 'tcp']);
    const err = await discover({ security: 'tls-required' }).catch((e: unknown) => e);
    expect(isEvccError(err, 'SDP_TLS_REQUIRED')).toBe(true);
    const eim = await discover({ security: 'tls-preferred' });
    expect(eim).toMatchObject({ security: 'none', port: p.port });
    await stop(p);
  });
});
