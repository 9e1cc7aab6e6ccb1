import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { SecurityLog, encodeEntry, logKeyId, parseEntries, SECURITY_LOG_PATH, type CheckpointSigner } from '../../firmware/log/security-log.ts';
import { uploadSecurityLog, type SecurityLogBackend } from '../../firmware/log/upload.ts';
import { SecurityLogCollector } from './security-log.ts';

function signer(): { signer: CheckpointSigner; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  return { pem, signer: { keyId: logKeyId(pem), sign: async (m) => new Uint8Array(cryptoSign('sha256', m, { key: privateKey, dsaEncoding: 'ieee-p1363' })) } };
}
const VIN = 'VIN-LOG-0002';
const backendOf = (c: SecurityLogCollector, vehicleId = VIN): SecurityLogBackend => ({
  head: async () => c.head(vehicleId),
  put: async (text) => c.accept(vehicleId, text),
});

describe('OEM backend: security-log uploads', () => {
  it('stores verified continuations only; a cut or rewritten vehicle log can no longer extend the stored head', async () => {
    const key = signer();
    const vehicle = new MemoryStore();
    let t = Date.UTC(2026, 11, 3, 14);
    const now = () => (t += 1000);
    const log = await SecurityLog.open({ store: vehicle, now, log: silentLogger(), signer: key.signer }, { vehicleId: VIN, publicKeyPem: key.pem, checkpointEvery: 3 });
    for (let i = 0; i < 4; i++) await log.append('keys.refused', { code: 'TPM_POLICY_NOT_APPROVED', i });
    const backendStore = new MemoryStore();
    const collector = new SecurityLogCollector({ store: backendStore, log: silentLogger() });
    await expect(uploadSecurityLog(log, backendOf(collector))).rejects.toMatchObject({ code: 'LOG_VEHICLE_UNKNOWN' });
    await collector.registerVehicle(VIN, key.pem);

    expect(await uploadSecurityLog(log, backendOf(collector))).toEqual({ sent: log.head.seq + 1, through: log.head.seq });
    expect(await uploadSecurityLog(log, backendOf(collector))).toEqual({ sent: 0, through: log.head.seq });
    await log.append('ota.update-step', { job: 'j1', step: 'install', ok: true });
    await log.checkpoint();
    const second = await uploadSecurityLog(log, backendOf(collector));
    expect(second.sent).toBe(2);
    const head = (await collector.head(VIN))!;
    expect(head).toMatchObject({ seq: log.head.seq, hash: log.head.hash, signedThrough: log.head.seq });
    expect(Buffer.from((await backendStore.read(`security-logs/${VIN}.jsonl`))!).toString('utf8')).toBe(log.text());

    // The vehicle's file cut back by two entries and extended anew: its next upload is refused, nothing stored
    const cut = parseEntries(log.text()).slice(0, -2);
    await vehicle.writeAtomic(SECURITY_LOG_PATH, cut.map(encodeEntry).join(''));
    const reopened = await SecurityLog.open({ store: vehicle, now, log: silentLogger(), signer: key.signer }, { vehicleId: VIN, publicKeyPem: key.pem });
    await reopened.append('pki.root-installed', { fingerprint: 'ee'.repeat(32), source: 'ota' });
    await reopened.checkpoint();
    await expect(uploadSecurityLog(reopened, backendOf(collector))).rejects.toMatchObject({ code: 'LOG_CHAIN_BROKEN', details: { seq: head.seq } });
    // sent directly, bypassing the vehicle's own check: the collector refuses the continuation the same way
    const forged = reopened.entriesFrom(reopened.head.seq - 1).map(encodeEntry).join('');
    await expect(collector.accept(VIN, forged)).rejects.toMatchObject({ code: 'LOG_SEQ_OUT_OF_ORDER' });
    const tail = reopened.entriesFrom(head.seq + 1).map(encodeEntry).join('');
    if (tail) await expect(collector.accept(VIN, tail)).rejects.toMatchObject({ code: 'LOG_CHAIN_BROKEN' });
    expect(await collector.head(VIN)).toEqual(head);

    // another vehicle's key does not verify this vehicle's log
    await collector.registerVehicle('VIN-OTHER', signer().pem);
    await expect(collector.accept('VIN-OTHER', log.text())).rejects.toMatchObject({ code: 'LOG_CHECKPOINT_INVALID' });
    expect(await collector.head('VIN-OTHER')).toBeUndefined();
  });
});
