import { readFile } from 'node:fs/promises';
import { EvccError } from '../../core/errors.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { commitRelease } from '../../boot/commit.ts';
import { checkMeasuredBoot, installReleasePolicy } from '../../boot/measured-boot.ts';
import { DEFAULT_EVENT_LOG } from '../../boot/event-log.ts';
import { openBootSecurityLog, recordBootCheck } from '../../firmware/log/vehicle-log.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import { addTpmOptions, withTpm, type TpmCommandOptions } from './tpm.ts';
import type { CommandModule } from './index.ts';

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (err) {
    throw new EvccError('POLICY_MALFORMED', `cannot read signed policy ${path}`, { path }, { cause: err });
  }
}

function print(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/** The boot check's result as a security-log entry (signed by the runtime's start checkpoint); never fails the check. */
async function recordInSecurityLog(data: FileStore, log: Logger, result: Parameters<typeof recordBootCheck>[1]): Promise<void> {
  try {
    const securityLog = await openBootSecurityLog({ data, now: Date.now, log });
    if (securityLog) await recordBootCheck(securityLog, result);
  } catch (err) {
    log.error({ code: (err as EvccError).code, cp: 'LOG-APPEND-FAILED' }, `boot check not recorded in the security log: ${(err as Error).message}`);
  }
}

/**
 * `evcc boot` (the boot check, before the runtime: the initramfs measured the root file system already),
 * `evcc boot commit`, `evcc boot install-policy`.
 */
export const registerBoot: CommandModule = (program, globals) => {
  const boot = addTpmOptions(program.command('boot'))
    .description('boot check: replay the initramfs measurement log against PCR 14, verify the installed bundle (RAUC keyring) and that its rootfs image is what booted, check the anti-rollback counter, cache the release ticket')
    .option('--bundle <file>', 'check exactly this RAUC bundle (default: the booted slot\'s release in the data dir, releases/v<N>/bundle.raucb, else config tpm.bundlePath)')
    .option('--keyring <pem>', 'OEM bundle keyring (config tpm.keyring)')
    .option('--policy <file>', 'signed state policy of this release, if not installed yet')
    .option('--event-log <file>', 'the initramfs hook\'s measurement event log', DEFAULT_EVENT_LOG)
    .action(async (o: TpmCommandOptions & { bundle?: string; keyring?: string; policy?: string; eventLog: string }) => {
      await withTpm(globals(), o, async (c) => {
        const log = c.rt.log('BOOT');
        try {
          const r = await checkMeasuredBoot({ ...c, log }, {
            bundlePath: o.bundle ?? c.settings.bundlePath,
            releases: o.bundle === undefined,
            eventLogPath: o.eventLog,
            keyring: o.keyring ?? c.settings.keyring,
            policy: o.policy ? await readJson(o.policy) : undefined,
            checkCertificateTime: c.settings.bundleCheckTime,
          });
          await recordInSecurityLog(c.data, log, r);
          print(r);
        } catch (err) {
          log.error({ code: (err as EvccError).code }, `boot check failed: ${(err as Error).message} (runtime starts degraded: EIM only)`);
          await recordInSecurityLog(c.data, log, { error: err });
          throw err;
        }
      });
    });

  addTpmOptions(boot.command('commit'))
    .description('A/B commit: after the running release signed through the TPM, raise the NV anti-rollback counter to its version')
    .action(async (o: TpmCommandOptions) => {
      await withTpm(globals(), { ...boot.opts<TpmCommandOptions>(), ...o }, async (c) => {
        const keys = await KeyService.open({ ...c, log: c.rt.log('KEYS') });
        try {
          print(await commitRelease({ ...c, log: c.rt.log('BOOT'), keys }));
        } finally {
          await keys.close();
        }
      });
    });

  addTpmOptions(boot.command('install-policy'))
    .description('verify a release\'s signed state policy with the TPM and cache its ticket (OTA: before the reboot into it)')
    .option('--policy <file>', 'signed state policy JSON from `evcc oem release` (required)')
    .action(async (sub: TpmCommandOptions & { policy?: string }) => {
      // `boot` itself has --policy and the TPM options; commander may hand them to the parent.
      const o = { ...boot.opts<TpmCommandOptions & { policy?: string }>(), ...sub };
      if (!o.policy) throw new EvccError('CONFIG_INVALID', 'install-policy needs --policy <file>');
      const policyPath = o.policy;
      await withTpm(globals(), o, async (c) => {
        const r = await installReleasePolicy({ ...c, log: c.rt.log('BOOT') }, await readJson(policyPath), undefined);
        print({ version: r.policy.version, ticket: r.ticket });
      });
    });

  addTpmOptions(boot.command('lock-platform'))
    .description('disable the TPM platform hierarchy until the next TPM Startup (every boot, first step of evcc-boot.service; TPM.md §8)')
    .action(async (sub: TpmCommandOptions) => {
      await withTpm(globals(), { ...boot.opts<TpmCommandOptions>(), ...sub }, async (c) => {
        const { lockPlatformHierarchy } = await import('../../firmware/keys/hierarchy.ts');
        print(await lockPlatformHierarchy({ tpm: c.tpm, log: c.rt.log('BOOT') }));
      });
    });
};
