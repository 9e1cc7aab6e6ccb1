import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger, silentLogger } from '../../core/logger.ts';
import type { SecurityLogCollector } from '../../deploy/oem-backend/security-log.ts';
import { SecurityLog, logKeyId, verifySecurityLog, type CheckpointSigner } from '../../firmware/log/security-log.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttLinkStatus } from '../../hal/mqtt/types.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { startVehicleSecurityLogUploads } from '../../bin/vehicle-security-log.ts';
import { startOemBackendFixture, type OemBackendFixture } from '../support/oem-backend-fixture.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';

/**
 * The running vehicle's security-log uploads (bin/vehicle-security-log.ts: the schedule of
 * firmware/log/upload-schedule.ts over the OEM link) against a real Debian mosquitto (mutual TLS, per-vehicle ACL)
 * and the OEM backend service storing into a directory: what was logged before the link came up arrives once it
 * does, a later checkpoint arrives without a reconnect, after a broker restart and a silent backend the uploads go
 * on from the backend's head, and the backend's copy is the vehicle's log byte for byte (nothing sent twice), a log
 * that verifies with the vehicle's log key. A software P-256 key stands in for the TPM log key.
 */
const connector = new MqttJsConnector();
const clock = new SystemClock();
const VIN = 'veh-log-run';
let oemFx: OemBackendFixture;
let collector: SecurityLogCollector;
let dir: string;
let link: OtaLink | undefined;
let stopUploads: (() => Promise<void>) | undefined;
let securityLog: SecurityLog;
const key = softwareLogKey();
const lines: Record<string, unknown>[] = [];
const statuses: MqttLinkStatus[] = [];
const uploaded = () => lines.filter((l) => l.cp === 'LOG-UPLOADED');
const connects = () => statuses.filter((s) => s === 'connected').length;

function softwareLogKey(): { signer: CheckpointSigner; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  return { pem, signer: { keyId: logKeyId(pem), sign: async (m) => new Uint8Array(cryptoSign('sha256', m, { key: privateKey, dsaEncoding: 'ieee-p1363' })) } };
}

/** The backend's copy: verified with the vehicle's key, and equal to the vehicle's own file. */
async function expectBackendHoldsAll(): Promise<void> {
  await until(() => held?.seq === securityLog.head.seq, 10_000, 'the backend to hold the vehicle\'s head');
  const stored = await readFile(join(dir, `security-logs/${VIN}.jsonl`), 'utf8');
  expect(stored).toBe(securityLog.text());
  const proved = verifySecurityLog(stored, key.pem);
  expect(proved).toMatchObject({ entries: securityLog.head.seq + 1, head: securityLog.head.hash });
  expect(held).toMatchObject({ seq: securityLog.head.seq, hash: securityLog.head.hash });
}
let held: { seq: number; hash: string } | undefined;
let polling: NodeJS.Timeout | undefined;

describeWith([tool('mosquitto')])('security-log uploads of the running vehicle over mosquitto', () => {
  beforeAll(async () => {
    oemFx = await startOemBackendFixture({ securityLogs: true, clientId: 'oem-backend-seclog-run' });
    ({ collector, dir } = oemFx.securityLogs!);
    await collector.registerVehicle(VIN, key.pem);
    // The backend's head as the vehicle side would ask for it, read straight from its store.
    polling = setInterval(() => void collector.head(VIN).then((h) => (held = h), () => undefined), 50);
  });
  afterAll(async () => {
    if (polling) clearInterval(polling);
    await stopUploads?.().catch(() => undefined);
    await link?.close().catch(() => undefined);
    await oemFx?.close();
  });

  it('entries recorded before the link is up arrive once it connects (an unsigned, degraded checkpoint among them)', async () => {
    // Degraded at first (no log key in this state): the checkpoint carries the reason, and must reach the backend too.
    securityLog = await SecurityLog.open({ store: new MemoryStore(), now: Date.now, log: silentLogger() }, { vehicleId: VIN, publicKeyPem: key.pem, checkpointEvery: 100 });
    securityLog.useSigner(undefined, { code: 'TPM_POLICY_NOT_APPROVED', message: 'state not approved by the OEM' });
    await securityLog.append('keys.refused', { code: 'TPM_POLICY_NOT_APPROVED', rc: '0x99d' });
    await securityLog.checkpoint();
    securityLog.useSigner(key.signer);
    await securityLog.append('boot.check', { release: 3, result: 'ok' });
    await securityLog.checkpoint();

    const log = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
    // Slow reconnects: after the broker restart below the backend (1 s) is back before the vehicle's next attempt.
    link = new OtaLink({ connector, url: oemFx.broker.url, vehicleId: VIN, protocolVersion: 5, tls: await oemFx.vehicleTls(VIN), clock, log: silentLogger(), reconnectPeriodMs: 3_000 });
    link.client.onStatus((s) => void statuses.push(s));
    expect(link.status).not.toBe('connected');
    stopUploads = startVehicleSecurityLogUploads({ link, vehicleId: VIN, securityLog, clock, log, timeoutMs: 2_000, watchMs: 100, intervalMs: 10 * 60_000 });
    await expectBackendHoldsAll();
    expect(connects()).toBe(1);
    expect(uploaded()).toMatchObject([{ reason: 'connect', sent: 5, through: 4 }]);
    expect((await collector.head(VIN))!.unsignedCheckpoints).toEqual([{ seq: 2, reason: 'TPM_POLICY_NOT_APPROVED' }]);
  });

  it('an entry and a checkpoint recorded later arrive without a new connect', async () => {
    await securityLog.append('attestation.answer', { challengeId: 'c1', nonce: 'ab'.repeat(16) });
    await new Promise((r) => setTimeout(r, 400));
    expect(held?.seq).toBe(4); // a plain entry waits for the next checkpoint (or interval)
    await securityLog.checkpoint();
    await expectBackendHoldsAll();
    expect(connects()).toBe(1);
    expect(uploaded().at(-1)).toMatchObject({ reason: 'checkpoint', sent: 2, through: 6 });
  });

  it('after a broker restart the reconnect uploads what was logged meanwhile, from the backend\'s head', async () => {
    await oemFx.broker.kill();
    await until(() => link!.status !== 'connected', 5_000, 'the link to notice the broker is gone');
    await securityLog.append('ota.update-step', { job: 'j1', step: 'downloaded' });
    await securityLog.checkpoint();
    // Restart right after a failed attempt of the vehicle: its next one (3 s later) finds the backend subscribed again.
    const attempts = statuses.filter((s) => s === 'connecting').length;
    await until(() => statuses.filter((s) => s === 'connecting').length > attempts && link!.status !== 'connecting', 8_000, 'a failed reconnect attempt');
    await oemFx.broker.start();
    await expectBackendHoldsAll();
    expect(connects()).toBe(2);
    expect(uploaded().at(-1)).toMatchObject({ reason: 'connect', sent: 2, through: 8 });
    expect(lines.filter((l) => l.cp === 'LOG-UPLOAD-FAILED')).toEqual([]);
  });

  it('a silent backend is one warning with its code; the next checkpoint after it is back resumes from its head', async () => {
    await oemFx.backend.stop();
    await securityLog.append('pki.root-installed', { fingerprint: 'cd'.repeat(32), source: 'ota' });
    await securityLog.checkpoint();
    await until(() => lines.some((l) => l.cp === 'LOG-UPLOAD-FAILED'), 8_000, 'the failed upload');
    await securityLog.append('pki.root-removed', { fingerprint: 'ef'.repeat(32) });
    await securityLog.checkpoint();
    await until(() => lines.filter((l) => l.level === 'debug' && String(l.msg).includes('failed again')).length === 1, 8_000, 'the second failure');
    expect(lines.filter((l) => l.cp === 'LOG-UPLOAD-FAILED')).toMatchObject([{ level: 'warn', code: 'OTA_BACKEND_SILENT', reason: 'checkpoint' }]);
    expect(held?.seq).toBe(8);

    await oemFx.restartBackend();
    await securityLog.checkpoint();
    await expectBackendHoldsAll();
    expect(lines.filter((l) => l.cp === 'LOG-UPLOAD-RESUMED')).toMatchObject([{ failedTries: 2, sent: 5, through: 13 }]);
    expect(connects()).toBe(2);
  });
});
