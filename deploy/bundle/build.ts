import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { tmpdir } from 'node:os';
import { execa } from 'execa';
import { EvccError } from '../../core/errors.ts';

/**
 * Builds an OEM-signed RAUC update bundle with Debian's `rauc bundle` (ARCHITECTURE.md §4). `format=plain` by
 * default so `rauc info --keyring` verifies every byte at boot (hal/rauc/bundle.ts explains why not verity here).
 */
export interface BundleBuildOptions {
  /** Image file(s) for the update, e.g. the runtime tarball or a rootfs image; slot class → file. */
  images: Record<string, string>;
  version: number;
  compatible: string;
  cert: string;
  key: string;
  out: string;
  format?: 'plain' | 'verity';
  description?: string;
}

export async function buildBundle(o: BundleBuildOptions): Promise<void> {
  if (!Number.isSafeInteger(o.version) || o.version < 1) throw new EvccError('CONFIG_INVALID', 'bundle version must be a positive integer (anti-rollback counter unit)');
  if (!/^[A-Za-z0-9._-]+$/.test(o.compatible)) throw new EvccError('CONFIG_INVALID', 'compatible must be a plain identifier');
  const dir = await mkdtemp(join(tmpdir(), 'evcc-bundle-'));
  try {
    const lines = ['[update]', `compatible=${o.compatible}`, `version=${o.version}`];
    if (o.description) lines.push(`description=${o.description.replace(/\n/g, ' ')}`);
    lines.push('', '[bundle]', `format=${o.format ?? 'plain'}`);
    for (const [slot, file] of Object.entries(o.images)) {
      if (!/^[a-z0-9-]+$/.test(slot)) throw new EvccError('CONFIG_INVALID', `bad slot class ${slot}`);
      const name = basename(file);
      await copyFile(file, join(dir, name));
      lines.push('', `[image.${slot}]`, `filename=${name}`);
    }
    await writeFile(join(dir, 'manifest.raucm'), `${lines.join('\n')}\n`);
    await rm(o.out, { force: true });
    const r = await execa('rauc', ['bundle', '--cert', o.cert, '--key', o.key, dir, o.out], { reject: false, stdin: 'ignore', timeout: 300_000 });
    if (r.exitCode !== 0) {
      throw new EvccError('BUNDLE_BUILD_FAILED', `rauc bundle failed: ${String(r.stderr).trim().split('\n').slice(-1)[0]}`, { exitCode: r.exitCode });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
