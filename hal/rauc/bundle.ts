import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { EvccError } from '../../core/errors.ts';

/**
 * Bundle verification with Debian's RAUC (1.8 here): `rauc info --keyring` checks the CMS signature against the
 * OEM keyring. For `format=plain` bundles the signature covers the whole squashfs, so any modified byte is
 * refused here. For `format=verity` bundles `rauc info` checks only the signed manifest (the payload is checked
 * by dm-verity at mount time, measured: a 1-byte payload change passes `rauc info`), so evcc builds plain
 * bundles. The signed manifest names each image's SHA-256 and size: the root file system image's digest is what the
 * initramfs hook measures into PCR 14 from the installed slot (boot/README.md).
 */
export type { BundleImage, BundleInfo } from './types.ts';
import type { BundleImage, BundleInfo } from './types.ts';

export interface VerifyOptions {
  /**
   * Check the signing certificate's validity period against the clock (RAUC's default). A Pi has no RTC: before
   * NTP its clock may sit before the certificate's notBefore, which would refuse every bundle at boot; the device
   * config can turn this off (the signature is still checked).
   */
  checkTime?: boolean;
}

export async function verifyBundle(bundlePath: string, keyringPath: string, opts: VerifyOptions = {}): Promise<BundleInfo> {
  const args = ['info', '--keyring', keyringPath, '--output-format=json', ...(opts.checkTime === false ? ['--no-check-time'] : []), bundlePath];
  const r = await execa('rauc', args, { reject: false, stdin: 'ignore', timeout: 60_000 });
  if (r.exitCode !== 0) {
    const lines = String(r.stderr ?? '').trim().split('\n').filter((l) => !/^rauc-Message/.test(l));
    const why = lines.slice(-1)[0] ?? `exit ${r.exitCode}`;
    // OpenSSL's chain verification ("Verify error: self-signed certificate", "unable to get local issuer …", "not yet
    // valid") means a signer outside the OEM keyring; a content verify failure means the signed bytes were changed.
    const signer = lines.find((l) => /Verify error:/.test(l));
    if (signer) {
      throw new EvccError('BUNDLE_SIGNER_UNTRUSTED', `bundle ${bundlePath} is not signed by a key of the OEM keyring: ${signer.trim()}`, { bundle: bundlePath, exitCode: r.exitCode, reason: signer.trim() });
    }
    throw new EvccError('BUNDLE_INVALID', `bundle ${bundlePath} refused by rauc: ${why}`, { bundle: bundlePath, exitCode: r.exitCode, reason: why });
  }
  let info: { compatible?: unknown; version?: unknown; images?: unknown };
  try {
    info = JSON.parse(String(r.stdout)) as typeof info;
  } catch (err) {
    throw new EvccError('BUNDLE_INVALID', 'rauc info printed no JSON', { bundle: bundlePath }, { cause: err });
  }
  if (typeof info.compatible !== 'string' || typeof info.version !== 'string') {
    throw new EvccError('BUNDLE_INVALID', 'bundle manifest lacks compatible/version', { bundle: bundlePath });
  }
  return { compatible: info.compatible, version: info.version, images: manifestImages(info.images, bundlePath) };
}

/** `rauc info --output-format=json` lists images as [{ "<slot class>": { filename, checksum, size, … } }]. */
function manifestImages(raw: unknown, bundlePath: string): Record<string, BundleImage> {
  const images: Record<string, BundleImage> = {};
  for (const entry of Array.isArray(raw) ? raw : []) {
    for (const [slotClass, v] of Object.entries((entry ?? {}) as Record<string, { filename?: unknown; checksum?: unknown; size?: unknown }>)) {
      if (typeof v?.filename !== 'string' || typeof v.checksum !== 'string' || !/^[0-9a-f]{64}$/.test(v.checksum) || !Number.isSafeInteger(v.size)) {
        throw new EvccError('BUNDLE_INVALID', `bundle manifest image ${slotClass} lacks filename/checksum/size`, { bundle: bundlePath, slotClass });
      }
      images[slotClass] = { filename: v.filename, sha256: v.checksum, size: v.size as number };
    }
  }
  return images;
}

/** The manifest's root file system image (slot class `rootfs`): what the slot holds once RAUC installed the bundle. */
export function rootfsImage(info: BundleInfo, bundlePath = 'bundle'): BundleImage {
  const image = info.images.rootfs;
  if (!image) throw new EvccError('BUNDLE_INVALID', 'bundle has no rootfs image (the measured slot class)', { bundle: bundlePath, images: Object.keys(info.images) });
  return image;
}

export interface FileSlotInstall {
  bundlePath: string;
  keyring: string;
  /** The slot's backing file (the bench's file-backed RAUC slot, `type=raw`). */
  slotFile: string;
  /** Scratch dir for the extracted bundle and RAUC's bench system.conf. */
  workDir: string;
}

/**
 * Installs a bundle's rootfs image into a file-backed slot with Debian's RAUC, for a bench without slot partitions:
 * `rauc extract --keyring` (signature checked) and `rauc write-slot` (RAUC writes the image into the slot, as its raw
 * slot handler does on a partition). On the vehicle the OTA path installs through the RAUC service (D-Bus
 * InstallBundle), which needs a system bus and a bootloader backend the bench does not have.
 */
export async function installToFileSlot(o: FileSlotInstall): Promise<BundleImage> {
  const info = await verifyBundle(o.bundlePath, o.keyring);
  const image = rootfsImage(info, o.bundlePath);
  const conf = join(o.workDir, 'system.conf');
  await writeFile(conf, ['[system]', `compatible=${info.compatible}`, 'bootloader=noop', `data-directory=${join(o.workDir, 'rauc-data')}`, '',
    '[keyring]', `path=${o.keyring}`, '', '[slot.rootfs.0]', `device=${o.slotFile}`, 'type=raw', 'bootname=A', ''].join('\n'));
  const extracted = join(o.workDir, 'extracted');
  await rm(extracted, { recursive: true, force: true });
  const rauc = async (args: string[], what: string) => {
    const r = await execa('rauc', ['--conf', conf, ...args], { reject: false, stdin: 'ignore', timeout: 300_000 });
    if (r.exitCode !== 0) {
      const why = String(r.stderr ?? '').trim().split('\n').filter((l) => !/^rauc-Message/.test(l)).slice(-1)[0] ?? `exit ${r.exitCode}`;
      throw new EvccError('BUNDLE_INVALID', `rauc ${what} failed: ${why}`, { bundle: o.bundlePath, exitCode: r.exitCode });
    }
  };
  await rauc(['--keyring', o.keyring, 'extract', o.bundlePath, extracted], 'extract');
  // RAUC's raw handler writes into an existing device from offset 0: an empty file stands for the blank partition
  // (no bytes of an earlier, longer image left behind the new one).
  await writeFile(o.slotFile, new Uint8Array(0), { mode: 0o600 });
  await rauc(['write-slot', 'rootfs.0', join(extracted, image.filename)], 'write-slot');
  await rm(extracted, { recursive: true, force: true });
  return image;
}

/** Release versions are the NV counter's unit: a positive integer in the bundle manifest. */
export function releaseVersion(info: BundleInfo): number {
  if (!/^[1-9][0-9]{0,14}$/.test(info.version)) {
    throw new EvccError('BUNDLE_INVALID', `bundle version '${info.version}' is not a positive integer (the anti-rollback counter needs one)`, { version: info.version });
  }
  return Number(info.version);
}
