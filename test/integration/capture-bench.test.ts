import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestSequence } from '../../firmware/capture/replay.ts';
import { describeWith, tool } from '../support/prereq.ts';

const run = promisify(execFile);

/**
 * Issue #11, Must show 1 and 3: the bench session's folder, checked with Debian's tshark (an independent decoder)
 * and replayed as a charger-simulator scenario against our EV.
 */
async function cli(args: string[], timeout = 90_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('npx', ['tsx', 'bin/evcc.ts', ...args], { timeout, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function tshark(args: string[]): Promise<string> {
  const { stdout } = await run('tshark', args, { maxBuffer: 64 << 20 });
  return stdout;
}

interface MessageLine { seq: number; direction: 'tx' | 'rx'; protocol: string; message: string; exi: string; decoded: unknown; rttMs?: number }

type Captured = { report: Record<string, any>; dir: string; messages: MessageLine[]; stderr: string };

/** A bench session with its capture; `failing`: the session is expected to fail (exit 1, folder still written). */
async function benchWithCapture(parent: string, extra: string[], failing = false): Promise<Captured> {
  const r = await cli(['bench-session', '--json', '--no-tpm', '--capture-dir', parent, ...extra]);
  expect(r.code, r.stderr.split('\n').filter((l) => /ERROR|FAILED/.test(l)).join('\n')).toBe(failing ? 1 : 0);
  const report = JSON.parse(r.stdout) as Record<string, any>;
  const dir = report.capture.dir as string;
  const messages = (await readFile(join(dir, 'messages.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as MessageLine);
  return { report, dir, messages, stderr: r.stderr };
}

/** The decrypted TLS application data tshark finds, per direction in order, as V2GTP messages. */
async function tsharkV2gtp(dir: string, evPort: number): Promise<{ direction: 'tx' | 'rx'; v2gtp: string }[]> {
  const out = await tshark(['-r', join(dir, 'session.pcapng'), '-o', `tls.keylog_file:${join(dir, 'keys.log')}`, '-Y', 'tls.app_data', '-T', 'fields', '-E', 'separator=|', '-e', 'tcp.srcport', '-e', 'data.data']);
  const streams = { tx: '', rx: '' };
  for (const line of out.trim().split('\n')) {
    const [src, data] = line.split('|');
    if (!data) continue;
    const dirn = Number(src) === evPort ? 'tx' : 'rx';
    streams[dirn] += data.split(',').join('');
  }
  const frames: { direction: 'tx' | 'rx'; v2gtp: string }[] = [];
  for (const d of ['tx', 'rx'] as const) {
    let s = streams[d];
    while (s.length >= 16) {
      const len = parseInt(s.slice(8, 16), 16);
      frames.push({ direction: d, v2gtp: s.slice(0, 16 + 2 * len) });
      s = s.slice(16 + 2 * len);
    }
    expect(s).toBe(''); // the streams are whole V2GTP messages, nothing left over
  }
  return frames;
}

const kept: string[] = [];
let parent = '';
/** The TLS 1.2 capture of the first test, replayed by the replay test. */
let tls12: Captured | undefined;
beforeAll(async () => {
  parent = await mkdtemp(join(tmpdir(), 'evcc-capture-test-'));
  kept.push(parent);
});
afterAll(async () => {
  for (const d of kept) await rm(d, { recursive: true, force: true });
});

describeWith([tool('tshark')])('per-session capture (bench): pcapng + TLS key log + decoded message log, checked with tshark', () => {
  for (const tls of ['1.2', '1.3'] as const) {
    it(`TLS ${tls}: the folder holds every artifact, tshark decrypts the TLS with keys.log without a malformed frame, and the decrypted V2GTP payloads are the message log's EXI byte for byte`, async () => {
      const captured = await benchWithCapture(parent, ['--tls', tls]);
      if (tls === '1.2') tls12 = captured;
      const { report, dir, messages, stderr } = captured;
      expect(report.ok).toBe(true);
      // A key log is a bench feature, and says so loudly.
      expect(stderr).toMatch(/\[WARN\] TLS: TLS KEY LOG ENABLED \(bench config/);
      for (const f of ['session.pcapng', 'keys.log', 'messages.jsonl', 'bench.jsonl', 'report.json', 'session.json']) {
        expect((await readFile(join(dir, f))).length, f).toBeGreaterThan(0);
      }
      const keys = await readFile(join(dir, 'keys.log'), 'utf8');
      expect(keys).toMatch(tls === '1.2' ? /^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}$/m : /^CLIENT_TRAFFIC_SECRET_0 [0-9a-f]{64} [0-9a-f]+$/m);
      // The bench log in the folder is the logger's JSON, the report the session's.
      const bench = (await readFile(join(dir, 'bench.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { sub?: string; msg?: string });
      expect(bench.some((r) => r.sub === 'SLAC' && /matching process successful|match/i.test(r.msg ?? ''))).toBe(true);
      expect(JSON.parse(await readFile(join(dir, 'report.json'), 'utf8'))).toMatchObject({ ok: true, endReason: { code: 'SESSION_COMPLETED' } });

      const pcap = join(dir, 'session.pcapng');
      const opts = ['-r', pcap, '-o', `tls.keylog_file:${join(dir, 'keys.log')}`];
      // No malformed frame, no expert warning or error anywhere (SLAC, SDP, TCP, TLS).
      expect(await tshark([...opts, '-Y', '_ws.malformed || _ws.expert.severity >= warning'])).toBe('');
      // Everything on the PLC interface: SLAC MMEs, SDP over UDP, TCP/TLS.
      const protocols = await tshark([...opts, '-T', 'fields', '-e', 'frame.protocols']);
      expect(protocols).toMatch(/homeplug-av/);
      expect(protocols).toMatch(/ipv6:udp/);
      expect(protocols).toMatch(/ipv6:tcp:tls/);
      const mmes = await tshark([...opts, '-Y', 'homeplug-av', '-T', 'fields', '-e', '_ws.col.Info']);
      for (const name of ['CM_SLAC_PARM.REQ', 'CM_MNBC_SOUND.IND', 'CM_ATTEN_CHAR.IND', 'CM_SLAC_MATCH.CNF', 'CM_SET_KEY.REQ']) expect(mmes).toContain(name);
      const descriptions = await tshark(['-r', pcap, '-q', '-z', 'io,phs']);
      expect(descriptions).toMatch(/tls/);

      // The V2G connection's EV port, from the capture.
      const ports = (await tshark([...opts, '-Y', 'tls.app_data', '-T', 'fields', '-e', 'tcp.srcport', '-e', 'tcp.dstport'])).trim().split('\n')[0]!.split('\t').map(Number);
      const evPort = Math.max(...ports) === report.secc.port ? Math.min(...ports) : ports[0]!; // the EV sends first
      const frames = await tsharkV2gtp(dir, evPort);
      expect(frames.length).toBe(messages.length);
      // Each direction in order: V2GTP header 01 fe 8001 + length, then exactly the logged EXI.
      for (const d of ['tx', 'rx'] as const) {
        const wire = frames.filter((f) => f.direction === d);
        const logged = messages.filter((m) => m.direction === d);
        expect(wire.length).toBe(logged.length);
        wire.forEach((f, i) => {
          expect(f.v2gtp.slice(0, 4)).toBe('01fe');
          expect(f.v2gtp.slice(4, 8)).toBe('8001');
          expect(f.v2gtp.slice(16)).toBe(logged[i]!.exi);
        });
      }
      // The message log is the session's exchange: the report's request counts, the bench log's sent lines.
      const counted: Record<string, number> = {};
      for (const m of messages.filter((x) => x.direction === 'tx')) counted[m.message] = (counted[m.message] ?? 0) + 1;
      expect(counted).toEqual(report.messages);
      const sentInLog = bench.filter((r) => /^→ /.test(r.msg ?? '')).length;
      expect(sentInLog).toBe(messages.filter((m) => m.direction === 'tx').length);
      // Decoded forms are the wire messages; `evcc exi decode` reads a decrypted payload the same way.
      const setup = messages.find((m) => m.message === 'SessionSetupReq')!;
      expect(setup.decoded).toMatchObject({ V2G_Message: { Body: { SessionSetupReq: { EVCCID: '02e7cc000001' } } } });
      const wireSetup = frames.filter((f) => f.direction === 'tx')[messages.filter((m) => m.direction === 'tx').indexOf(setup)]!;
      const decoded = await cli(['exi', 'decode', wireSetup.v2gtp]);
      expect(decoded.code).toBe(0);
      expect(JSON.parse(decoded.stdout)).toMatchObject({ schema: 'iso2', message: { V2G_Message: { Body: { SessionSetupReq: { EVCCID: '02e7cc000001' } } } } });

      // evcc session show decodes the same messages from the capture itself (TLS decrypted with keys.log).
      const show = await cli(['session', 'show', dir, '--json']);
      expect(show.code, show.stderr).toBe(0);
      const shown = JSON.parse(show.stdout) as { messages: { direction: string; exi: string; name: string }[]; timeline: { text: string }[] };
      expect(shown.messages.map((m) => `${m.direction}:${m.exi}`)).toEqual(messages.map((m) => `${m.direction}:${m.exi}`));
      expect(shown.timeline.map((l) => l.text).join('\n')).toMatch(/CurrentDemandReq ×\d+ ← CurrentDemandRes OK/);
    }, 120_000);
  }
});

describe('evcc session replay: a captured session becomes a charger-simulator scenario that reproduces the exchange against our EV', () => {
  for (const c of [
    { what: 'a well-behaved DC charger over TLS (PnC offered, EIM used without a TPM)', args: [] as string[], failing: false },
    { what: 'a field failure: the charger makes an emergency shutdown in the charge loop', args: ['--scenario', 'emergency-shutdown'], failing: true },
  ]) {
    it(c.what, async () => {
      const original = !c.failing && tls12 ? tls12 : await benchWithCapture(parent, c.args, c.failing);
      const out = join(parent, `replay-${original.report.capture.id}.json`);
      const r = await cli(['session', 'replay', original.dir, '-o', out]);
      expect(r.code, r.stderr).toBe(0);
      const scenario = JSON.parse(await readFile(out, 'utf8')) as Record<string, any>;
      expect(scenario.transport).toBe(original.report.channel.kind === 'tls' ? 'tls12' : 'tcp');
      const again = await benchWithCapture(parent, ['--scenario', out], c.failing);
      // Same end (code and orderliness), same protocol and payment, same request sequence (repeats folded: loop
      // lengths the battery model or power-stage ramps decide may differ), same response codes per message.
      expect(again.report.endReason).toMatchObject({ code: original.report.endReason.code, orderly: original.report.endReason.orderly });
      expect(again.report.protocol).toBe(original.report.protocol);
      expect(again.report.payment).toBe(original.report.payment);
      expect(requestSequence(again.messages.map((m) => ({ direction: m.direction, name: m.message })))).toEqual(requestSequence(original.messages.map((m) => ({ direction: m.direction, name: m.message }))));
      const codes = (ms: MessageLine[]) => [...new Set(ms.filter((m) => m.direction === 'rx').map((m) => `${m.message}:${responseCodeOf(m)}`))];
      expect(codes(again.messages)).toEqual(codes(original.messages));
      if (scenario.loop?.emergencyShutdownAt) {
        // What the charger decided comes at the same place: the shutdown at the same loop response.
        const loops = (ms: MessageLine[]) => ms.filter((m) => m.direction === 'tx' && m.message === 'CurrentDemandReq').length;
        expect(loops(again.messages)).toBe(loops(original.messages));
      }
    }, 120_000);
  }
});

function responseCodeOf(m: MessageLine): string {
  const d = m.decoded as Record<string, any>;
  const v2g = d?.V2G_Message ?? d;
  const body = v2g?.Body?.[m.message] ?? v2g?.[m.message];
  return String(body?.ResponseCode ?? d?.responseCode ?? '');
}
