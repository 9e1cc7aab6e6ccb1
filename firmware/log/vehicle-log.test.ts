import { generateKeyPairSync, randomBytes, sign as cryptoSign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { issue } from '../pki/generate.ts';
import { CertificateStore, HmacIntegrity } from '../pki/store.ts';
import { parseEntries, SECURITY_LOG_PATH, verifySecurityLog } from './security-log.ts';
import { historyRecordOf, openVehicleHistory, openVehicleSecurityLog, recordBootCheck, type LogKeys } from './vehicle-log.ts';

describe('the runtime composition of the security log', () => {
  it('boot check results, root installs and removals land in the log; a start checkpoint signs them', async () => {
    const data = new MemoryStore();
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const messages: Buffer[] = [];
    const { createHash } = await import('node:crypto');
    const keys: LogKeys = {
      provisioning: { logKey: { publicKeyPem }, storageKey: { name: `000b${'ab'.repeat(32)}` } },
      signWithLogKey: async (digest) => {
        const m = messages.find((x) => createHash('sha256').update(x).digest().equals(Buffer.from(digest)));
        if (!m) throw new EvccError('KEYS_DIGEST_INVALID', 'not a checkpoint digest');
        return new Uint8Array(cryptoSign('sha256', m, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
      },
    };
    // capture the messages the log hands to its signer (through the checkpoint message format)
    const { checkpointMessage } = await import('./security-log.ts');
    const log = await openVehicleSecurityLog({ data, keys, now: () => Date.UTC(2026, 11, 3), log: silentLogger() });
    await recordBootCheck(log, { version: 1, bundleSha256: 'aa'.repeat(32), rootfsSha256: 'bb'.repeat(32), pcrValue: 'cc'.repeat(32), counter: '1' });
    await recordBootCheck(log, { error: new EvccError('BOOT_ROOTFS_MISMATCH', 'rootfs is not the signed image') });
    const store = await CertificateStore.open(data, { integrity: new HmacIntegrity(new Uint8Array(randomBytes(32))), events: log });
    const root = await issue({ name: 'v2g-root-x', role: 'v2g-root', subject: 'CN=V2G Root X, O=Test' });
    const entry = await store.installRoot(root.der, { source: 'ota' });
    expect(await store.removeRoot(entry.fingerprint)).toBe(true);
    messages.push(Buffer.from(checkpointMessage(log.head.seq + 1, log.head.hash)));
    const cp = await log.checkpoint();
    expect(cp.detail).toHaveProperty('sig');

    const text = Buffer.from((await data.read(SECURITY_LOG_PATH))!).toString('utf8');
    expect(verifySecurityLog(text, publicKeyPem)).toMatchObject({ entries: 6, signedCheckpoints: 1, signedThrough: 5 });
    const entries = parseEntries(text);
    expect(entries.map((e) => e.kind)).toEqual(['log.genesis', 'boot.check', 'boot.check', 'pki.root-installed', 'pki.root-removed', 'log.checkpoint']);
    expect(entries[0]!.detail).toMatchObject({ vehicleId: `tpm:000b${'ab'.repeat(32)}` });
    expect(entries[1]!.detail).toMatchObject({ ok: true, version: 1, pcr14: 'cc'.repeat(32) });
    expect(entries[2]!.detail).toMatchObject({ ok: false, code: 'BOOT_ROOTFS_MISMATCH' });
    expect(entries[3]!.detail).toMatchObject({ fingerprint: entry.fingerprint, source: 'ota', persisted: true });
  });

  it('history: a record from the session report; without a key the history says it is unavailable and the log records it', async () => {
    const data = new MemoryStore();
    const log = await openVehicleSecurityLog({ data, now: () => Date.UTC(2026, 11, 3), log: silentLogger() });
    const report = { ok: true, endReason: { code: 'SESSION_COMPLETED' }, protocol: 'iso2', payment: 'Contract', energyWh: 20000, soc: { start: 20, end: 80 }, secc: { address: 'fe80::2' } };
    const rec = historyRecordOf(report, { startedAt: 'a', endedAt: 'b', emaid: 'DE8AAA1' });
    expect(rec).toEqual({ startedAt: 'a', endedAt: 'b', ok: true, endCode: 'SESSION_COMPLETED', protocol: 'iso2', payment: 'Contract', emaid: 'DE8AAA1', charger: 'fe80::2', energyWh: 20000, soc: { start: 20, end: 80 } });
    const random = (n: number) => new Uint8Array(randomBytes(n));
    const full = openVehicleHistory({ data, historyKey: new Uint8Array(randomBytes(32)), random, log: silentLogger(), events: log }, 'VIN');
    await full.append(rec);
    const degraded = openVehicleHistory({ data, historyKey: undefined, unavailableReason: 'KEYS_NOT_BOOTED', random, log: silentLogger(), events: log }, 'VIN');
    await expect(degraded.read()).rejects.toMatchObject({ code: 'HISTORY_UNAVAILABLE' });
    await new Promise((r) => setTimeout(r, 10));
    expect(log.entriesFrom(0).map((e) => e.kind)).toContain('history.unreadable');
    expect(log.entriesFrom(0).find((e) => e.kind === 'history.unreadable')!.detail).toEqual({ reason: 'KEYS_NOT_BOOTED' });
  });
});
