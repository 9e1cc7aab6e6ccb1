import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import type { SecurityLogCollector } from '../../deploy/oem-backend/security-log.ts';
import { mqttSecurityLogBackend, securityLogTopics } from '../../firmware/log/mqtt-upload.ts';
import { SecurityLog, encodeEntry, logKeyId, parseEntries, SECURITY_LOG_PATH, type CheckpointSigner } from '../../firmware/log/security-log.ts';
import { uploadSecurityLog } from '../../firmware/log/upload.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttClient } from '../../hal/mqtt/types.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { startOemBackendFixture, type OemBackendFixture } from '../support/oem-backend-fixture.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';

/**
 * Security-log upload over a real Debian mosquitto (mutual TLS, per-vehicle ACL) to the OEM backend service: the
 * backend verifies each upload as a continuation of the head it holds with the vehicle's registered log key and
 * stores it; a vehicle log cut back after an upload cannot extend that head; a forged continuation is refused with
 * the first bad entry named; another vehicle cannot write into this vehicle's log. (The TPM-signed checkpoints are
 * test/integration/security-log.test.ts; here a software P-256 key stands in for the log key.)
 */
const connector = new MqttJsConnector();
const clock = new SystemClock();
const VIN = 'veh-log-a';
let oemFx: OemBackendFixture;
let collector: SecurityLogCollector;
let dir: string;
const links: OtaLink[] = [];
const raws: MqttClient[] = [];

function softwareLogKey(): { signer: CheckpointSigner; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  return { pem, signer: { keyId: logKeyId(pem), sign: async (m) => new Uint8Array(cryptoSign('sha256', m, { key: privateKey, dsaEncoding: 'ieee-p1363' })) } };
}

describeWith([tool('mosquitto')])('security-log upload over mosquitto to the OEM backend', () => {
  beforeAll(async () => {
    oemFx = await startOemBackendFixture({ securityLogs: true, clientId: 'oem-backend-seclog' });
    ({ collector, dir } = oemFx.securityLogs!);
  });
  afterAll(async () => {
    for (const l of links) await l.close().catch(() => undefined);
    for (const c of raws) await c.close().catch(() => undefined);
    await oemFx?.close();
  });

  it('uploads are verified continuations; a cut vehicle log, a forged continuation and another vehicle are refused', async () => {
    const key = softwareLogKey();
    await collector.registerVehicle(VIN, key.pem);
    const link = new OtaLink({ connector, url: oemFx.broker.url, vehicleId: VIN, protocolVersion: 5, tls: await oemFx.vehicleTls(VIN), clock, log: silentLogger(), reconnectPeriodMs: 200 });
    links.push(link);
    expect(await link.waitConnected(5_000)).toBe(true);
    const port = mqttSecurityLogBackend({ client: link.client, vehicleId: VIN, clock, log: silentLogger(), timeoutMs: 5_000 });

    const data = new MemoryStore();
    const log = await SecurityLog.open({ store: data, now: Date.now, log: silentLogger(), signer: key.signer }, { vehicleId: VIN, publicKeyPem: key.pem, checkpointEvery: 4 });
    for (let i = 0; i < 6; i++) await log.append('keys.refused', { code: 'TPM_POLICY_NOT_APPROVED', rc: '0x1c4', i });
    await log.checkpoint();
    // small messages: the upload spans several of them
    expect(await uploadSecurityLog(log, port, 600)).toEqual({ sent: log.head.seq + 1, through: log.head.seq });
    await log.append('attestation.answer', { challengeId: 'c1', nonce: 'ab'.repeat(16) });
    await log.checkpoint();
    expect(await uploadSecurityLog(log, port)).toEqual({ sent: 2, through: log.head.seq });
    expect(await readFile(join(dir, `security-logs/${VIN}.jsonl`), 'utf8')).toBe(log.text());
    const held = (await collector.head(VIN))!;
    expect(held).toMatchObject({ seq: log.head.seq, hash: log.head.hash, signedThrough: log.head.seq });

    // the vehicle's file cut back by three entries and extended anew: the backend's head is not in it any more
    await data.writeAtomic(SECURITY_LOG_PATH, parseEntries(log.text()).slice(0, -3).map(encodeEntry).join(''));
    const cut = await SecurityLog.open({ store: data, now: Date.now, log: silentLogger(), signer: key.signer }, { vehicleId: VIN, publicKeyPem: key.pem });
    for (let i = 0; i < 4; i++) await cut.append('pki.root-installed', { fingerprint: 'cd'.repeat(32), source: 'ota', i });
    await cut.checkpoint();
    await expect(uploadSecurityLog(cut, port)).rejects.toMatchObject({ code: 'LOG_CHAIN_BROKEN', details: { seq: held.seq } });
    // sent anyway (a vehicle that skips its own check): the backend names the first entry that does not chain
    const forged = await port.put(cut.entriesFrom(held.seq + 1).map(encodeEntry).join('')).then(() => undefined, (e: unknown) => e);
    expect(forged).toMatchObject({ code: 'LOG_UPLOAD_REFUSED', details: { cause: 'LOG_CHAIN_BROKEN', seq: held.seq + 1 } });
    expect(await collector.head(VIN)).toEqual(held);

    // another vehicle publishing a valid continuation into this vehicle's log topic: the ACL drops it, nothing stored
    const raw = connector.connect({ url: oemFx.broker.url, clientId: 'raw-veh-log-b', protocolVersion: 5, tls: await oemFx.vehicleTls('veh-log-b'), reconnectPeriodMs: 200 });
    raws.push(raw);
    await until(() => raw.status === 'connected');
    const valid = await log.append('ota.update-step', { job: 'j9', step: 'downloaded' });
    const text = encodeEntry(valid);
    await raw.publish(securityLogTopics(VIN).request, JSON.stringify({ v: 1, type: 'log.upload', requestId: 'r1', replyTo: securityLogTopics(VIN).response, entries: text }), { qos: 1 }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    expect(await collector.head(VIN)).toEqual(held);
    // the same entry from the vehicle itself is stored: the refusal above was the ACL's
    expect(await port.put(text)).toEqual({ head: { seq: held.seq + 1, hash: valid.hash } });
    port.close();
  });
});
