import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { RootCertificatePool } from '../../deploy/oem-backend/pool.ts';
import { KeyObjectSigner } from '../../deploy/oem-backend/signer.ts';
import { formatBenchLine } from '../../firmware/log/bench-format.ts';
import { createLogger, forSubsystem, type Logger } from '../../core/logger.ts';
import { derToPem } from '../../firmware/pki/cert.ts';
import { generateTestPki, type TestPki } from '../../firmware/pki/generate.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';
import { backendTrustFromPem, type BackendTrust } from '../../firmware/ota/signing.ts';
import type { FileStore } from '../../hal/store/types.ts';

/**
 * Shared set-up of the OTA tests: the ISO 15118-2 test PKI (firmware/pki's generator: V2G roots A and B), a
 * Root Certificate Pool directory holding both V2G roots, the OEM backend's answer key and the vehicle's trust in it,
 * a vehicle root store that knows only root A (Kilic 2023 Scenario 2), and a logger that records bench lines.
 */
export interface OtaFixture {
  pki: TestPki;
  poolDir: string;
  pool: RootCertificatePool;
  signer: KeyObjectSigner;
  trust: BackendTrust;
  /** PKCS#8 PEM of `signer` (for the `evcc oem-backend` child process). */
  signerKeyPem: string;
  /** A second key pair: "signed by another key". */
  otherSigner: KeyObjectSigner;
  cleanup(): Promise<void>;
}

export async function otaFixture(pki?: TestPki): Promise<OtaFixture> {
  const p = pki ?? (await generateTestPki());
  const poolDir = await mkdtemp(join(tmpdir(), 'evcc-rcp-'));
  await writeFile(join(poolDir, 'v2g-root-a.pem'), derToPem(p.a.root.der));
  await writeFile(join(poolDir, 'v2g-root-b.pem'), derToPem(p.b.root.der));
  const pool = await RootCertificatePool.load(poolDir);
  const newKeyPem = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const signerKeyPem = newKeyPem();
  const signer = KeyObjectSigner.fromPem(signerKeyPem);
  return {
    pki: p, poolDir, pool, signer, signerKeyPem, otherSigner: KeyObjectSigner.fromPem(newKeyPem()), trust: backendTrustFromPem(signer.publicKeyPem),
    cleanup: () => rm(poolDir, { recursive: true, force: true }),
  };
}

export const STORE_KEY = new Uint8Array(32).fill(7);

/** The vehicle's certificate store with the factory root(s). */
export async function vehicleStore(files: FileStore, roots: Uint8Array[], maxRoots?: number): Promise<CertificateStore> {
  const store = await CertificateStore.open(files, { integrity: new HmacIntegrity(STORE_KEY), ...(maxRoots ? { maxRoots } : {}) });
  for (const r of roots) await store.installRoot(r, { source: 'factory' });
  return store;
}

/** A logger whose bench-format lines are kept in `lines` (the bench log an engineer reads). */
export function recordingLogger(level: 'info' | 'debug' = 'info'): { root: Logger; lines: string[]; sub: (s: Parameters<typeof forSubsystem>[1]) => Logger } {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(formatBenchLine(JSON.parse(l) as Record<string, unknown>, false));
      done();
    },
  });
  const root = createLogger({ level, destination: dest });
  return { root, lines, sub: (s) => forSubsystem(root, s) };
}
