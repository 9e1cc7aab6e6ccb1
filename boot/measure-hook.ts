import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { EvccError } from '../core/errors.ts';

/**
 * The initramfs measurement hook (boot/initramfs/evcc-measure-rootfs), run as the image runs it: the same POSIX shell
 * script, against a TPM given by its TCTI. The bench runs it against swtpm at each simulated boot, before `evcc boot`;
 * on the vehicle the initramfs module `evccmeasure` runs it against /dev/tpmrm0 before switch_root.
 */
export const MEASURE_HOOK_PATH = fileURLToPath(new URL('./initramfs/evcc-measure-rootfs', import.meta.url));

export interface MeasureHookOptions {
  /** TPM2TOOLS_TCTI for the hook's tpm2-tools calls. */
  tcti: string;
  /** The slot about to become the root file system: a block device, or an image file (file-backed slot). */
  root: string;
  /** Bytes of the slot image (evcc.rootsize=); whole `root` when absent. */
  size?: number;
  eventLog: string;
  pcr?: number;
}

export async function runMeasureHook(o: MeasureHookOptions): Promise<{ message: string }> {
  const args = [MEASURE_HOOK_PATH, '-p', String(o.pcr ?? 14), '-l', o.eventLog, ...(o.size === undefined ? [] : ['-s', String(o.size)]), o.root];
  // POSIX sh: dash on Debian, busybox ash in the initramfs.
  const r = await execa('sh', args, { reject: false, stdin: 'ignore', timeout: 120_000, env: { TPM2TOOLS_TCTI: o.tcti }, extendEnv: true });
  const lines = String(r.stderr ?? '').trim().split('\n').filter(Boolean);
  const last = lines[lines.length - 1] ?? `exit ${r.exitCode}`;
  if (r.exitCode !== 0) throw new EvccError('BOOT_MEASURE_FAILED', `initramfs measurement hook failed: ${last}`, { exitCode: r.exitCode, root: o.root });
  return { message: last };
}
