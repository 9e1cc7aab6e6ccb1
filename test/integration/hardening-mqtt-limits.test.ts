import { readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BROKER_MAX_PACKET_BYTES, BROKER_MAX_PAYLOAD_BYTES, startEmbeddedBroker } from '../../deploy/oem-backend/embedded-broker.ts';
import { OTA_MAX_ROOT_LIST_BYTES } from '../../firmware/ota/constants.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttClient, MqttMessage } from '../../hal/mqtt/types.ts';
import { OEM_BACKEND_USER, startMosquitto } from '../support/mosquitto.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';
import { publishHeader, varint } from '../support/mqtt-packets.ts';

/**
 * MQTT size caps at the broker (issue #13): a PUBLISH larger than the cap is refused at its fixed header — the
 * sender is disconnected after sending only the header, so the broker never waited for (or buffered) the payload —
 * and a subscribed vehicle never receives it. Both brokers: embedded aedes and Debian mosquitto.
 */
const connector = new MqttJsConnector();
const TOPIC = 'evcc/v1/ev-lim-1/rootca/response';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** MQTT 3.1.1 CONNECT with a clean session. */
function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([Buffer.from([0x00, 0x04]), Buffer.from('MQTT'), Buffer.from([0x04, 0x02, 0x00, 0x3c, id.length >> 8, id.length & 0xff]), id]);
  return Buffer.concat([Buffer.from([0x10, ...varint(body.length)]), body]);
}

/** Connects by hand (so the test controls every byte), waits for CONNACK, then sends only an oversized header. */
async function sendOversizedHeader(socket: Socket, clientId: string): Promise<{ sentBytes: number }> {
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('data', (b: Buffer) => (b[0] === 0x20 && b[b.length - 1] === 0x00 ? resolve() : reject(new Error(`no CONNACK: ${b.toString('hex')}`))));
    socket.write(connectPacket(clientId));
  });
  // The header announces 64 MiB; only 16 bytes of it follow. A broker that buffers whole packets would wait.
  const header = Buffer.concat([publishHeader(TOPIC, 64 * 1024 * 1024), Buffer.alloc(16, 0x61)]);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  socket.write(header);
  await closed;
  return { sentBytes: header.length };
}

async function subscribed(c: MqttClient): Promise<MqttMessage[]> {
  const got: MqttMessage[] = [];
  c.onMessage((m) => got.push(m));
  await until(() => c.status === 'connected', 10_000, 'subscriber connected');
  expect(await c.subscribe(['evcc/v1/ev-lim-1/#'], 1)).toEqual([1]);
  return got;
}

it('the cap leaves room for the largest OTA message and matches deploy/oem-backend/mosquitto.conf', async () => {
  expect(BROKER_MAX_PAYLOAD_BYTES).toBeGreaterThanOrEqual(2 * OTA_MAX_ROOT_LIST_BYTES);
  expect(BROKER_MAX_PACKET_BYTES).toBeGreaterThan(BROKER_MAX_PAYLOAD_BYTES);
  const conf = await readFile(join(process.cwd(), 'deploy/oem-backend/mosquitto.conf'), 'utf8');
  expect(conf).toMatch(new RegExp(`^max_packet_size ${BROKER_MAX_PACKET_BYTES}$`, 'm'));
});

describe('embedded broker (aedes)', () => {
  it('disconnects a client at the header of an oversized PUBLISH; the vehicle never receives it; small ones pass', async () => {
    const broker = await startEmbeddedBroker({});
    cleanups.push(() => broker.close());
    const vehicle = connector.connect({ url: broker.url, clientId: 'evcc-ev-lim-1', protocolVersion: 4, reconnectPeriodMs: 0 });
    cleanups.push(() => vehicle.close());
    const got = await subscribed(vehicle);

    const sock = netConnect({ host: '127.0.0.1', port: broker.port });
    cleanups.push(async () => sock.destroy());
    expect((await sendOversizedHeader(sock, 'oem-backend-raw')).sentBytes).toBeLessThan(64);

    // A whole oversized message through a real client: the broker drops it (and the sender), nothing is delivered.
    const backend = connector.connect({ url: broker.url, clientId: 'oem-backend-lim', protocolVersion: 4, reconnectPeriodMs: 0 });
    cleanups.push(() => backend.close());
    await until(() => backend.status === 'connected', 10_000, 'backend connected');
    void backend.publish(TOPIC, new Uint8Array(BROKER_MAX_PACKET_BYTES + 1), { qos: 0 }).catch(() => undefined);
    await until(() => backend.status !== 'connected', 10_000, 'oversized sender disconnected');

    const backend2 = connector.connect({ url: broker.url, clientId: 'oem-backend-lim-2', protocolVersion: 4, reconnectPeriodMs: 0 });
    cleanups.push(() => backend2.close());
    await until(() => backend2.status === 'connected', 10_000, 'second backend connected');
    await backend2.publish(TOPIC, 'small', { qos: 1 });
    await until(() => got.length === 1, 10_000, 'the small message');
    expect(got.map((m) => Buffer.from(m.payload).toString())).toEqual(['small']);
  });
});

describeWith([tool('mosquitto')])('Debian mosquitto with the deployed cap', () => {
  it('refuses an oversized packet at its header and never delivers it', async () => {
    const broker = await startMosquitto();
    cleanups.push(() => broker.stop());
    const vehicle = connector.connect({ url: broker.url, clientId: 'ev-lim-1', protocolVersion: 5, tls: await broker.identity('ev-lim-1'), reconnectPeriodMs: 0 });
    cleanups.push(() => vehicle.close());
    const got = await subscribed(vehicle);

    const id = await broker.identity(OEM_BACKEND_USER);
    const pem = (v: string | Uint8Array) => Buffer.from(v);
    const sock = tlsConnect({ host: '127.0.0.1', port: broker.port, ca: pem(id.ca), cert: pem(id.cert), key: pem(id.key), checkServerIdentity: () => undefined });
    cleanups.push(async () => sock.destroy());
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', () => resolve());
      sock.once('error', reject);
    });
    expect((await sendOversizedHeader(sock, 'oem-backend-raw')).sentBytes).toBeLessThan(64);

    // A whole oversized message through a real MQTT 5 client: mosquitto disconnects the sender (measured: EPIPE on
    // the client's write), nothing is delivered.
    const backend = connector.connect({ url: broker.url, clientId: 'oem-backend-lim', protocolVersion: 5, tls: id, reconnectPeriodMs: 0 });
    cleanups.push(() => backend.close());
    await until(() => backend.status === 'connected', 10_000, 'backend connected');
    void backend.publish(TOPIC, new Uint8Array(BROKER_MAX_PACKET_BYTES + 1), { qos: 1 }).catch(() => undefined);
    await until(() => backend.status !== 'connected', 10_000, 'oversized sender disconnected');

    const backend2 = connector.connect({ url: broker.url, clientId: 'oem-backend-lim-2', protocolVersion: 5, tls: id, reconnectPeriodMs: 0 });
    cleanups.push(() => backend2.close());
    await until(() => backend2.status === 'connected', 10_000, 'second backend connected');
    expect((await backend2.publish(TOPIC, 'small', { qos: 1 })).reasonCode ?? 0).toBe(0);
    await until(() => got.length === 1, 10_000, 'the small message');
    expect(got.map((m) => Buffer.from(m.payload).toString())).toEqual(['small']);
  });
});
