import { describe, expect, it } from 'vitest';
import { MemoryBroker } from './memory.ts';
import { parseSharedFilter, sharedFilter, topicMatches } from './types.ts';

describe('MQTT topic filters', () => {
  it('matches + and # as MQTT does', () => {
    expect(topicMatches('evcc/v1/+/pki/rootca/req', 'evcc/v1/veh-1/pki/rootca/req')).toBe(true);
    expect(topicMatches('evcc/v1/+/pki/rootca/req', 'evcc/v1/veh-1/pki/roots/req')).toBe(false);
    expect(topicMatches('evcc/v1/veh-1/#', 'evcc/v1/veh-1/state')).toBe(true);
    expect(topicMatches('evcc/v1/veh-1/#', 'evcc/v1/veh-2/state')).toBe(false);
    expect(topicMatches('evcc/v1/+', 'evcc/v1/a/b')).toBe(false);
    expect(topicMatches('#', 'anything/at/all')).toBe(true);
  });
});

describe('in-memory broker (simulated transport)', () => {
  it('routes, retains, queues QoS 1 while offline, and publishes the will on an abrupt loss only', async () => {
    const bus = new MemoryBroker();
    const a = bus.connect({ url: 'mem://', clientId: 'a', protocolVersion: 4, will: { topic: 'x/state', payload: 'offline', qos: 1, retain: true } });
    const b = bus.connect({ url: 'mem://', clientId: 'b', protocolVersion: 4 });
    await Promise.resolve();
    const got: string[] = [];
    b.onMessage((m) => got.push(`${m.topic}=${new TextDecoder().decode(m.payload)}${m.retain ? ' (retained)' : ''}`));
    await b.subscribe(['x/#'], 1);
    await a.publish('x/1', 'one', { qos: 1 });
    bus.online = false;
    const queued = a.publish('x/2', 'two', { qos: 1 });
    await a.publish('x/lost', 'qos0', { qos: 0 });
    bus.online = true;
    await queued;
    await a.destroy();
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual(['x/1=one', 'x/2=two', 'x/state=offline']);
    const late = bus.connect({ url: 'mem://', clientId: 'c', protocolVersion: 4 });
    const seen: string[] = [];
    late.onMessage((m) => seen.push(`${m.topic} retained=${m.retain}`));
    await Promise.resolve();
    await late.subscribe(['x/state'], 1);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual(['x/state retained=true']);
  });
});

describe('in-memory broker: size caps as on the real link', () => {
  it('the broker refuses a PUBLISH over its cap; a client never receives a packet over its own cap', async () => {
    const bus = new MemoryBroker();
    bus.maxPacketBytes = 2_000;
    const sender = bus.connect({ url: 'mem://', clientId: 'backend', protocolVersion: 5 });
    const small = bus.connect({ url: 'mem://', clientId: 'small', protocolVersion: 5, maxPacketBytes: 600 });
    const big = bus.connect({ url: 'mem://', clientId: 'big', protocolVersion: 5 });
    await Promise.resolve();
    const got: Record<string, number[]> = { small: [], big: [] };
    small.onMessage((m) => got.small!.push(m.payload.byteLength));
    big.onMessage((m) => got.big!.push(m.payload.byteLength));
    await small.subscribe(['x/#'], 1);
    await big.subscribe(['x/#'], 1);
    expect(await sender.publish('x/1', new Uint8Array(100), { qos: 1 })).toEqual({});
    expect(await sender.publish('x/1', new Uint8Array(1_000), { qos: 1 })).toEqual({});
    expect(await sender.publish('x/1', new Uint8Array(5_000), { qos: 1 })).toEqual({ reasonCode: 0x95 });
    await new Promise((r) => setTimeout(r, 0));
    expect(got).toEqual({ small: [100], big: [100, 1_000] });
    expect(bus.oversized.map((o) => o.at)).toEqual(['small', 'broker']);
    expect(bus.log).toHaveLength(2);
  });

  it('shared subscriptions: each message to one connected member of the group, round robin; a plain subscriber still sees all', async () => {
    expect(parseSharedFilter(sharedFilter('g', 'evcc/v1/+/req'))).toEqual({ group: 'g', filter: 'evcc/v1/+/req' });
    expect(parseSharedFilter('evcc/v1/+/req')).toBeUndefined();
    const bus = new MemoryBroker();
    const [m1, m2, plain, pub] = ['m1', 'm2', 'plain', 'pub'].map((clientId) => bus.connect({ url: 'mem://', clientId, protocolVersion: 5 }));
    await Promise.resolve();
    const got: Record<string, string[]> = { m1: [], m2: [], plain: [] };
    for (const [c, k] of [[m1!, 'm1'], [m2!, 'm2'], [plain!, 'plain']] as const) c.onMessage((m) => got[k]!.push(new TextDecoder().decode(m.payload)));
    await m1!.subscribe([sharedFilter('g', 'r/+')], 1);
    await m2!.subscribe([sharedFilter('g', 'r/+')], 1);
    await plain!.subscribe(['r/+'], 1);
    for (const n of ['1', '2', '3', '4']) await pub!.publish(`r/${n}`, n, { qos: 1 });
    await m2!.destroy();
    for (const n of ['5', '6']) await pub!.publish(`r/${n}`, n, { qos: 1 });
    await new Promise((r) => setImmediate(r));
    expect(got.m1!.length + got.m2!.length).toBe(6);
    expect(got.m2!.length).toBe(2);
    expect(got.m1).toEqual(expect.arrayContaining(['5', '6']));
    expect(got.plain).toEqual(['1', '2', '3', '4', '5', '6']);
  });
});
