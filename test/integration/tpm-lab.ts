import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { silentLogger } from '../../core/logger.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { Swtpm, type RebootKind } from '../../hal/tpm/swtpm.ts';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { buildBundle } from '../../deploy/bundle/build.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { measuredBoot } from '../../boot/measured-boot.ts';
import { provisionTpm, type ProvisionResult } from '../../firmware/keys/provision.ts';

/**
 * A vehicle on the bench for TPM tests: its own swtpm on free ports with an absolute state dir, a data dir and a
 * run dir (tmpfs semantics: emptied by every reboot), OEM key material made with openssl/node in a temp dir,
 * and the product's CLI. Several test files run their labs in parallel.
 */
const REPO = join(import.meta.dirname, '..', '..');

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class TpmLab {
  private readonly drivers: Tpm2Tools[] = [];
  private constructor(readonly base: string, readonly swtpm: Swtpm) {}

  get tcti(): string {
    return this.swtpm.tcti;
  }
  get dataDir(): string {
    return join(this.base, 'data');
  }
  get runDir(): string {
    return join(this.base, 'run');
  }
  /** OEM backend material (never on the vehicle). */
  get oemDir(): string {
    return join(this.base, 'oem');
  }
  get oemPolicyKey(): string {
    return join(this.oemDir, 'oem-policy.key.pem');
  }
  get oemPolicyPub(): string {
    return join(this.oemDir, 'oem-policy.pub.pem');
  }
  get bundleCert(): string {
    return join(this.oemDir, 'bundle.cert.pem');
  }
  get bundleKey(): string {
    return join(this.oemDir, 'bundle.key.pem');
  }
  get exportDir(): string {
    return join(this.base, 'export');
  }

  static async create(): Promise<TpmLab> {
    const base = await mkdtemp(join(tmpdir(), 'evcc-tpm-lab-'));
    const swtpm = await Swtpm.start({ stateDir: join(base, 'swtpm-state'), logFile: join(base, 'swtpm.log') });
    const lab = new TpmLab(base, swtpm);
    await mkdir(lab.oemDir, { recursive: true });
    await mkdir(lab.runDir, { recursive: true, mode: 0o700 });
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(lab.oemPolicyKey, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    await writeFile(lab.oemPolicyPub, publicKey.export({ type: 'spki', format: 'pem' }) as string);
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', lab.bundleKey,
      '-out', lab.bundleCert, '-subj', '/CN=EVCC OEM bundle signing', '-days', '365']);
    return lab;
  }

  /** A fresh product driver (as a new process would have); closed with the lab. */
  async driver(runDir = this.runDir): Promise<Tpm2Tools> {
    const d = await Tpm2Tools.open({ tcti: this.tcti, runDir });
    this.drivers.push(d);
    return d;
  }

  /** Dependencies of the key service / boot as a composition root wires them (silent log). */
  async deps(): Promise<{ tpm: Tpm2Tools; data: FsStore; run: FsStore; log: ReturnType<typeof silentLogger> }> {
    return { tpm: await this.driver(), data: await FsStore.open(this.dataDir), run: await FsStore.open(this.runDir), log: silentLogger() };
  }

  /** Runs the product CLI (`evcc …`) as its own process, like the factory/boot scripts do. */
  async cli(args: string[], opts: { tpm?: boolean } = {}): Promise<CliResult> {
    const tpmArgs = opts.tpm ? ['--tcti', this.tcti, '--data-dir', this.dataDir, '--run-dir', this.runDir] : [];
    const r = await execa(process.execPath, ['--import', 'tsx', join(REPO, 'bin', 'evcc.ts'), '--log-level', 'warn', ...args, ...tpmArgs],
      { cwd: REPO, reject: false, stdin: 'ignore', env: { NODE_OPTIONS: '' } });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  async cliOk(args: string[], opts: { tpm?: boolean } = {}): Promise<unknown> {
    const r = await this.cli(args, opts);
    if (r.exitCode !== 0) throw new Error(`evcc ${args.join(' ')} failed (${r.exitCode}):\n${r.stderr}`);
    return r.stdout.trim() ? (JSON.parse(r.stdout) as unknown) : undefined;
  }

  /** An OEM-signed RAUC bundle of `version` with random payload. */
  async bundle(version: number, name = `v${version}`): Promise<string> {
    const img = join(this.oemDir, `${name}-rootfs.img`);
    await writeFile(img, randomBytes(64 * 1024));
    const out = join(this.oemDir, `${name}.raucb`);
    await buildBundle({ images: { rootfs: img }, version, compatible: 'evcc-bench', cert: this.bundleCert, key: this.bundleKey, out });
    return out;
  }

  /**
   * Factory provisioning, OEM release v1 (bundle + signed state policy), measured boot and the first-boot
   * completion (provisioning again creates the OEM provisioning key and the runtime secret), in process.
   * Returns the completing provisioning run so tests can assert what it created.
   */
  async bootedVehicle(): Promise<ProvisionResult> {
    const oemPolicyKeyPem = await readFile(this.oemPolicyPub, 'utf8');
    await provisionTpm(await this.deps(), { oemPolicyKeyPem });
    const bundle = await this.bundle(1);
    const policy = await createSignedPolicy({ bundlePath: bundle, keyring: this.bundleCert, policyKeyPem: await readFile(this.oemPolicyKey, 'utf8') });
    await measuredBoot(await this.deps(), { bundlePath: bundle, keyring: this.bundleCert, policy });
    return provisionTpm(await this.deps(), { oemPolicyKeyPem });
  }

  /**
   * Power-cycles the vehicle: TPM per `kind` (orderly / state / powerloss), and the run dir is emptied like a tmpfs
   * unless `keepRunDir` (an attacker who saved context files elsewhere). Drivers of the previous boot are closed.
   */
  async reboot(kind: RebootKind, opts: { keepRunDir?: boolean } = {}): Promise<void> {
    const ctl = await Tpm2Tools.open({ tcti: this.tcti, runDir: join(this.base, 'ctl') });
    try {
      await this.swtpm.reboot(kind, (t) => ctl.shutdown(t));
    } finally {
      await ctl.close().catch(() => undefined);
    }
    for (const d of this.drivers.splice(0)) await d.close().catch(() => undefined);
    if (!opts.keepRunDir) {
      for (const e of await readdir(this.runDir)) await rm(join(this.runDir, e), { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    for (const d of this.drivers.splice(0)) await d.close().catch(() => undefined);
    await this.swtpm.stop();
    await rm(this.base, { recursive: true, force: true });
  }
}
