import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { silentLogger } from '../../core/logger.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { Swtpm, type RebootKind } from '../../hal/tpm/swtpm.ts';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { Abrmd } from '../../hal/tpm/abrmd.ts';
import { tool, type Prerequisite } from '../support/prereq.ts';
import { buildBundle } from '../../deploy/bundle/build.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { checkMeasuredBoot, type BootReport } from '../../boot/measured-boot.ts';
import { runMeasureHook } from '../../boot/measure-hook.ts';
import { installToFileSlot } from '../../hal/rauc/bundle.ts';
import { provisionTpm, type ProvisionResult } from '../../firmware/keys/provision.ts';

/**
 * A vehicle on the bench for TPM tests: its own swtpm on free ports with an absolute state dir, a data dir and a
 * run dir (tmpfs semantics: emptied by every reboot), a file-backed RAUC slot A and the boot's /run where the
 * initramfs hook leaves its event log (emptied by every reboot), OEM key material made with openssl/node in a temp
 * dir, and the product's CLI. Several test files run their labs in parallel.
 */
const REPO = join(import.meta.dirname, '..', '..');

/**
 * How the product reaches the lab's TPM: `direct` (swtpm TCTI: no resource manager, as /dev/tpm0) or `abrmd`
 * (tpm2-abrmd in front of swtpm on a private D-Bus bus: handles and sessions per connection, as /dev/tpmrm0 on the
 * device). The key TPM suites run on both (hal/tpm/README.md).
 */
export type TpmTransport = 'direct' | 'abrmd';
export const TPM_TRANSPORTS: readonly TpmTransport[] = ['direct', 'abrmd'];

/** The client TCTI library of tabrmd is its own Debian package (libtss2-tcti-tabrmd0) without a command. */
const tabrmdTcti: Prerequisite = {
  name: 'library libtss2-tcti-tabrmd.so.0',
  present: () => ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib'].some((d) => existsSync(join(d, 'libtss2-tcti-tabrmd.so.0'))),
};

/** What a transport needs besides swtpm and tpm2-tools. */
export function transportPrereqs(t: TpmTransport): Prerequisite[] {
  return t === 'abrmd' ? [tool('tpm2-abrmd'), tool('dbus-daemon'), tabrmdTcti] : [];
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class TpmLab {
  private readonly drivers: Tpm2Tools[] = [];
  /** What slot A holds: the rootfs image of `bundle`, one byte changed when `tampered`. */
  private slot: { bundle: string; tampered: boolean } | undefined;
  private constructor(readonly base: string, readonly swtpm: Swtpm, readonly abrmd?: Abrmd) {}

  get transport(): TpmTransport {
    return this.abrmd ? 'abrmd' : 'direct';
  }
  /** The product's TCTI: through tpm2-abrmd with the `abrmd` transport, else swtpm's. */
  get tcti(): string {
    return this.abrmd?.tcti ?? this.swtpm.tcti;
  }
  /** Environment the product's processes need for `tcti` (the private D-Bus bus of tpm2-abrmd). */
  get env(): Record<string, string> {
    return this.abrmd?.env ?? {};
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
  /** Slot A (rootfs.0): a file, written by RAUC (`type=raw`). */
  get slotFile(): string {
    return join(this.base, 'slots', 'rootfs.0.img');
  }
  /** The boot's /run (moved into the root by switch_root): the hook's event log lives here. */
  get bootRunDir(): string {
    return join(this.base, 'boot-run');
  }
  get eventLog(): string {
    return join(this.bootRunDir, 'evcc-boot', 'measurements.log');
  }

  static async create(o: { transport?: TpmTransport } = {}): Promise<TpmLab> {
    const base = await mkdtemp(join(tmpdir(), 'evcc-tpm-lab-'));
    const swtpm = await Swtpm.start({ stateDir: join(base, 'swtpm-state'), logFile: join(base, 'swtpm.log') });
    const abrmd = o.transport === 'abrmd' ? await Abrmd.start({ backendTcti: swtpm.tcti, dir: join(base, 'abrmd') }).catch(async (err: unknown) => {
      await swtpm.stop();
      throw err;
    }) : undefined;
    const lab = new TpmLab(base, swtpm, abrmd);
    await mkdir(lab.oemDir, { recursive: true });
    await mkdir(lab.runDir, { recursive: true, mode: 0o700 });
    await mkdir(join(base, 'slots'), { recursive: true, mode: 0o700 });
    await mkdir(join(base, 'rauc'), { recursive: true, mode: 0o700 });
    await mkdir(lab.bootRunDir, { recursive: true, mode: 0o700 });
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(lab.oemPolicyKey, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    await writeFile(lab.oemPolicyPub, publicKey.export({ type: 'spki', format: 'pem' }) as string);
    await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', lab.bundleKey,
      '-out', lab.bundleCert, '-subj', '/CN=EVCC OEM bundle signing', '-days', '365']);
    return lab;
  }

  /** A fresh product driver (as a new process would have); closed with the lab. */
  async driver(runDir = this.runDir): Promise<Tpm2Tools> {
    const d = await Tpm2Tools.open({ tcti: this.tcti, env: this.env, runDir });
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
      { cwd: REPO, reject: false, stdin: 'ignore', env: { NODE_OPTIONS: '', ...this.env } });
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

  /** RAUC writes `bundle`'s rootfs image into slot A; it counts from the next measurement (the next boot). */
  async install(bundle: string): Promise<void> {
    await installToFileSlot({ bundlePath: bundle, keyring: this.bundleCert, slotFile: this.slotFile, workDir: join(this.base, 'rauc') });
    this.slot = { bundle, tampered: false };
  }

  /** A root attacker changes one byte of slot A's root file system (effective at the next boot); returns the slot's bytes. */
  async tamperSlot(): Promise<Uint8Array> {
    const bytes = await readFile(this.slotFile);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x01;
    await writeFile(this.slotFile, bytes);
    if (this.slot) this.slot.tampered = true;
    return new Uint8Array(bytes);
  }

  /** The initramfs: the hook (the image's own script) measures slot A into PCR 14 — once per boot, as on the vehicle. */
  async measure(): Promise<void> {
    if (existsSync(this.eventLog)) return;
    // The initramfs runs before any resource manager: straight to the TPM.
    await runMeasureHook({ tcti: this.swtpm.tcti, root: this.slotFile, eventLog: this.eventLog });
  }

  /** The boot up to switch_root: slot A holds `bundle`'s image (one byte changed with `tamperedSlot`), measured once. */
  async bootUpTo(bundle: string, o: { tamperedSlot?: boolean } = {}): Promise<void> {
    const tampered = o.tamperedSlot ?? false;
    if (this.slot?.bundle !== bundle || this.slot.tampered !== tampered) {
      await this.install(bundle);
      if (tampered) await this.tamperSlot();
    }
    await this.measure();
  }

  /** `evcc boot` as its own process (evcc-boot.service), after bootUpTo(bundle). */
  async bootCli(bundle: string, extra: string[] = []): Promise<CliResult> {
    await this.bootUpTo(bundle);
    return this.cli(['boot', '--bundle', bundle, '--keyring', this.bundleCert, '--event-log', this.eventLog, ...extra], { tpm: true });
  }

  /**
   * A boot of the vehicle with `bundle` installed: slot A gets its rootfs image if it lacks it (one byte changed with
   * `tamperedSlot`), the hook measures it (once per boot), then `evcc boot`'s check runs in process.
   */
  async boot(bundle: string, o: { policy?: unknown; tamperedSlot?: boolean } = {}): Promise<BootReport> {
    await this.bootUpTo(bundle, o);
    return checkMeasuredBoot(await this.deps(), { bundlePath: bundle, keyring: this.bundleCert, policy: o.policy, eventLogPath: this.eventLog });
  }

  /**
   * Factory provisioning, OEM release v1 (bundle + signed state policy), measured boot and the first-boot
   * completion (provisioning again creates the OEM provisioning key and the runtime secret), in process.
   * Returns the completing provisioning run so tests can assert what it created.
   */
  async bootedVehicle(o: { hierarchyEscrowKeyPem?: string } = {}): Promise<ProvisionResult> {
    const oemPolicyKeyPem = await readFile(this.oemPolicyPub, 'utf8');
    await provisionTpm(await this.deps(), { oemPolicyKeyPem });
    const bundle = await this.bundle(1);
    const policy = await createSignedPolicy({ bundlePath: bundle, keyring: this.bundleCert, policyKeyPem: await readFile(this.oemPolicyKey, 'utf8') });
    await this.boot(bundle, { policy });
    return provisionTpm(await this.deps(), { oemPolicyKeyPem, ...o });
  }

  /**
   * Power-cycles the vehicle: TPM per `kind` (orderly / state / powerloss), and the run dir is emptied like a tmpfs
   * unless `keepRunDir` (an attacker who saved context files elsewhere); the boot's /run (event log) always is.
   * Drivers of the previous boot are closed.
   */
  async reboot(kind: RebootKind, opts: { keepRunDir?: boolean } = {}): Promise<void> {
    // The shutdown the kernel sends on reboot goes straight to the TPM; the device's reboot restarts tpm2-abrmd too.
    const ctl = await Tpm2Tools.open({ tcti: this.swtpm.tcti, runDir: join(this.base, 'ctl') });
    try {
      await this.swtpm.reboot(kind, (t) => ctl.shutdown(t));
    } finally {
      await ctl.close().catch(() => undefined);
    }
    await this.abrmd?.restart();
    for (const d of this.drivers.splice(0)) await d.close().catch(() => undefined);
    if (!opts.keepRunDir) {
      for (const e of await readdir(this.runDir)) await rm(join(this.runDir, e), { recursive: true, force: true });
    }
    for (const e of await readdir(this.bootRunDir)) await rm(join(this.bootRunDir, e), { recursive: true, force: true });
  }

  async close(): Promise<void> {
    for (const d of this.drivers.splice(0)) await d.close().catch(() => undefined);
    await this.abrmd?.stop();
    await this.swtpm.stop();
    await rm(this.base, { recursive: true, force: true });
  }
}
