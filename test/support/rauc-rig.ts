import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { EvccError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/logger.ts';
import { checkMeasuredBoot, installReleasePolicy, type BootReport } from '../../boot/measured-boot.ts';
import { commitRelease } from '../../boot/commit.ts';
import { runMeasureHook } from '../../boot/measure-hook.ts';
import { buildBundle } from '../../deploy/bundle/build.ts';
import { wrapContractKey } from '../../deploy/mo/wrap.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { writeExport } from '../../bin/commands/tpm.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { backendExport, provisionTpm } from '../../firmware/keys/provision.ts';
import type { SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import { DATA } from '../../firmware/keys/layout.ts';
import { releaseBundle, type SlotUpdateDeps } from '../../firmware/ota/update/after-boot.ts';
import { RaucDbusInstaller } from '../../hal/rauc/dbus.ts';
import type { RebootKind } from '../../hal/tpm/swtpm.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { hasSetpriv } from '../../hal/tpm/swtpm.ts';
import { TpmLab } from '../integration/tpm-lab.ts';
import { tool, type Prerequisite } from './prereq.ts';

/**
 * A vehicle with real RAUC on the bench (issue #10): swtpm (TpmLab), a private D-Bus system bus (Debian `dbus`:
 * dbus-daemon with a `<type>system</type>` config that includes rauc-service's own bus policy, so `rauc service` as
 * root owns `de.pengutronix.rauc` and anyone may call it), and Debian's `rauc service` with a system.conf of two
 * file-backed ext4 rootfs slots (A = rootfs.0, B = rootfs.1).
 *
 * Boot loader: RAUC 1.8's `bootloader=custom` backend, test/support/rauc-bootloader.sh, which keeps U-Boot's RAUC
 * variables (BOOT_ORDER, BOOT_<slot>_LEFT) in a state file with the semantics of RAUC's U-Boot backend. The Pi uses
 * U-Boot with meta-rauc / meta-rauc-community's boot script (as the Yocto layer does, `bootloader=uboot`); the
 * custom backend is what lets the bench run the same state machine without a U-Boot environment. The rig's "boot
 * loader" (`selectBootSlot`) is U-Boot's boot script: the first slot in BOOT_ORDER with tries left boots, one try
 * is taken; RAUC's Mark good gives the tries back, Mark bad drops the slot from the order.
 *
 * A "reboot" (`powerCycle`): `rauc service` stops (SIGKILL on a power loss), leftovers of a killed install
 * (bundle mount, loop device) go as a reboot clears them, swtpm is reset (TPM reset: PCR 14 zero), the boot loader
 * picks the slot, the initramfs hook (boot/initramfs/evcc-measure-rootfs) measures that slot file into PCR 14,
 * `rauc service --override-boot-slot=<bootname>` starts (what `rauc.slot=` on the kernel command line says on the
 * vehicle). Then the runtime's boot check (`bootCheck`) and after-boot (the test's or the agent's).
 */
export const RAUC_BOOTLOADER_BACKEND = join(import.meta.dirname, 'rauc-bootloader.sh');
export const RIG_COMPATIBLE = 'evcc-bench';
const SLOT_BYTES = 16 * 1024 * 1024;
const TRIES = 3;

const RAUC_BUS_POLICY = '/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf';
/** Debian rauc-service: the bus policy that lets root own de.pengutronix.rauc (no command of its own to look for). */
const raucService: Prerequisite = { name: `package rauc-service (${RAUC_BUS_POLICY})`, present: () => existsSync(RAUC_BUS_POLICY) };
/** What the rig needs (tests: describeWith(RAUC_RIG_PREREQS)). */
export const RAUC_RIG_PREREQS: Prerequisite[] = [tool('swtpm'), tool('tpm2_pcrextend'), tool('rauc'), tool('dbus-daemon'), tool('mkfs.ext4'), tool('openssl'),
  tool('sha256sum'), tool('od'), tool('losetup'), raucService, { name: 'root (rauc mounts bundles on loop devices)', present: () => process.getuid?.() === 0 }];

const busConfig = (socket: string, policies: readonly string[] = []): string => `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>${RAUC_BUS_POLICY}</include>
${policies.map((p) => `  <include>${p}</include>\n`).join('')}</busconfig>
`;

export interface RigRelease {
  version: number;
  bundle: string;
  policy: SignedPolicy;
}

async function spawnDaemon(file: string, args: string[], log: string, env?: Record<string, string>): Promise<{ child: ResultPromise }> {
  const [cmd, argv] = (await hasSetpriv()) ? ['setpriv', ['--pdeathsig', 'KILL', '--', file, ...args]] : [file, args];
  return { child: execa(cmd, argv, { reject: false, stdin: 'ignore', stdout: { file: log }, stderr: { file: `${log}.err` }, cleanup: true, env: { ...process.env, ...env } }) };
}

async function stopChild(child: ResultPromise | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode) return;
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await child.catch(() => undefined);
  clearTimeout(t);
}

export class RaucRig {
  private bus: ResultPromise | undefined;
  private service: ResultPromise | undefined;
  private serviceStarts = 0;
  private busPolicies: readonly string[] = [];
  /** Bootname of the slot running now. */
  booted = 'A';
  private constructor(readonly lab: TpmLab, readonly dir: string) {}

  get busSocket(): string {
    return join(this.dir, 'system_bus.sock');
  }
  get busAddress(): string {
    return `unix:path=${this.busSocket}`;
  }
  get systemConf(): string {
    return join(this.dir, 'system.conf');
  }
  get bootState(): string {
    return join(this.dir, 'bootloader.env');
  }
  /** Where RAUC mounts bundles (its own per rig: parallel rigs do not meet). */
  get mountPrefix(): string {
    return join(this.dir, 'mnt');
  }
  slotFile(bootname: string): string {
    return join(this.dir, 'slots', `rootfs.${bootname === 'A' ? 0 : 1}.img`);
  }
  get keyring(): string {
    return this.lab.bundleCert;
  }
  get dataDir(): string {
    return this.lab.dataDir;
  }
  get runDir(): string {
    return this.lab.runDir;
  }
  get eventLog(): string {
    return this.lab.eventLog;
  }
  /** Environment of a process of the vehicle that talks to RAUC (the private system bus). */
  get env(): Record<string, string> {
    return { DBUS_SYSTEM_BUS_ADDRESS: this.busAddress, ...this.lab.env };
  }

  /** `slotBytes`: size of each slot file (the partition; default 16 MiB). */
  /** `busPolicies`: bus policy files included after RAUC's own, as /usr/share/dbus-1/system.d/ orders them. */
  static async create(o: { slotBytes?: number; busPolicies?: readonly string[] } = {}): Promise<RaucRig> {
    const lab = await TpmLab.create();
    const rig = new RaucRig(lab, join(lab.base, 'rauc-rig'));
    rig.busPolicies = o.busPolicies ?? [];
    try {
      await mkdir(join(rig.dir, 'slots'), { recursive: true, mode: 0o700 });
      await mkdir(rig.mountPrefix, { recursive: true, mode: 0o700 });
      for (const s of ['A', 'B']) {
        await writeFile(rig.slotFile(s), new Uint8Array(0), { mode: 0o600 });
        await truncate(rig.slotFile(s), o.slotBytes ?? SLOT_BYTES); // the blank partition
      }
      await writeFile(rig.systemConf, [
        '[system]', `compatible=${RIG_COMPATIBLE}`, 'bootloader=custom', `data-directory=${join(rig.dir, 'rauc-data')}`, `mountprefix=${rig.mountPrefix}`, '',
        '[handlers]', `bootloader-custom-backend=${RAUC_BOOTLOADER_BACKEND}`, '',
        '[keyring]', `path=${lab.bundleCert}`, '',
        '[slot.rootfs.0]', `device=${rig.slotFile('A')}`, 'type=ext4', 'bootname=A', '',
        '[slot.rootfs.1]', `device=${rig.slotFile('B')}`, 'type=ext4', 'bootname=B', '',
      ].join('\n'));
      await rig.startBus();
      return rig;
    } catch (err) {
      await rig.close();
      throw err;
    }
  }

  private async startBus(): Promise<void> {
    const conf = join(this.dir, 'bus.conf');
    await writeFile(conf, busConfig(this.busSocket, this.busPolicies), { mode: 0o600 });
    await rm(this.busSocket, { force: true });
    this.bus = (await spawnDaemon('dbus-daemon', [`--config-file=${conf}`, '--nofork', '--nopidfile'], join(this.dir, 'dbus.log'))).child;
    for (let i = 0; i < 300; i++) {
      if (this.bus.exitCode !== null) break;
      if (await stat(this.busSocket).then(() => true, () => false)) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new EvccError('PREREQUISITE_MISSING', 'dbus-daemon did not start (Debian package dbus)', { dir: this.dir });
  }

  /** `rauc service` on the private bus, booted from `this.booted` (ready once it answers on the bus). */
  async startService(): Promise<void> {
    const log = join(this.dir, `rauc-service.${++this.serviceStarts}.log`);
    this.service = (await spawnDaemon('rauc', ['service', `--conf=${this.systemConf}`, `--override-boot-slot=${this.booted}`], log,
      { DBUS_SYSTEM_BUS_ADDRESS: this.busAddress, EVCC_RAUC_BOOT_STATE: this.bootState })).child;
    let lastErr: unknown;
    for (let i = 0; i < 100; i++) {
      if (this.service.exitCode !== null) break;
      try {
        const c = await RaucDbusInstaller.connect({ busAddress: this.busAddress, timeoutMs: 2000 });
        const slot = await c.bootSlot();
        await c.close();
        if (slot === this.booted) return;
      } catch (err) {
        lastErr = err;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new EvccError('PREREQUISITE_MISSING', `rauc service did not come up on the private bus (see ${log}.err)`, { log }, { cause: lastErr });
  }

  /** The RAUC service's process (for tests that watch it). */
  get servicePid(): number | undefined {
    return this.service?.pid;
  }

  async stopService(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopChild(this.service, signal);
    this.service = undefined;
  }

  /** A client of the RAUC service, as the runtime connects (closed by the caller). */
  installer(log?: Logger): Promise<RaucDbusInstaller> {
    return RaucDbusInstaller.connect({ busAddress: this.busAddress, log });
  }

  /** The boot loader's variables (BOOT_ORDER, BOOT_<slot>_LEFT). */
  async bootloader(): Promise<{ order: string[]; left: Record<string, number> }> {
    const text = await readFile(this.bootState, 'utf8');
    const get = (k: string): string => new RegExp(`^${k}=(.*)$`, 'm').exec(text)?.[1] ?? '';
    return { order: get('BOOT_ORDER').split(/\s+/).filter(Boolean), left: { A: Number(get('BOOT_A_LEFT') || 0), B: Number(get('BOOT_B_LEFT') || 0) } };
  }

  private async writeBootloader(order: string[], left: Record<string, number>): Promise<void> {
    const tmp = `${this.bootState}.rig`;
    await writeFile(tmp, `BOOT_ORDER=${order.join(' ')}\nBOOT_A_LEFT=${left.A ?? 0}\nBOOT_B_LEFT=${left.B ?? 0}\n`);
    await rename(tmp, this.bootState);
  }

  /** U-Boot's boot script: the first slot of BOOT_ORDER with tries left boots and loses one try. */
  private async selectBootSlot(): Promise<string> {
    const { order, left: now } = await this.bootloader();
    // meta-rauc's boot script: no slot with tries left → every slot of BOOT_ORDER gets its tries back.
    const left = order.some((s) => (now[s] ?? 0) > 0) ? now : { ...now, ...Object.fromEntries(order.map((s) => [s, TRIES])) };
    const slot = order.find((s) => (left[s] ?? 0) > 0);
    if (!slot) throw new EvccError('OTA_UPDATE_FELL_BACK', `no bootable slot (BOOT_ORDER='${order.join(' ')}'): the vehicle is bricked`, { order, left });
    await this.writeBootloader(order, { ...left, [slot]: left[slot]! - 1 });
    return slot;
  }

  /** The OEM's side of release N: an ext4 root file system image, the signed RAUC bundle, the signed state policy. */
  async release(version: number, o: { imageBytes?: number } = {}): Promise<RigRelease> {
    const dir = join(this.lab.oemDir, `v${version}`);
    const tree = join(dir, 'tree');
    await mkdir(join(tree, 'etc'), { recursive: true });
    await writeFile(join(tree, 'etc', 'evcc-release'), `VERSION=${version}\n`);
    await writeFile(join(tree, 'payload.bin'), randomBytes(o.imageBytes ?? 256 * 1024));
    const image = join(dir, 'rootfs.ext4');
    const blocks = Math.ceil(((o.imageBytes ?? 256 * 1024) * 1.2 + 2 * 1024 * 1024) / 4096);
    await execa('mkfs.ext4', ['-q', '-F', '-b', '4096', '-O', '^has_journal', '-d', tree, image, String(blocks)]);
    const bundle = join(this.lab.oemDir, `v${version}.raucb`);
    await buildBundle({ images: { rootfs: image }, version, compatible: RIG_COMPATIBLE, cert: this.lab.bundleCert, key: this.lab.bundleKey, out: bundle });
    const policy = await createSignedPolicy({ bundlePath: bundle, keyring: this.lab.bundleCert, policyKeyPem: await readFile(this.lab.oemPolicyKey, 'utf8') });
    return { version, bundle, policy };
  }

  /**
   * The factory: the TPM provisioned, release 1 written into slot A (RAUC's write-slot, as the factory flashes the
   * image), its bundle kept in the data dir, slot B blank; boot loader BOOT_ORDER=A; the first measured boot, its
   * check and the first-boot completion; a contract key imported (wrapped by the MO backend for this TPM).
   */
  async factory(): Promise<{ v1: RigRelease; contractPublicKeyPem: string }> {
    const oemPolicyKeyPem = await readFile(this.lab.oemPolicyPub, 'utf8');
    await provisionTpm(await this.lab.deps(), { oemPolicyKeyPem });
    const v1 = await this.release(1);
    const data = await FsStore.open(this.dataDir);
    await data.writeAtomic(releaseBundle(1), await readFile(v1.bundle), { mode: 0o644 });
    const extracted = join(this.dir, 'factory-extract');
    await execa('rauc', ['--conf', this.systemConf, '--keyring', this.keyring, 'extract', v1.bundle, extracted]);
    await execa('rauc', ['--conf', this.systemConf, 'write-slot', 'rootfs.0', join(extracted, 'rootfs.ext4')], { env: { EVCC_RAUC_BOOT_STATE: this.bootState } });
    await rm(extracted, { recursive: true, force: true });
    await this.writeBootloader(['A'], { A: TRIES, B: 0 });
    const first = await this.boot('orderly', { policy: v1.policy });
    if (first.check instanceof EvccError) throw first.check;
    const record = (await provisionTpm(await this.lab.deps(), { oemPolicyKeyPem })).record;
    await writeExport(this.lab.exportDir, backendExport(record));
    const contract = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const blob = await wrapContractKey({ contractKeyPem: contract.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, deviceExportDir: this.lab.exportDir });
    const keys = await KeyService.open(await this.lab.deps());
    try {
      await keys.importContractKey(blob);
    } finally {
      await keys.close();
    }
    return { v1, contractPublicKeyPem: contract.publicKey.export({ type: 'spki', format: 'pem' }) as string };
  }

  /** Leftovers of an install killed by a power loss that a reboot clears: the bundle's mount and its loop device. */
  private async clearMounts(): Promise<void> {
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    for (const line of mounts.split('\n')) {
      const [dev, at] = line.split(' ');
      if (!at?.startsWith(this.mountPrefix)) continue;
      await execa('umount', ['-l', at], { reject: false });
      if (dev?.startsWith('/dev/loop')) await execa('losetup', ['-d', dev], { reject: false });
    }
  }

  /**
   * Power cycle: RAUC stopped (SIGKILL unless orderly), the TPM reset (as `kind`, or `tpm` when given: a TPM that
   * was not shut down counts a dictionary-attack failure, so long kill loops reset it orderly), the boot loader picks the slot, the initramfs
   * hook measures it, `rauc service` starts on it. Returns the booted bootname. Unless `check: false`, the boot
   * check runs too (its refusal is returned, as the runtime starts degraded).
   */
  async powerCycle(kind: RebootKind = 'orderly', o: { check?: boolean; tpm?: RebootKind } = {}): Promise<{ booted: string; check?: BootReport | EvccError }> {
    await this.stopService(kind === 'orderly' ? 'SIGTERM' : 'SIGKILL');
    await this.clearMounts();
    return this.boot(o.tpm ?? kind, o);
  }

  private async boot(kind: RebootKind, o: { check?: boolean; policy?: unknown }): Promise<{ booted: string; check?: BootReport | EvccError }> {
    await this.lab.reboot(kind);
    this.booted = await this.selectBootSlot();
    await runMeasureHook({ tcti: this.lab.swtpm.tcti, root: this.slotFile(this.booted), eventLog: this.lab.eventLog });
    await this.startService();
    if (o.check === false) return { booted: this.booted };
    const check = await this.bootCheck(o.policy).catch((err: unknown) => {
      if (err instanceof EvccError) return err;
      throw err;
    });
    return { booted: this.booted, check };
  }

  /**
   * `evcc boot` (boot/measured-boot.ts) on the booted slot: the bundle is the release the initramfs measured, among
   * those in the data dir; the factory's v1 bundle is the configured fallback (tpm.bundlePath).
   */
  async bootCheck(policy?: unknown): Promise<BootReport> {
    const d = await this.lab.deps();
    return checkMeasuredBoot(d, { releases: true, bundlePath: join(this.dataDir, releaseBundle(1)), keyring: this.keyring, eventLogPath: this.lab.eventLog, policy });
  }

  /** The runtime's side of the slot update, wired as the composition root does (KeyService for health and commit). */
  async slotDeps(installer: RaucDbusInstaller, o: { log?: Logger; healthCheck?: () => Promise<string>; reboot?: (reason: string) => Promise<void> } = {}): Promise<SlotUpdateDeps & { close(): Promise<void> }> {
    const d = await this.lab.deps();
    const log = o.log ?? silentLogger();
    return {
      installer,
      data: d.data,
      run: d.run,
      log,
      reboot: { reboot: o.reboot ?? (async () => undefined) },
      installPolicy: async (policy, version) => {
        await installReleasePolicy({ ...d, log }, policy, version);
      },
      healthCheck: o.healthCheck ?? (async () => {
        const keys = await KeyService.open({ ...d, log });
        try {
          return (await keys.selfTest()).key;
        } finally {
          await keys.close();
        }
      }),
      commit: async () => {
        const keys = await KeyService.open({ ...d, log });
        try {
          const c = await commitRelease({ ...d, log, keys });
          return { from: c.from, to: c.to };
        } finally {
          await keys.close();
        }
      },
      close: async () => undefined,
    };
  }

  /** The NV anti-rollback counter. */
  async counter(): Promise<bigint> {
    const rec = JSON.parse(await readFile(join(this.dataDir, DATA.record), 'utf8')) as { nvCounter: { index: number } };
    return (await this.lab.driver()).nvReadCounter(rec.nvCounter.index);
  }

  /** Copies a release's bundle into the data dir as the download would leave it. */
  async placeBundle(r: RigRelease): Promise<string> {
    const to = join(this.dataDir, releaseBundle(r.version));
    await mkdir(join(to, '..'), { recursive: true });
    await copyFile(r.bundle, to);
    return to;
  }

  async close(): Promise<void> {
    await this.stopService('SIGTERM').catch(() => undefined);
    await this.clearMounts().catch(() => undefined);
    await stopChild(this.bus, 'SIGTERM').catch(() => undefined);
    await this.lab.close();
  }
}
