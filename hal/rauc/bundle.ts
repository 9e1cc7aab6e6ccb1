import { execa } from 'execa';
import { EvccError } from '../../core/errors.ts';

/**
 * Bundle verification with Debian's RAUC (1.8 here): `rauc info --keyring` checks the CMS signature against the
 * OEM keyring. For `format=plain` bundles the signature covers the whole squashfs, so any modified byte is
 * refused here. For `format=verity` bundles `rauc info` checks only the signed manifest (the payload is checked
 * by dm-verity at mount time, measured: a 1-byte payload change passes `rauc info`), so evcc builds plain
 * bundles; whatever the format, PCR 14 carries the digest of the whole file, so the TPM refuses any change.
 */
export interface BundleInfo {
  compatible: string;
  version: string;
}

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
    const why = String(r.stderr ?? '').trim().split('\n').filter((l) => !/^rauc-Message/.test(l)).slice(-1)[0] ?? `exit ${r.exitCode}`;
    throw new EvccError('BUNDLE_INVALID', `bundle ${bundlePath} refused by rauc: ${why}`, { bundle: bundlePath, exitCode: r.exitCode, reason: why });
  }
  let info: { compatible?: unknown; version?: unknown };
  try {
    info = JSON.parse(String(r.stdout)) as typeof info;
  } catch (err) {
    throw new EvccError('BUNDLE_INVALID', 'rauc info printed no JSON', { bundle: bundlePath }, { cause: err });
  }
  if (typeof info.compatible !== 'string' || typeof info.version !== 'string') {
    throw new EvccError('BUNDLE_INVALID', 'bundle manifest lacks compatible/version', { bundle: bundlePath });
  }
  return { compatible: info.compatible, version: info.version };
}

/** Release versions are the NV counter's unit: a positive integer in the bundle manifest. */
export function releaseVersion(info: BundleInfo): number {
  if (!/^[1-9][0-9]{0,14}$/.test(info.version)) {
    throw new EvccError('BUNDLE_INVALID', `bundle version '${info.version}' is not a positive integer (the anti-rollback counter needs one)`, { version: info.version });
  }
  return Number(info.version);
}
