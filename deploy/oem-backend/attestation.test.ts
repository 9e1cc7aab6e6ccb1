import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { eccPoint, pcrAfterExtend, TPMA, toHex } from '../../firmware/keys/policy.ts';
import { marshalEccPublic } from '../../firmware/keys/duplicate.ts';
import type { SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import { attestationTopics, parseQuoteAttest, pcrDigestOf, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, type AttestationQuote } from '../../firmware/ota/attestation.ts';
import { VirtualClock } from '../../hal/clock/virtual.ts';
import { MemoryBroker } from '../../hal/mqtt/memory.ts';
import { until } from '../../test/support/until.ts';
import { ATTEST_CLAIM_KEEP_PERIODS, AttestationRegistry, AttestationService, judgeEvidence, verifyQuote, type RegisteredVehicle, type VehicleAttestation } from './attestation.ts';

/**
 * The verifier's pure parts with hand-built evidence (the TPM-produced quotes are in test/integration/ota-attest.test.ts):
 * the verdict rules, every refusal of verifyQuote, the TPMS_ATTEST parser's bounds, the periodic challenge with
 * its expiry in virtual time, and two instances on one registry directory (the real broker in ota-attest-instances).
 */
const D = (b: number) => new Uint8Array(32).fill(b);
const line = (digest: Uint8Array, before = new Uint8Array(32)) => `pcr=14 bank=sha256 event=rootfs digest=${toHex(digest)} before=${toHex(before)} size=65536(ext4) read=ok source=/dev/mmcblk0p2`;
const log = (...lines: string[]) => ['# evcc-measure-log/1', ...lines, ''].join('\n');
const release = (version: number, rootfs: Uint8Array) => ({ version, rootfs: { sha256: toHex(rootfs) }, pcrs: { value: toHex(pcrAfterExtend(rootfs)) } }) as unknown as SignedPolicy;

describe('judgeEvidence', () => {
  const releases = [release(1, D(1)), release(2, D(2))];
  const approved = { version: 1, mode: 'approved' as const };
  it('PCR 14 of a signed release with a consistent log: trusted (the release the PCR proves, not the claim)', () => {
    expect(judgeEvidence(pcrAfterExtend(D(2)), log(line(D(2))), approved, releases)).toMatchObject({ state: 'trusted', version: 2, reason: { code: 'ATTEST_TRUSTED' } });
  });
  it('an edited or garbled log is tampered even when PCR 14 is a release\'s value', () => {
    expect(judgeEvidence(pcrAfterExtend(D(1)), log(line(D(3))), approved, releases)).toMatchObject({ state: 'tampered', reason: { code: 'ATTEST_EVENT_LOG_MISMATCH' } });
    expect(judgeEvidence(pcrAfterExtend(D(1)), 'not a log', approved, releases)).toMatchObject({ state: 'tampered', reason: { code: 'ATTEST_EVENT_LOG_MISMATCH' } });
  });
  it('a second extend after the rootfs measurement: tampered (PCR unexpected)', () => {
    const first = new Uint8Array(pcrAfterExtend(D(1)));
    const pcr = pcrAfterExtend(D(9), first);
    expect(judgeEvidence(pcr, log(line(D(1)), line(D(9), first)), approved, releases)).toMatchObject({ state: 'tampered', reason: { code: 'ATTEST_PCR_UNEXPECTED' } });
  });
  it('another rootfs under a signed release\'s version: tampered; under an unknown version: unknown release', () => {
    expect(judgeEvidence(pcrAfterExtend(D(7)), log(line(D(7))), { version: 1, mode: 'degraded' }, releases)).toMatchObject({ state: 'tampered', reason: { code: 'ATTEST_ROOTFS_NOT_RELEASED' } });
    expect(judgeEvidence(pcrAfterExtend(D(7)), log(line(D(7))), { version: 7, mode: 'degraded' }, releases)).toMatchObject({ state: 'unknown-release', version: 7, reason: { code: 'ATTEST_RELEASE_UNKNOWN' } });
    expect(judgeEvidence(pcrAfterExtend(D(7)), log(line(D(7))), { version: null, mode: 'degraded' }, releases).state).toBe('unknown-release');
  });
});

/** A TPMS_ATTEST of a quote over sha256:14 as a TPM lays it out. */
function attest(nonce: Uint8Array, pcrDigest: Uint8Array, o: { magic?: number; type?: number } = {}): Buffer {
  const b: Buffer[] = [];
  const u16 = (v: number) => { const x = Buffer.alloc(2); x.writeUInt16BE(v); return x; };
  const u32 = (v: number) => { const x = Buffer.alloc(4); x.writeUInt32BE(v); return x; };
  const sized = (d: Uint8Array) => Buffer.concat([u16(d.length), Buffer.from(d)]);
  b.push(u32(o.magic ?? TPM_GENERATED_VALUE), u16(o.type ?? TPM_ST_ATTEST_QUOTE), sized(new Uint8Array(34).fill(0xab)), sized(nonce));
  b.push(Buffer.alloc(8, 1), u32(3), u32(0), Buffer.from([1]), Buffer.alloc(8, 2)); // clockInfo, firmwareVersion
  b.push(u32(1), u16(0x000b), Buffer.from([3, 0x00, 0x40, 0x00]), sized(pcrDigest)); // sha256, PCR 14
  return Buffer.concat(b);
}

describe('verifyQuote and parseQuoteAttest', () => {
  const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const vehicle = { vehicleId: 'v1', akName: '00', akPublicKeyPem: ak.publicKey.export({ type: 'spki', format: 'pem' }).toString() } as RegisteredVehicle;
  const nonce = 'aa'.repeat(16);
  const pcr14 = pcrAfterExtend(D(1));
  const challenge = { id: 'challenge-1', nonce, pcrs: [14], issuedAt: '', expiresAtMs: 10_000 };
  const quote = (o: { nonceInside?: string; key?: typeof ak.privateKey; value?: Uint8Array } = {}): AttestationQuote => {
    const a = attest(Buffer.from(o.nonceInside ?? nonce, 'hex'), pcrDigestOf([pcr14]));
    return {
      v: 1, type: 'attest.quote', challengeId: 'challenge-1', nonce, attest: a.toString('base64'), signature: cryptoSign('sha256', a, o.key ?? ak.privateKey).toString('base64'),
      pcrs: [{ index: 14, value: toHex(o.value ?? pcr14) }], eventLog: '', release: { version: 1, mode: 'approved' },
    };
  };
  it('accepts a quote of the open challenge and reads its clock info', () => {
    expect(verifyQuote(quote(), challenge, vehicle, 5_000)).toEqual({ pcr14, resetCount: 3, restartCount: 0 });
    expect(parseQuoteAttest(Buffer.from(quote().attest, 'base64'))).toMatchObject({ pcrs: [14], safe: true });
  });
  it('refuses each way with its own code', () => {
    expect(() => verifyQuote(quote(), undefined, vehicle, 5_000)).toThrow(expect.objectContaining({ code: 'ATTEST_NONCE_UNKNOWN' }));
    expect(() => verifyQuote(quote(), { ...challenge, id: 'challenge-2' }, vehicle, 5_000)).toThrow(expect.objectContaining({ code: 'ATTEST_NONCE_UNKNOWN' }));
    expect(() => verifyQuote(quote(), { ...challenge, nonce: 'bb'.repeat(16) }, vehicle, 5_000)).toThrow(expect.objectContaining({ code: 'ATTEST_NONCE_MISMATCH' }));
    expect(() => verifyQuote(quote(), challenge, vehicle, 10_001)).toThrow(expect.objectContaining({ code: 'ATTEST_NONCE_EXPIRED' }));
    expect(() => verifyQuote(quote({ key: other.privateKey }), challenge, vehicle, 5_000)).toThrow(expect.objectContaining({ code: 'ATTEST_SIGNATURE_INVALID' }));
    expect(() => verifyQuote(quote({ nonceInside: 'cc'.repeat(16) }), challenge, vehicle, 5_000)).toThrow(expect.objectContaining({ code: 'ATTEST_NONCE_MISMATCH' }));
    expect(() => verifyQuote(quote({ value: D(5) }), challenge, vehicle, 5_000)).toThrow(expect.objectContaining({ code: 'ATTEST_PCR_DIGEST_MISMATCH' }));
    expect(() => verifyQuote(quote(), { ...challenge, pcrs: [14, 15] }, vehicle, 5_000)).toThrow(expect.objectContaining({ code: 'ATTEST_PCR_DIGEST_MISMATCH' }));
  });
  it('the parser refuses foreign or truncated structures', () => {
    const good = attest(new Uint8Array(16), new Uint8Array(32));
    for (const bad of [good.subarray(0, good.length - 1), Buffer.concat([good, Buffer.from([0])]), attest(new Uint8Array(16), new Uint8Array(32), { magic: 1 }), attest(new Uint8Array(16), new Uint8Array(32), { type: 0x8017 })]) {
      expect(() => parseQuoteAttest(bad)).toThrow(expect.objectContaining({ code: 'ATTEST_QUOTE_MALFORMED' }));
    }
  });
});

/** A restricted P-256 signing key as the TPM's attestation key: its TPM2B_PUBLIC (to register) and the private half (to sign quotes). */
function attestationKey() {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { x, y } = eccPoint(pair.publicKey.export({ type: 'spki', format: 'pem' }).toString());
  const area = marshalEccPublic({ nameAlg: 0x000b, attributes: TPMA.fixedTPM | TPMA.fixedParent | TPMA.sensitiveDataOrigin | TPMA.userWithAuth | TPMA.restricted | TPMA.sign,
    authPolicy: new Uint8Array(0), symmetric: { alg: 0x0010 }, scheme: { alg: 0x0018, hash: 0x000b }, curve: 0x0003, x, y });
  return { tpm2b: new Uint8Array(Buffer.concat([Buffer.from([area.length >> 8, area.length & 0xff]), Buffer.from(area)])), privateKey: pair.privateKey };
}

const settle = async () => { for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r)); };

describe('AttestationService (memory broker, virtual time)', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  it('challenges every registered vehicle periodically; an unanswered challenge makes it not answering', async () => {
    dir = await mkdtemp(join(tmpdir(), 'evcc-attest-unit-'));
    const registry = await AttestationRegistry.open(dir);
    await registry.registerVehicle('ev-periodic', attestationKey().tpm2b);
    const broker = new MemoryBroker();
    const clock = new VirtualClock(0);
    const service = new AttestationService({ connector: broker, url: 'mqtt://memory', protocolVersion: 5, registry, clock, wallNow: () => clock.now(), log: silentLogger(), periodMs: 60_000, challengeTtlMs: 5_000, shareGroup: false });
    const records: VehicleAttestation[] = [];
    service.onRecord = (s) => records.push(s);
    await service.start();
    const vehicle = broker.connect({ url: 'mqtt://memory', clientId: 'ev-periodic', protocolVersion: 5 });
    const challenges: string[] = [];
    vehicle.onMessage((m) => challenges.push(Buffer.from(m.payload).toString('utf8')));
    await vehicle.subscribe([attestationTopics('ev-periodic').challenge], 1);
    clock.advance(59_000);
    await settle();
    expect(challenges).toHaveLength(0);
    clock.advance(1_000);
    await until(() => challenges.length === 1, 5_000, 'periodic challenge');
    expect(JSON.parse(challenges[0]!)).toMatchObject({ type: 'attest.challenge', pcrs: [14], nonce: expect.stringMatching(/^[0-9a-f]{32}$/) });
    clock.advance(5_100);
    await until(() => records.length > 0, 5_000, 'not answering');
    expect(records.at(-1)).toMatchObject({ vehicleId: 'ev-periodic', state: 'not-answering', reason: { code: 'ATTEST_NOT_ANSWERING' } });
    expect((await registry.state('ev-periodic'))?.challenge).toBeUndefined();
    clock.advance(60_000);
    await until(() => challenges.length === 2, 5_000, 'second periodic challenge');
    // hellos while that challenge is open get the same challenge again, not a new nonce each
    const hello = JSON.stringify({ v: 1, type: 'attest.hello', release: { version: 1, mode: 'approved' } });
    await vehicle.publish(attestationTopics('ev-periodic').hello, hello, { qos: 1 });
    await vehicle.publish(attestationTopics('ev-periodic').hello, hello, { qos: 1 });
    await until(() => challenges.length === 4, 5_000, 'challenges after the hellos');
    expect(new Set(challenges.slice(1).map((c) => JSON.parse(c).challengeId)).size).toBe(1);
    await service.stop();
    await vehicle.close();
  });
});

describe('two AttestationService instances on one registry directory (memory broker, virtual time)', () => {
  const PERIOD = 60_000;
  let dir: string | undefined;
  const services: AttestationService[] = [];
  afterEach(async () => {
    for (const sv of services.splice(0)) await sv.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Instances as separate processes would be: each its own registry object on the shared directory, one share group. */
  async function rig(vehicles: string[], startMs = 0) {
    dir = await mkdtemp(join(tmpdir(), 'evcc-attest-claims-'));
    const keys = new Map<string, ReturnType<typeof attestationKey>>();
    const setup = await AttestationRegistry.open(dir);
    for (const v of vehicles) {
      keys.set(v, attestationKey());
      await setup.registerVehicle(v, keys.get(v)!.tpm2b);
    }
    const broker = new MemoryBroker();
    const clock = new VirtualClock(startMs);
    const make = async (clientId: string) => {
      const sv = new AttestationService({ connector: broker, url: 'mqtt://memory', protocolVersion: 5, clientId, registry: await AttestationRegistry.open(dir!), clock, wallNow: () => clock.now(), log: silentLogger(), periodMs: PERIOD, challengeTtlMs: 5_000 });
      services.push(sv);
      return sv;
    };
    const a = await make('attest-a');
    const b = await make('attest-b');
    await Promise.all([a.start(), b.start()]);
    const spy = broker.connect({ url: 'mqtt://memory', clientId: 'spy', protocolVersion: 5 });
    const challenges: { vehicleId: string; challengeId: string; nonce: string }[] = [];
    spy.onMessage((m) => challenges.push({ vehicleId: m.topic.split('/')[2]!, ...JSON.parse(Buffer.from(m.payload).toString('utf8')) }));
    await spy.subscribe(['evcc/v1/+/attest/challenge'], 1);
    return { setup, broker, clock, a, b, spy, challenges, keys };
  }

  it('claims are exclusive: of many concurrent claims on one vehicle and period, across registry objects, exactly one wins', async () => {
    dir = await mkdtemp(join(tmpdir(), 'evcc-attest-claims-'));
    const [r1, r2] = [await AttestationRegistry.open(dir), await AttestationRegistry.open(dir)];
    const won = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? r1 : r2).claimPeriod('ev-x', 120_000, `i${i}`)));
    expect(won.filter(Boolean)).toHaveLength(1);
    expect(await r1.claimPeriod('ev-x', 180_000, 'next')).toBe(true); // another period is another claim
    await expect(r1.claimPeriod('../x', 120_000, 'bad')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });

  it('each period, each vehicle gets one periodic challenge in all (not one per instance), and both instances take part', async () => {
    const { clock, a, b, challenges } = await rig(['ev-1', 'ev-2', 'ev-3']);
    for (let p = 1; p <= 3; p++) {
      clock.advance(PERIOD);
      await until(() => challenges.length === 3 * p, 5_000, `challenges of period ${p}`);
      await settle();
      expect(challenges.length, `period ${p}`).toBe(3 * p);
      expect(new Set(challenges.slice(-3).map((c) => c.vehicleId))).toEqual(new Set(['ev-1', 'ev-2', 'ev-3']));
    }
    expect(a.stats.challenges + b.stats.challenges).toBe(9);
    // both ticked every period: per vehicle and period one claim file, won by one of the two
    const periods = (await readdir(join(dir!, 'claims'))).sort();
    expect(periods).toEqual(['120000', '180000', '60000']);
    for (const p of periods) expect((await readdir(join(dir!, 'claims', p))).sort()).toEqual(['ev-1', 'ev-2', 'ev-3']);
  });

  it('a claim left by another (gone) instance is honoured; claims older than the kept periods are pruned', async () => {
    const start = 10 * PERIOD;
    const { setup, clock, challenges } = await rig(['ev-1', 'ev-2'], start);
    await setup.claimPeriod('ev-1', 0, 'long-gone'); // stale
    await setup.claimPeriod('ev-1', start - PERIOD, 'recent'); // within the kept periods
    await setup.claimPeriod('ev-1', start + PERIOD, 'gone-instance'); // the coming period's, taken by an instance that died since
    clock.advance(PERIOD);
    await until(() => challenges.length === 1, 5_000, 'the one unclaimed vehicle challenged');
    await settle();
    expect(challenges.map((c) => c.vehicleId)).toEqual(['ev-2']);
    const kept = (await readdir(join(dir!, 'claims'))).map(Number).sort((x, y) => x - y);
    expect(kept).toEqual([start - PERIOD, start + PERIOD]);
    // after enough periods the recent one goes too, the newest ones stay
    clock.advance(ATTEST_CLAIM_KEEP_PERIODS * PERIOD);
    await until(() => challenges.length === 1 + 2 * ATTEST_CLAIM_KEEP_PERIODS, 5_000, 'later periods');
    await settle();
    const later = (await readdir(join(dir!, 'claims'))).map(Number).sort((x, y) => x - y);
    expect(later[0]).toBeGreaterThanOrEqual(start + PERIOD);
    expect(later).not.toContain(start - PERIOD);
  });

  it('a challenge one instance sent is verified by the other; one instance stopped, the other keeps attesting', async () => {
    const { clock, a, b, spy, challenges, keys, setup } = await rig(['ev-1']);
    const answer = async (c: { challengeId: string; nonce: string }) => {
      const rootfs = D(7);
      const pcr14 = pcrAfterExtend(rootfs);
      const att = attest(Buffer.from(c.nonce, 'hex'), pcrDigestOf([pcr14]));
      const q = {
        v: 1, type: 'attest.quote', challengeId: c.challengeId, nonce: c.nonce, attest: att.toString('base64'),
        signature: cryptoSign('sha256', att, keys.get('ev-1')!.privateKey).toString('base64'), pcrs: [{ index: 14, value: toHex(pcr14) }],
        eventLog: log(line(rootfs)), release: { version: 7, mode: 'degraded' },
      };
      await spy.publish(attestationTopics('ev-1').quote, JSON.stringify(q), { qos: 1 });
    };
    const recordsOf = (sv: AttestationService) => {
      const out: VehicleAttestation[] = [];
      sv.onRecord = (s) => out.push(structuredClone(s));
      return out;
    };
    const [ra, rb] = [recordsOf(a), recordsOf(b)];
    const id = await a.challenge('ev-1');
    await until(() => challenges.length === 1, 5_000, 'challenge by a');
    await a.stop(); // only b is left in the share group: the quote can only reach b
    await answer(challenges[0]!);
    await until(() => rb.length === 1, 5_000, 'b verifies a\'s challenge');
    expect(challenges[0]!.challengeId).toBe(id);
    expect(ra).toEqual([]);
    // verified (signature, nonce, PCR digest) and judged: an unsigned release, not a refusal
    expect(rb[0]).toMatchObject({ state: 'unknown-release', reason: { code: 'ATTEST_RELEASE_UNKNOWN' }, version: 7 });
    expect(rb[0]!.lastRefusal).toBeUndefined();
    expect((await setup.state('ev-1'))?.challenge).toBeUndefined();

    // b alone: every period's challenge is now b's, and answered
    for (let p = 1; p <= 2; p++) {
      clock.advance(PERIOD);
      await until(() => challenges.length === 1 + p, 5_000, `b's periodic challenge ${p}`);
      await answer(challenges.at(-1)!);
      await until(() => rb.length === 1 + p, 5_000, `verdict ${p}`);
      expect(rb.at(-1)).toMatchObject({ state: 'unknown-release' });
    }
    expect(b.stats).toMatchObject({ challenges: 2, verdicts: 3, refused: 0 });
  });

  it('the same quote delivered to both instances (a re-delivered message) consumes the challenge once: one verdict, one refusal', async () => {
    dir = await mkdtemp(join(tmpdir(), 'evcc-attest-once-'));
    const key = attestationKey();
    const setup = await AttestationRegistry.open(dir);
    await setup.registerVehicle('ev-1', key.tpm2b);
    const broker = new MemoryBroker();
    const clock = new VirtualClock(0);
    // No share group: both instances get every quote, as when the broker re-delivers one to another member.
    const make = async (clientId: string) => {
      const sv = new AttestationService({ connector: broker, url: 'mqtt://memory', protocolVersion: 5, clientId, registry: await AttestationRegistry.open(dir!), clock, wallNow: () => clock.now(), log: silentLogger(), periodMs: 0, challengeTtlMs: 5_000, shareGroup: false });
      services.push(sv);
      return sv;
    };
    const [a, b] = [await make('attest-a'), await make('attest-b')];
    await Promise.all([a.start(), b.start()]);
    const records: VehicleAttestation[] = [];
    a.onRecord = b.onRecord = (s) => records.push(structuredClone(s));
    const vehicle = broker.connect({ url: 'mqtt://memory', clientId: 'ev-1', protocolVersion: 5 });
    const challenges: { challengeId: string; nonce: string }[] = [];
    vehicle.onMessage((m) => challenges.push(JSON.parse(Buffer.from(m.payload).toString('utf8'))));
    await vehicle.subscribe([attestationTopics('ev-1').challenge], 1);
    await a.challenge('ev-1');
    await until(() => challenges.length === 1, 5_000, 'challenge');
    const c = challenges[0]!;
    const rootfs = D(7);
    const pcr14 = pcrAfterExtend(rootfs);
    const att = attest(Buffer.from(c.nonce, 'hex'), pcrDigestOf([pcr14]));
    await vehicle.publish(attestationTopics('ev-1').quote, JSON.stringify({
      v: 1, type: 'attest.quote', challengeId: c.challengeId, nonce: c.nonce, attest: att.toString('base64'), signature: cryptoSign('sha256', att, key.privateKey).toString('base64'),
      pcrs: [{ index: 14, value: toHex(pcr14) }], eventLog: log(line(rootfs)), release: { version: 7, mode: 'degraded' },
    }), { qos: 1 });
    await until(() => records.length === 2, 5_000, 'both instances handled the quote');
    expect(a.stats.verdicts + b.stats.verdicts).toBe(1);
    expect(a.stats.refused + b.stats.refused).toBe(1);
    expect(records.map((r) => r.lastRefusal?.code)).toEqual([undefined, 'ATTEST_NONCE_UNKNOWN']);
    const s = await setup.state('ev-1');
    expect(s?.challenge).toBeUndefined();
    expect(s).toMatchObject({ state: 'unknown-release', lastRefusal: { code: 'ATTEST_NONCE_UNKNOWN' } });
    expect(s?.history.map((h) => h.state)).toEqual(['unknown-release', 'refused']);
    await vehicle.close();
  });

  it('a challenge whose sender stopped before it expired is recorded not answering by the next instance that challenges', async () => {
    const { clock, a, b, challenges, setup } = await rig(['ev-1']);
    const rb: VehicleAttestation[] = [];
    b.onRecord = (s) => rb.push(structuredClone(s));
    await a.challenge('ev-1');
    await a.stop(); // its expiry timer goes with it
    clock.advance(PERIOD); // past the expiry; b's periodic challenge replaces the dead one
    await until(() => challenges.length === 2, 5_000, 'b\'s periodic challenge');
    await until(() => rb.length === 1, 5_000, 'not answering');
    expect(rb[0]).toMatchObject({ state: 'not-answering', reason: { code: 'ATTEST_NOT_ANSWERING' } });
    const s = await setup.state('ev-1');
    expect(s?.challenge?.id).toBe(challenges[1]!.challengeId);
    expect(s?.history.map((h) => h.state)).toEqual(['not-answering']);
  });
});
