import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { SESSION_HISTORY_PATH, SessionHistory, type SessionHistoryRecord } from './session-history.ts';

const record: SessionHistoryRecord = { startedAt: '2026-12-03T14:00:00.000Z', endedAt: '2026-12-03T14:30:00.000Z', ok: true, endCode: 'OK', emaid: 'DE8AAA1B2C3D4E5', evseId: 'DE*ABC*E1', energyWh: 12000 };
const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

function history(store: MemoryStore, key: Uint8Array | undefined, vehicleId = 'VIN-1', extra: { random?: (n: number) => Uint8Array; keep?: number } = {}): SessionHistory {
  return new SessionHistory({ store, key, unavailableReason: key ? undefined : 'KEYS_NOT_BOOTED', random: extra.random ?? random, log: silentLogger() }, { vehicleId, ...(extra.keep ? { keep: extra.keep } : {}) });
}

describe('encrypted session history', () => {
  const key = random(32);

  it('round trip; a fresh nonce per record; nothing in clear', async () => {
    const store = new MemoryStore();
    const h = history(store, key);
    await h.append(record);
    await h.append({ ...record, emaid: 'DE8AAA000000002' });
    expect((await h.read()).map((r) => [r.n, r.emaid])).toEqual([[0, 'DE8AAA1B2C3D4E5'], [1, 'DE8AAA000000002']]);
    const text = Buffer.from((await store.read(SESSION_HISTORY_PATH))!).toString('utf8');
    expect(text).not.toContain('DE8AAA');
    const nonces = text.trim().split('\n').map((l) => (JSON.parse(l) as { nonce: string }).nonce);
    expect(new Set(nonces).size).toBe(2);
  });

  it('an edited, swapped or foreign record does not authenticate and is named', async () => {
    const store = new MemoryStore();
    const h = history(store, key);
    for (let i = 0; i < 3; i++) await h.append({ ...record, energyWh: i });
    const lines = Buffer.from((await store.read(SESSION_HISTORY_PATH))!).toString('utf8').trim().split('\n');
    const flip = JSON.parse(lines[1]!) as { ct: string };
    const ct = Buffer.from(flip.ct, 'base64');
    ct[0] ^= 1;
    const edited = [...lines];
    edited[1] = JSON.stringify({ ...flip, ct: ct.toString('base64') });
    await store.writeAtomic(SESSION_HISTORY_PATH, `${edited.join('\n')}\n`);
    await expect(h.read()).rejects.toMatchObject({ code: 'HISTORY_RECORD_INVALID', details: { n: 1 } });
    // record 2's ciphertext under record 1's position: the additional data binds the position
    const moved = [...lines];
    moved[1] = JSON.stringify({ ...(JSON.parse(lines[2]!) as object), n: 1 });
    await store.writeAtomic(SESSION_HISTORY_PATH, `${moved.join('\n')}\n`);
    await expect(h.read()).rejects.toMatchObject({ code: 'HISTORY_RECORD_INVALID', details: { n: 1 } });
    await store.writeAtomic(SESSION_HISTORY_PATH, `${lines.join('\n')}\n`);
    await expect(history(store, key, 'VIN-2').read()).rejects.toMatchObject({ code: 'HISTORY_RECORD_INVALID', details: { n: 0 } });
    await expect(history(store, random(32)).read()).rejects.toMatchObject({ code: 'HISTORY_RECORD_INVALID' });
    await store.writeAtomic(SESSION_HISTORY_PATH, 'garbage\n');
    await expect(h.read()).rejects.toMatchObject({ code: 'HISTORY_RECORD_INVALID', details: { line: 1 } });
  });

  it('without the key (degraded) it can neither read nor write, and says why; keeps only the newest records', async () => {
    const store = new MemoryStore();
    await history(store, key).append(record);
    const degraded = history(store, undefined);
    expect(degraded.readable).toBe(false);
    await expect(degraded.read()).rejects.toMatchObject({ code: 'HISTORY_UNAVAILABLE', details: { reason: 'KEYS_NOT_BOOTED' } });
    await expect(degraded.append(record)).rejects.toMatchObject({ code: 'HISTORY_UNAVAILABLE' });
    const small = history(store, key, 'VIN-1', { keep: 2 });
    for (let i = 0; i < 3; i++) await small.append({ ...record, energyWh: i });
    expect((await small.read()).map((r) => r.n)).toEqual([2, 3]);
    await expect(history(store, key, 'VIN-1', { random: () => new Uint8Array(4) }).append(record)).rejects.toMatchObject({ code: 'HISTORY_UNAVAILABLE' });
  });
});
