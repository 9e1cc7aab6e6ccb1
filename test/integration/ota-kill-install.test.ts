import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateTestPki, issue, type TestPki } from '../../firmware/pki/generate.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { STORE_KEY, vehicleStore } from './ota-fixtures.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';

/**
 * The process installing a fetched root is killed (SIGKILL) at random points: the persisted store must open
 * afterwards (no PKI_STORE_CORRUPT / PKI_STORE_TAMPERED) and hold the old or the new root set — exactly the roots
 * whose install had completed, plus at most the one in flight — never a torn or partial store.
 */
const TRIALS = 12;
const ROOTS = 12;
let pki: TestPki;
let dir: string;
let rootsJson: string;
let roots: Uint8Array[];

beforeAll(async () => {
  pki = await generateTestPki();
  dir = await mkdtemp(join(tmpdir(), 'evcc-killinstall-'));
  roots = [];
  for (let i = 0; i < ROOTS; i++) roots.push((await issue({ name: `r${i}`, role: 'v2g-root', subject: `CN=Kill Test Root ${i}, O=EVCC Test, C=DE, DC=V2G` })).der);
  rootsJson = join(dir, 'roots.json');
  await writeFile(rootsJson, JSON.stringify(roots.map((r) => Buffer.from(r).toString('base64'))));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('kill during root install (spawned child, SIGKILL at random points)', () => {
  it(`leaves the store old or new, never corrupt (${TRIALS} kills)`, async () => {
    /** Starts the installing child on a fresh store holding root A; resolves once it is about to install. */
    const startChild = async (dataDir: string) => {
      await vehicleStore(await FsStore.open(dataDir), [pki.a.root.der]);
      // node itself (tsx as an import hook, no wrapper process): SIGKILL must hit the process that writes the store.
      const child = spawn(process.execPath, ['--import', 'tsx', join(process.cwd(), 'test/integration/ota-install-child.ts'), dataDir, Buffer.from(STORE_KEY).toString('hex'), rootsJson], { stdio: ['ignore', 'pipe', 'pipe'] });
      const lines: string[] = [];
      child.stdout.on('data', (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean)));
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      await new Promise<void>((resolve, reject) => {
        const iv = setInterval(() => {
          if (lines.includes('READY')) {
            clearInterval(iv);
            resolve();
          }
        }, 1);
        child.once('exit', () => {
          clearInterval(iv);
          reject(new Error(`child exited before READY: ${lines.join(' ')}`));
        });
      });
      return { child, lines, exited };
    };
    const reopen = async (dataDir: string) => {
      // Exactly as the runtime opens it: integrity tag checked, every certificate parsed.
      const store = await CertificateStore.open(await FsStore.open(dataDir), { integrity: new HmacIntegrity(STORE_KEY), maxRoots: 64 });
      return store.listRoots().map((r) => Buffer.from(r.der).toString('base64'));
    };

    // Calibration: an unkilled run installs everything; its duration spreads the kill points over the sequence
    // whatever the machine's speed.
    const calib = await startChild(join(dir, 'calibration'));
    const t0 = Date.now();
    await calib.exited;
    const fullMs = Date.now() - t0;
    expect(calib.lines).toContain('DONE');
    expect(await reopen(join(dir, 'calibration'))).toHaveLength(ROOTS + 1);

    const outcomes: number[] = [];
    for (let t = 0; t < TRIALS; t++) {
      const dataDir = join(dir, `trial-${t}`);
      const { child, lines, exited } = await startChild(dataDir);
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * fullMs)));
      child.kill('SIGKILL');
      await exited;
      const done = lines.filter((l) => l.startsWith('INSTALLED')).length;
      const fingerprints = await reopen(dataDir);
      const installed = fingerprints.length - 1;
      // Old or new: root A, then a prefix of the sequence; everything reported as installed is there.
      expect(fingerprints[0]).toBe(Buffer.from(pki.a.root.der).toString('base64'));
      expect(fingerprints.slice(1)).toEqual(roots.slice(0, installed).map((r) => Buffer.from(r).toString('base64')));
      expect(installed).toBeGreaterThanOrEqual(done);
      expect(installed).toBeLessThanOrEqual(done + 1);
      // The only other files a kill can leave are unreferenced temp files of the atomic replace.
      expect((await readdir(join(dataDir, 'pki'))).filter((n) => n !== 'store.json' && n !== 'store.initialised' && !n.endsWith('.tmp'))).toEqual([]);
      outcomes.push(installed);
      if (process.env.EVCC_SHOW_KILL_POINTS) process.stderr.write(`kill after ${done} reported installs: store holds ${installed} (full run ${fullMs} ms)\n`);
    }
    // The kills landed at different points (not all before the first or after the last install).
    expect(new Set(outcomes).size).toBeGreaterThan(1);
  });
});
