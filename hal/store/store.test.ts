import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FsStore } from './fs-store.ts';
import { MemoryStore } from './memory-store.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe.each([
  ['FsStore', async () => { const d = await mkdtemp(join(tmpdir(), 'evcc-store-')); dirs.push(d); return FsStore.open(join(d, 'data')); }],
  ['MemoryStore', async () => new MemoryStore()],
] as const)('%s', (_name, make) => {
  it('replaces content atomically and lists without temp files', async () => {
    const s = await make();
    await s.writeAtomic('pki/roots/a.pem', 'one');
    await s.writeAtomic('pki/roots/a.pem', 'two');
    expect(new TextDecoder().decode(await s.read('pki/roots/a.pem'))).toBe('two');
    expect(await s.list('pki/roots')).toEqual(['a.pem']);
    expect(await s.read('missing')).toBeUndefined();
    await s.remove('pki');
    expect(await s.exists('pki/roots/a.pem')).toBe(false);
  });
  it('refuses paths that escape the store', async () => {
    const s = await make();
    await expect(s.writeAtomic('../x', 'y')).rejects.toMatchObject({ code: 'IO_FAILED' });
  });
});

describe('FsStore on disk', () => {
  it('writes files 0600 and leaves no temp file behind', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-store-'));
    dirs.push(d);
    const s = await FsStore.open(d);
    await s.writeAtomic('k/v', new Uint8Array([1, 2, 3]));
    expect((await stat(join(d, 'k/v'))).mode & 0o777).toBe(0o600);
    expect(await readdir(join(d, 'k'))).toEqual(['v']);
  });
});

describe('FsStore refuses what is not a regular file', () => {
  it('a FIFO in the store is STORE_NOT_A_FILE at once, not a read that blocks forever', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-store-'));
    dirs.push(d);
    const s = await FsStore.open(d);
    execFileSync('mkfifo', [join(d, 'record.json')]);
    // Without a writer, a blocking open/read of the FIFO would never return: this await would hang the test.
    await expect(s.read('record.json')).rejects.toMatchObject({ code: 'STORE_NOT_A_FILE', details: { kind: 'FIFO' } });
  });

  it('a directory where a file is expected, and a store root that is a file', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-store-'));
    dirs.push(d);
    const s = await FsStore.open(d);
    await s.writeAtomic('pki/roots/a.pem', 'x');
    await expect(s.read('pki/roots')).rejects.toMatchObject({ code: 'STORE_NOT_A_FILE', details: { kind: 'directory' } });
    await writeFile(join(d, 'plain'), 'x');
    await expect(FsStore.open(join(d, 'plain'))).rejects.toMatchObject({ code: 'STORE_NOT_A_FILE' });
  });
});

describe('FsStore: temp files of killed writers', () => {
  it('open removes .tmp files whose writer is gone, keeps a live writer\'s, and an unowned one only when old', async () => {
    const d = await mkdtemp(join(tmpdir(), 'evcc-store-'));
    dirs.push(d);
    const dead = execFileSync('sh', ['-c', 'sh -c \'echo $$\'']).toString().trim(); // a pid that has exited
    const { mkdir, utimes } = await import('node:fs/promises');
    await mkdir(join(d, 'pki'), { recursive: true });
    await mkdir(join(d, 'keys', 'contract'), { recursive: true });
    const killed = join(d, 'pki', `.${dead}.0123456789ab.tmp`);
    const killedDeep = join(d, 'keys', 'contract', `.${dead}.ba9876543210.tmp`);
    const live = join(d, 'pki', `.${process.pid}.aaaaaaaaaaaa.tmp`);
    const legacyOld = join(d, 'pki', '.cccccccccccc.tmp');
    const legacyNew = join(d, 'pki', '.dddddddddddd.tmp');
    const other = join(d, 'pki', 'store.json');
    for (const f of [killed, killedDeep, live, legacyOld, legacyNew, other]) await writeFile(f, 'x');
    const old = new Date(Date.now() - 3_600_000);
    await utimes(legacyOld, old, old);
    await FsStore.open(d);
    const left = [...(await readdir(join(d, 'pki'))), ...(await readdir(join(d, 'keys', 'contract')))].sort();
    expect(left).toEqual([`.${process.pid}.aaaaaaaaaaaa.tmp`, '.dddddddddddd.tmp', 'store.json'].sort());
  });
});
