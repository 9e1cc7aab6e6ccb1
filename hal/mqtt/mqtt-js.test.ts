import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../test/support/until.ts';
import { MqttJsConnector, parseBrokerUrl } from './mqtt-js.ts';
import type { MqttClient, MqttMessage } from './types.ts';
import { publishHeader } from '../../test/support/mqtt-packets.ts';

/**
 * A minimal MQTT 3.1.1 peer that plays the broker: CONNACK on the first bytes, then whatever the test sends.
 * It lets a test send what no well-behaved broker would (an oversized PUBLISH), to check the client's own cap.
 */
async function fakeBroker(): Promise<{ server: Server; url: string; connection: Promise<Socket> }> {
  let accept!: (s: Socket) => void;
  const connection = new Promise<Socket>((r) => (accept = r));
  const server = createServer((s) => {
    s.once('data', () => {
      s.write(Buffer.from([0x20, 0x02, 0x00, 0x00])); // CONNACK, accepted
      accept(s);
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`, connection };
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

function client(url: string, maxPacketBytes: number): { c: MqttClient; messages: MqttMessage[]; errors: Error[] } {
  const c = new MqttJsConnector().connect({ url, clientId: 'evcc-ev-1', protocolVersion: 4, reconnectPeriodMs: 0, maxPacketBytes });
  const messages: MqttMessage[] = [];
  const errors: Error[] = [];
  c.onMessage((m) => messages.push(m));
  c.onStatus((_s, e) => e && errors.push(e));
  cleanups.push(() => c.close());
  return { c, messages, errors };
}

describe('MqttJsClient: incoming packet cap', () => {
  it('drops the connection at the header of an oversized PUBLISH, without waiting for (or buffering) its payload', async () => {
    const { server, url, connection } = await fakeBroker();
    cleanups.push(() => new Promise((r) => server.close(r)));
    const { c, messages, errors } = client(url, 64 * 1024);
    const s = await connection;
    await until(() => c.status === 'connected', 5_000, 'CONNACK');
    const small = Buffer.from('{"ok":true}');
    s.write(Buffer.concat([publishHeader('evcc/v1/ev-1/rootca/response', small.length), small]));
    await until(() => messages.length === 1, 5_000, 'the small message');
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    // Only the header and 10 bytes of a 64 MiB payload: a client that buffers whole packets would wait forever.
    s.write(Buffer.concat([publishHeader('evcc/v1/ev-1/rootca/response', 64 * 1024 * 1024), Buffer.alloc(10)]));
    await closed;
    expect(messages).toHaveLength(1);
    expect(errors.some((e) => (e as { code?: string }).code === 'MQTT_PACKET_TOO_LARGE')).toBe(true);
  });

  it('a broker streaming 64 MiB is cut off early: far fewer bytes accepted, memory does not grow by the payload', async () => {
    const { server, url, connection } = await fakeBroker();
    cleanups.push(() => new Promise((r) => server.close(r)));
    const { c, messages } = client(url, 64 * 1024);
    const s = await connection;
    await until(() => c.status === 'connected', 5_000, 'CONNACK');
    const total = 64 * 1024 * 1024;
    const rssBefore = process.memoryUsage().rss;
    let written = 0;
    let open = true;
    s.once('close', () => (open = false));
    s.write(publishHeader('evcc/v1/ev-1/rootca/response', total));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    while (open && written < total) {
      const ok = s.write(chunk, () => undefined);
      written += chunk.length;
      if (!ok) await new Promise<void>((r) => { s.once('drain', r); s.once('close', r); });
    }
    expect(open).toBe(false);
    expect(written).toBeLessThan(total / 2);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(total / 2);
    expect(messages).toHaveLength(0);
  });

  it('MQTT 5 announces the cap in CONNECT (maximumPacketSize, property 0x27)', async () => {
    let connect!: (b: Buffer) => void;
    const got = new Promise<Buffer>((r) => (connect = r));
    const server = createServer((s) => s.once('data', (b: Buffer) => { connect(b); s.destroy(); }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const c = new MqttJsConnector().connect({ url: `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`, clientId: 'evcc-ev-1', protocolVersion: 5, reconnectPeriodMs: 0, maxPacketBytes: 66_560 });
    cleanups.push(() => c.close());
    const bytes = await got;
    const cap = Buffer.alloc(5);
    cap[0] = 0x27;
    cap.writeUInt32BE(66_560, 1);
    expect(bytes.includes(cap)).toBe(true);
  });
});

describe('parseBrokerUrl', () => {
  it('refuses what is not an mqtt(s) URL with a host, typed', () => {
    for (const bad of ['notaurl', 'http://host:1883', 'mqtt://', 'mqtts://:8883', 'mqtt://h:0']) {
      expect(() => parseBrokerUrl(bad), bad).toThrowError(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
    expect(parseBrokerUrl('mqtts://oem-broker.bench.local:8883').port).toBe('8883');
    expect(() => new MqttJsConnector().connect({ url: 'notaurl', clientId: 'x', protocolVersion: 4 })).toThrowError(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
