import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import { AttestationRegistry, AttestationService } from '../../deploy/oem-backend/attestation.ts';
import { AttestationChallenge, attestationTopics } from '../../firmware/ota/attestation.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttClient } from '../../hal/mqtt/types.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { OEM_BACKEND_USER, startMosquitto, type MosquittoBroker } from '../support/mosquitto.ts';
import { until } from '../support/until.ts';
import { linkKeyFromTrust, registerAtProduction, releaseClaim, spyClient, startVehicle, type AttestedVehicle } from './ota-attest-rig.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * Issue #10 "Scale beyond one broker", attestation half: two attestation verifiers in the backend's share group on a
 * real mosquitto (mTLS, per-vehicle ACL), one registry directory between them, one vehicle quoting with its swtpm.
 * Each period the vehicle gets ONE periodic challenge (counted on its challenge topic), though both instances tick
 * (each logs the period, one challenged it); every quote is verified by whichever instance the broker hands it to —
 * also one answering the other instance's challenge, the open nonce being in the shared registry. With one instance
 * stopped the other goes on challenging every period and verifying.
 */
const VID = 'attest-inst-ev-1';
const PERIOD = 5_000;
const TTL = 4_000;
const T = 60_000;

interface Instance {
  name: string;
  service: AttestationService;
  /** The instance's log lines as objects. */
  events: Record<string, unknown>[];
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Until the middle of a period: ticks (at the boundaries) are then half a period away either side. */
const toMidPeriod = () => wait(((PERIOD * 1.5) - (Date.now() % PERIOD)) % PERIOD || PERIOD);

describeWith([tool('swtpm'), tool('tpm2_quote'), tool('mosquitto'), tool('rauc'), tool('openssl')])('attestation by two backend instances (shared subscriptions + one registry dir)', () => {
  let lab: TpmLab;
  let broker: MosquittoBroker;
  let dir: string;
  let vehicle: AttestedVehicle | undefined;
  let spy: { client: MqttClient; messages: unknown[] } | undefined;
  const instances: Instance[] = [];
  /** Challenges seen on the vehicle's challenge topic, with when they arrived. */
  const challenges: { at: number; challengeId: string }[] = [];

  const startInstance = async (name: string): Promise<Instance> => {
    const events: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _e, done) {
        for (const l of chunk.toString('utf8').split('\n')) if (l) events.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    const service = new AttestationService({
      connector: new MqttJsConnector(), url: broker.url, protocolVersion: 5, tls: await broker.identity(OEM_BACKEND_USER), clientId: `oem-attest-${name}`,
      registry: await AttestationRegistry.open(dir), clock: new SystemClock(), log: createLogger({ level: 'info', destination }), periodMs: PERIOD, challengeTtlMs: TTL,
    });
    await service.start();
    const inst = { name, service, events };
    instances.push(inst);
    return inst;
  };
  const cp = (i: Instance, id: string) => i.events.filter((e) => e.cp === id);
  /** Who verified challenge `id` (trusted verdicts), over all instances. */
  const verifiersOf = (id: string) => instances.filter((i) => cp(i, 'ATTEST-VERDICT').some((e) => e.challengeId === id && e.state === 'trusted')).map((i) => i.name);
  const issuerOf = (id: string) => instances.filter((i) => cp(i, 'ATTEST-CHALLENGE').some((e) => e.challengeId === id)).map((i) => i.name);

  beforeAll(async () => {
    lab = await TpmLab.create();
    await lab.bootedVehicle();
    broker = await startMosquitto();
    dir = await mkdtemp(join(tmpdir(), 'evcc-attest-instances-'));
    await registerAtProduction(await AttestationRegistry.open(dir), lab, VID);
    const linkKey = await linkKeyFromTrust(lab, broker, VID);
    await Promise.all([startInstance('a'), startInstance('b')]);
    spy = await spyClient(broker, OEM_BACKEND_USER, [attestationTopics(VID).challenge]);
    spy.client.onMessage((m) => {
      if (m.topic === attestationTopics(VID).challenge) challenges.push({ at: Date.now(), challengeId: AttestationChallenge.parse(JSON.parse(Buffer.from(m.payload).toString('utf8'))).challengeId });
    });
    vehicle = await startVehicle(lab, broker, { vehicleId: VID, encryptedKeyPem: linkKey, claim: () => releaseClaim(lab, `${lab.oemDir}/v1.raucb`) });
  }, T);
  afterAll(async () => {
    await vehicle?.close().catch(() => undefined);
    await spy?.client.close().catch(() => undefined);
    for (const i of instances) await i.service.stop().catch(() => undefined);
    await broker?.stop().catch(() => undefined);
    await lab?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('one periodic challenge per period between both instances; each answer verified by the instance that receives it', async () => {
    // the hello: challenged and answered through the group
    await until(() => challenges.some((c) => verifiersOf(c.challengeId).length > 0), 20_000, 'the hello\'s challenge verified');
    await toMidPeriod();
    const from = Date.now();
    await wait(3 * PERIOD);
    const to = Date.now();
    const inWindow = challenges.filter((c) => c.at > from && c.at <= to);
    expect(inWindow, 'challenges in 3 periods').toHaveLength(3);
    // both instances ticked each of those periods: one challenged the vehicle, the other found the claim taken
    const boundaries = [1, 2, 3].map((k) => new Date((Math.floor(from / PERIOD) + k) * PERIOD).toISOString());
    for (const b of boundaries) {
      const ticks = instances.map((i) => cp(i, 'ATTEST-PERIODIC').filter((e) => e.period === b));
      expect(ticks.map((t) => t.length), `ticks of ${b}`).toEqual([1, 1]);
      expect(ticks.flat().map((e) => e.challenged).sort(), `period ${b}`).toEqual([0, 1]);
    }
    await until(() => inWindow.every((c) => verifiersOf(c.challengeId).length > 0), 10_000, 'the periodic challenges verified');
    for (const c of inWindow) expect(verifiersOf(c.challengeId), c.challengeId).toHaveLength(1);
    // the broker gives successive quotes to alternate members: both instances verified some
    const verdictsBy = instances.map((i) => cp(i, 'ATTEST-VERDICT').length);
    expect(verdictsBy.every((n) => n > 0), `verdicts per instance ${verdictsBy.join('/')}`).toBe(true);
    // (the hello's challenge may have been replaced by a periodic one before its quote came: counted from the window on)
    for (const i of instances) expect(cp(i, 'ATTEST-REFUSED').filter((e) => Number(e.time) > from), i.name).toEqual([]);
  }, T);

  it('a challenge sent by instance a, then a stopped: b verifies the answer, and attests alone every period', async () => {
    // By name: the instances were started together and listed in the order they came up.
    const a = instances.find((i) => i.name === 'a')!;
    const b = instances.find((i) => i.name === 'b')!;
    await toMidPeriod(); // the quote well before the next periodic challenge would replace this one
    const id = await a.service.challenge(VID);
    expect(id).toBeDefined();
    await a.service.stop(); // the quote (a TPM quote away) can only reach b now
    await until(() => verifiersOf(id!).length > 0, 10_000, 'b verifies a\'s challenge');
    expect(issuerOf(id!)).toEqual(['a']);
    expect(verifiersOf(id!)).toEqual(['b']);

    await toMidPeriod();
    const from = Date.now();
    await wait(2 * PERIOD);
    const inWindow = challenges.filter((c) => c.at > from && c.at <= Date.now());
    expect(inWindow, 'challenges in 2 periods with b alone').toHaveLength(2);
    await until(() => inWindow.every((c) => verifiersOf(c.challengeId).length > 0), 10_000, 'b\'s periodic challenges verified');
    for (const c of inWindow) {
      expect(issuerOf(c.challengeId)).toEqual(['b']);
      expect(verifiersOf(c.challengeId)).toEqual(['b']);
    }
    expect(cp(b, 'ATTEST-REFUSED')).toEqual([]);
    expect(cp(b, 'ATTEST-NOT-ANSWERING')).toEqual([]);
  }, T);
});
