import { Option } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { buildBundle } from '../../deploy/bundle/build.ts';
import { createRuntime } from '../runtime.ts';
import type { CommandModule } from './index.ts';

/** OEM build tools: `evcc bundle build` (RAUC bundle, OEM-signed). */
export const registerBundle: CommandModule = (program, globals) => {
  const bundle = program.command('bundle').description('update bundles (RAUC)');
  bundle.command('build')
    .description('build an OEM-signed RAUC bundle with Debian\'s rauc')
    .requiredOption('--image <slot=file...>', 'image per slot class, e.g. rootfs=rootfs.ext4 (repeatable)')
    .requiredOption('--version <n>', 'release version (positive integer: the anti-rollback unit)')
    .requiredOption('--compatible <id>', 'RAUC compatible string of the target')
    .requiredOption('--cert <pem>', 'OEM bundle-signing certificate')
    .requiredOption('--key <pem>', 'OEM bundle-signing private key')
    .requiredOption('--out <file>', 'bundle file (.raucb)')
    .addOption(new Option('--format <format>', 'bundle format').choices(['plain', 'verity']).default('plain'))
    .action(async (o: { image: string[]; version: string; compatible: string; cert: string; key: string; out: string; format: 'plain' | 'verity' }) => {
      const rt = await createRuntime(globals());
      try {
        const images: Record<string, string> = {};
        for (const spec of o.image) {
          const i = spec.indexOf('=');
          if (i < 1) throw new EvccError('CONFIG_INVALID', `--image wants slot=file, got ${spec}`);
          images[spec.slice(0, i)] = spec.slice(i + 1);
        }
        const version = Number(o.version);
        await buildBundle({ images, version, compatible: o.compatible, cert: o.cert, key: o.key, out: o.out, format: o.format });
        rt.log('BUNDLE').info({ out: o.out, version, format: o.format }, `bundle v${version} built`);
      } finally {
        await rt.close();
      }
    });
};
