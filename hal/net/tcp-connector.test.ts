import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { createEvLink, type EvLink } from '../../sim/secc/netns-harness.ts';
import { sh } from '../../test/support/netns.ts';
import { describeWith, root, tool } from '../../test/support/prereq.ts';
import { SimIpv6Link } from './sim-net.ts';
import { NodeTcpConnector } from './tcp-connector.ts';
import type { ByteStream } from './types.ts';

const closers: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

async function codeOf(p: Promise<ByteStream>): Promise<string> {
  try {
    (await p).destroy();
    return 'OK';
  } catch (err) {
    return isEvccError(err) ? err.code : `RAW ${String(err)}`;
  }
}

/** A loopback echo server that records what it got and whether the client ended with FIN. */
async function echoServer(): Promise<{ port: number; received: Buffer[]; ended: Promise<void> }> {
  const received: Buffer[] = [];
  let onEnd!: () => void;
  const ended = new Promise<void>((r) => (onEnd = r));
  const server: Server = createServer({ allowHalfOpen: true }, (s: Socket) => {
    s.on('data', (d: Buffer) => {
      received.push(d);
      s.write(d);
    });
    s.on('end', () => {
      onEnd();
      s.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as { port: number }).port, received, ended };
}

describe('NodeTcpConnector on the simulated link (loopback)', () => {
  const link = new SimIpv6Link();
  const tcp = new NodeTcpConnector(link.resolver());

  it('opens the stream to a published SECC endpoint: bytes both ways, bytes before onData kept, close() is FIN', async () => {
    const srv = await echoServer();
    link.publishTcp('fe80::70:1', 61000, { host: '127.0.0.1', port: srv.port });
    const stream = await tcp.connect({ host: 'fe80::70:1', port: 61000, iface: 'se0', timeoutMs: 2000 });
    const v2gtp = Uint8Array.from([1, 0xfe, 0x80, 0x01, 0, 0, 0, 1, 0x80]);
    await stream.write(v2gtp);
    // The echo may arrive before the receiver registers: it must not be lost.
    await new Promise((r) => setTimeout(r, 50));
    const got = await new Promise<Uint8Array>((r) => stream.onData(r));
    expect([...got]).toEqual([...v2gtp]);
    const closed = new Promise<Error | undefined>((r) => stream.onClose(r));
    await stream.close();
    await srv.ended;
    expect(await closed).toBeUndefined();
    expect(Buffer.concat(srv.received)).toEqual(Buffer.from(v2gtp));
  });

  it('fails typed: refused is TCP_CONNECT_FAILED, an abort before or during the connect is ABORTED', async () => {
    expect(await codeOf(tcp.connect({ host: 'fe80::70:dead', port: 61001, timeoutMs: 2000 }))).toBe('TCP_CONNECT_FAILED');
    const srv = await echoServer();
    link.publishTcp('fe80::70:2', 61002, { host: '127.0.0.1', port: srv.port });
    const before = new AbortController();
    before.abort();
    expect(await codeOf(tcp.connect({ host: 'fe80::70:2', port: 61002, timeoutMs: 2000, signal: before.signal }))).toBe('ABORTED');
    const during = new AbortController();
    const pending = tcp.connect({ host: 'fe80::70:2', port: 61002, timeoutMs: 2000, signal: during.signal });
    during.abort(); // synchronously, before the connection can be up
    expect(await codeOf(pending)).toBe('ABORTED');
  });
});

describeWith([root, tool('ip')])('NodeTcpConnector over a veth pair (link-local, scoped to the interface)', () => {
  let link: EvLink;
  let secc: ChildProcess;
  let seccAddress: string;
  let seccPort: number;

  it('reaches an SECC listening on its link-local address only through the named interface', async () => {
    link = await createEvLink();
    closers.push(() => link.destroy());
    const out = await link.pair.exec(link.pair.se, 'ip', ['-6', '-o', 'addr', 'show', 'dev', link.pair.seIf, 'scope', 'link']);
    seccAddress = /inet6 (fe80::[0-9a-f:]+)\//.exec(out)![1]!;
    // A plain TCP echo listener in the SECC namespace, bound to its link-local address (the SECC side of a DIN session).
    const script = `const s=require('node:net').createServer((c)=>c.pipe(c));s.listen({host:'${seccAddress}%${link.pair.seIf}',port:0},()=>console.log(s.address().port));`;
    secc = spawn('ip', ['netns', 'exec', link.pair.se, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    closers.push(() => void secc.kill());
    seccPort = Number(await new Promise<string>((r) => createInterface({ input: secc.stdout! }).once('line', r)));

    const tcp = new NodeTcpConnector();
    const stream = await tcp.connect({ host: seccAddress, port: seccPort, iface: link.evIf, timeoutMs: 3000 });
    const got = new Promise<Uint8Array>((r) => stream.onData(r));
    await stream.write(Uint8Array.from([1, 0xfe, 0x80, 0x01, 0, 0, 0, 0]));
    expect([...(await got)]).toEqual([1, 0xfe, 0x80, 0x01, 0, 0, 0, 0]);
    await stream.close();
    // Without the scope a link-local address names no interface: the kernel refuses (EINVAL), typed.
    expect(await codeOf(tcp.connect({ host: seccAddress, port: seccPort, timeoutMs: 3000 }))).toBe('TCP_CONNECT_FAILED');
  });

  it('an SECC that vanished from the link (no neighbour answers) is TCP_TIMEOUT', async () => {
    // Take the SECC end down: neighbour discovery for its address goes unanswered, the SYN never leaves.
    await sh('ip', ['-n', link.pair.se, 'link', 'set', link.pair.seIf, 'down']);
    const tcp = new NodeTcpConnector();
    expect(await codeOf(tcp.connect({ host: 'fe80::1:dead', port: seccPort, iface: link.evIf, timeoutMs: 300 }))).toBe('TCP_TIMEOUT');
  });
});
