import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { silentLogger } from '../../core/logger.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import {
  SECURITY_LOG_PATH, SecurityLog, encodeEntry, entryHash, logKeyId, parseEntries, verifySecurityLog, type CheckpointSigner, type SecurityLogEntry,
} from './security-log.ts';

/** A software stand-in for the TPM log key: the same raw r‖s over a 32-byte digest the KeyService returns. */
function softwareSigner(): { signer: CheckpointSigner; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const signer: CheckpointSigner = {
    keyId: logKeyId(publicKeyPem),
    sign: async (message) => new Uint8Array(cryptoSign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' })),
  };
  return { signer, publicKeyPem };
}

function clock(start = Date.UTC(2026, 11, 3, 14, 0, 0)): () => number {
  let t = start;
  return () => (t += 1000);
}

async function writtenLog(n: number, o: { every?: number; signer?: CheckpointSigner; publicKeyPem?: string; vehicleId?: string } = {}): Promise<{ text: string; store: MemoryStore; log: SecurityLog }> {
  const store = new MemoryStore();
  const log = await SecurityLog.open({ store, now: clock(), log: silentLogger(), ...(o.signer ? { signer: o.signer } : {}) },
    { vehicleId: o.vehicleId ?? 'VIN-TEST-0001', checkpointEvery: o.every ?? 4, ...(o.publicKeyPem ? { publicKeyPem: o.publicKeyPem } : {}) });
  for (let i = 0; i < n; i++) await log.append('keys.refused', { code: 'TPM_POLICY_NOT_APPROVED', rc: '0x1c4', i });
  await log.checkpoint();
  return { text: Buffer.from((await store.read(SECURITY_LOG_PATH))!).toString('utf8'), store, log };
}

function refusal(fn: () => unknown): EvccError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(EvccError);
    return err as EvccError;
  }
  throw new Error('expected a refusal');
}

const lines = (text: string): string[] => text.split('\n').slice(0, -1);
const join = (ls: string[]): string => ls.map((l) => `${l}\n`).join('');

describe('security log: chain and checkpoints', () => {
  const key = softwareSigner();

  it('an intact log verifies with the public key alone; checkpoints cover everything before them', async () => {
    const { text, log } = await writtenLog(10, key);
    const r = verifySecurityLog(text, key.publicKeyPem);
    // genesis + 10 events + a checkpoint after every 4 (3 of them: after events 3, 7 … counted with the genesis) + explicit
    expect(r.entries).toBe(log.head.seq + 1);
    expect(r.signedCheckpoints).toBeGreaterThanOrEqual(3);
    expect(r.unsignedCheckpoints).toEqual([]);
    expect(r.signedThrough).toBe(log.head.seq);
    expect(r.unsignedTail).toBe(0);
    expect(r.head).toBe(log.head.hash);
    const entries = parseEntries(text);
    expect(entries[0]!.kind).toBe('log.genesis');
    expect(entries[0]!.detail).toMatchObject({ vehicleId: 'VIN-TEST-0001', logKey: key.signer.keyId });
    expect(entries.every((e, i) => e.seq === i && e.hash === entryHash(e))).toBe(true);
  });

  it('an edited entry is named (its seq, LOG_ENTRY_ALTERED)', async () => {
    const { text } = await writtenLog(6, key);
    const ls = lines(text);
    ls[3] = ls[3]!.replace('"i":2', '"i":9');
    const e = refusal(() => verifySecurityLog(join(ls), key.publicKeyPem));
    expect(e.code).toBe('LOG_ENTRY_ALTERED');
    expect(e.details).toMatchObject({ seq: 3, line: 4 });
  });

  it('an edited entry with every hash after it recomputed is caught by the next checkpoint signature', async () => {
    const { text } = await writtenLog(6, key);
    const entries = parseEntries(text);
    entries[2]!.detail = { code: 'NOTHING_HAPPENED' };
    let prev = entries[1]!.hash;
    for (const e of entries.slice(2)) {
      e.prev = prev;
      e.hash = entryHash(e);
      prev = e.hash;
    }
    const e = refusal(() => verifySecurityLog(entries.map(encodeEntry).join(''), key.publicKeyPem));
    expect(e.code).toBe('LOG_CHECKPOINT_INVALID');
    const firstCheckpoint = entries.find((x) => x.kind === 'log.checkpoint')!.seq;
    expect(e.details).toMatchObject({ seq: firstCheckpoint, since: 0 });
  });

  it('a truncated log (a line cut short) is named LOG_TRUNCATED at the seq it should have had', async () => {
    const { text } = await writtenLog(5, key);
    const cut = text.slice(0, text.length - 20);
    const e = refusal(() => verifySecurityLog(cut, key.publicKeyPem));
    expect(e.code).toBe('LOG_TRUNCATED');
    expect(e.details.seq).toBe(lines(text).length - 1);
    expect(refusal(() => verifySecurityLog('', key.publicKeyPem)).code).toBe('LOG_TRUNCATED');
  });

  it('a reordered or removed entry is named (LOG_SEQ_OUT_OF_ORDER), a foreign one inserted (LOG_CHAIN_BROKEN)', async () => {
    const { text } = await writtenLog(6, key);
    const ls = lines(text);
    const swapped = [...ls];
    [swapped[2], swapped[3]] = [swapped[3]!, swapped[2]!];
    const e1 = refusal(() => verifySecurityLog(join(swapped), key.publicKeyPem));
    expect(e1.code).toBe('LOG_SEQ_OUT_OF_ORDER');
    expect(e1.details).toMatchObject({ seq: 2, found: 3, line: 3 });
    const removed = ls.filter((_, i) => i !== 4);
    const e2 = refusal(() => verifySecurityLog(join(removed), key.publicKeyPem));
    expect(e2.code).toBe('LOG_SEQ_OUT_OF_ORDER');
    expect(e2.details).toMatchObject({ seq: 4, found: 5 });
    // an entry of another vehicle's log at the same seq: hash right, chain wrong
    const other = lines((await writtenLog(6, { ...key, vehicleId: 'VIN-OTHER' })).text);
    const spliced = [...ls];
    spliced[3] = other[3]!;
    const e3 = refusal(() => verifySecurityLog(join(spliced), key.publicKeyPem));
    expect(e3.code).toBe('LOG_CHAIN_BROKEN');
    expect(e3.details.seq).toBe(3);
  });

  it('a checkpoint signed by another key, or with a forged signature, is LOG_CHECKPOINT_INVALID', async () => {
    const other = softwareSigner();
    const { text } = await writtenLog(3, other);
    const e = refusal(() => verifySecurityLog(text, key.publicKeyPem));
    expect(e.code).toBe('LOG_CHECKPOINT_INVALID');
    expect(e.message).toContain('another key');
    // the right key id, a signature of another key: the signature check refuses
    const entries = parseEntries(text);
    for (const x of entries) {
      if (x.kind === 'log.checkpoint') x.detail = { ...x.detail, key: key.signer.keyId };
      x.hash = entryHash(x);
    }
    let prev = '0'.repeat(64);
    for (const x of entries) {
      x.prev = prev;
      x.hash = entryHash(x);
      prev = x.hash;
    }
    const e2 = refusal(() => verifySecurityLog(entries.map(encodeEntry).join(''), key.publicKeyPem));
    expect(e2.code).toBe('LOG_CHECKPOINT_INVALID');
    expect(e2.message).toContain('does not verify');
  });

  it('without a working log key (degraded) entries still chain and the unsigned checkpoints say why', async () => {
    const refusing: CheckpointSigner = {
      keyId: key.signer.keyId,
      sign: async () => {
        throw new EvccError('TPM_POLICY_NOT_APPROVED', 'the TPM refused: state not approved', { rc: '0x1c4' });
      },
    };
    const { text } = await writtenLog(5, { signer: refusing });
    const r = verifySecurityLog(text, key.publicKeyPem);
    expect(r.signedCheckpoints).toBe(0);
    expect(r.unsignedCheckpoints.length).toBeGreaterThanOrEqual(2);
    expect(r.unsignedCheckpoints.every((c) => c.reason === 'TPM_POLICY_NOT_APPROVED')).toBe(true);
    expect(r.signedThrough).toBe(-1);
    expect(r.unsignedTail).toBe(r.entries);
    const cps = parseEntries(text).filter((e) => e.kind === 'log.checkpoint');
    expect(cps[0]!.detail).toMatchObject({ unsigned: 'TPM_POLICY_NOT_APPROVED', rc: '0x1c4' });
  });

  it('reopening continues the chain; a log that does not verify is kept aside and a new one records why', async () => {
    const { store } = await writtenLog(3, key);
    const again = await SecurityLog.open({ store, now: clock(), log: silentLogger(), signer: key.signer }, { vehicleId: 'VIN-TEST-0001', publicKeyPem: key.publicKeyPem });
    await again.append('pki.root-installed', { fingerprint: 'ab'.repeat(32), source: 'ota' });
    await again.checkpoint();
    const text = Buffer.from((await store.read(SECURITY_LOG_PATH))!).toString('utf8');
    expect(verifySecurityLog(text, key.publicKeyPem).entries).toBe(again.head.seq + 1);
    expect(parseEntries(text).filter((e) => e.kind === 'log.genesis')).toHaveLength(1);

    const ls = lines(text);
    ls[1] = ls[1]!.replace('"i":0', '"i":7');
    await store.writeAtomic(SECURITY_LOG_PATH, join(ls));
    const fresh = await SecurityLog.open({ store, now: clock(), log: silentLogger(), signer: key.signer }, { vehicleId: 'VIN-TEST-0001', publicKeyPem: key.publicKeyPem });
    expect(fresh.head.seq).toBe(0);
    const genesis = fresh.entriesFrom(0)[0]!;
    expect(genesis.detail).toMatchObject({ rejected: { code: 'LOG_ENTRY_ALTERED' } });
    const keptAs = (genesis.detail.rejected as { keptAs: string }).keptAs;
    expect(Buffer.from((await store.read(keptAs))!).toString('utf8')).toBe(join(ls));
  });

  it('a continuation verifies against the head it extends, and only against it', async () => {
    const { log } = await writtenLog(8, key);
    const head = log.entriesFrom(0)[4]!;
    const tail = log.entriesFrom(5).map(encodeEntry).join('');
    expect(verifySecurityLog(tail, key.publicKeyPem, { seq: 5, head: head.hash }).entries).toBe(log.head.seq - 4);
    const e = refusal(() => verifySecurityLog(tail, key.publicKeyPem, { seq: 5, head: log.entriesFrom(0)[3]!.hash }));
    expect(e.code).toBe('LOG_CHAIN_BROKEN');
    expect(e.details.seq).toBe(5);
  });

  it('property: any single-byte edit, any line swap or removal of an intact log is refused at or before the edited entry', async () => {
    const { text } = await writtenLog(12, { ...key, every: 3 });
    const ls = lines(text);
    const lineOfOffset = (off: number): number => text.slice(0, off).split('\n').length - 1;
    fc.assert(fc.property(fc.nat(text.length - 1), fc.integer({ min: 1, max: 126 }), (off, delta) => {
      const ch = text.charCodeAt(off);
      const next = String.fromCharCode(((ch + delta) % 127) || 1);
      const mutated = text.slice(0, off) + next + text.slice(off + 1);
      if (mutated === text) return;
      let err: unknown;
      try {
        verifySecurityLog(mutated, key.publicKeyPem);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EvccError);
      // the first bad entry named is the one edited, or (a changed line end joins or splits lines) the one before
      expect((err as EvccError).details.seq as number).toBeLessThanOrEqual(lineOfOffset(off) + 1);
    }), { numRuns: 400 });
    fc.assert(fc.property(fc.nat(ls.length - 1), fc.nat(ls.length - 1), fc.boolean(), (a, b, remove) => {
      if (!remove && a === b) return;
      const m = [...ls];
      if (remove) m.splice(a, 1);
      else [m[a], m[b]] = [m[b]!, m[a]!];
      if (remove && a === ls.length - 1) {
        // removing the last line leaves a shorter valid log: only a later head (the backend's) shows it
        expect(verifySecurityLog(join(m), key.publicKeyPem).entries).toBe(ls.length - 1);
        return;
      }
      const e = refusal(() => verifySecurityLog(join(m), key.publicKeyPem));
      expect(e.details.seq).toBe(Math.min(a, remove ? a : b));
    }), { numRuns: 200 });
  });

  it('details must be exact JSON: a non-finite number is refused before anything is written', async () => {
    const store = new MemoryStore();
    const log = await SecurityLog.open({ store, now: clock(), log: silentLogger() }, { vehicleId: 'V' });
    await expect(log.append('ota.update-step', { progress: Number.NaN })).rejects.toMatchObject({ code: 'LOG_DETAIL_INVALID' });
    expect(log.head.seq).toBe(0);
    expect(await log.record('ota.update-step', { progress: Number.POSITIVE_INFINITY })).toBeUndefined();
    const entries: SecurityLogEntry[] = parseEntries(Buffer.from((await store.read(SECURITY_LOG_PATH))!).toString('utf8'));
    expect(entries).toHaveLength(1);
  });
});
