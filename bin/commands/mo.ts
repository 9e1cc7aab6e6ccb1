import { readFile, writeFile } from 'node:fs/promises';
import { EvccError } from '../../core/errors.ts';
import { wrapContractKey } from '../../deploy/mo/wrap.ts';
import { createRuntime } from '../runtime.ts';
import type { CommandModule } from './index.ts';

/** Mobility operator tools (offline, no TPM): `evcc mo wrap-contract-key`. */
export const registerMo: CommandModule = (program, globals) => {
  const mo = program.command('mo').description('mobility operator tools (offline)');
  mo.command('wrap-contract-key')
    .description('wrap a contract private key for one vehicle\'s TPM storage key (direct import blob; only that TPM can import it)')
    .requiredOption('--contract-key <pem>', 'contract private key (P-256, PEM)')
    .requiredOption('--device <dir>', 'the vehicle\'s export (`evcc tpm provision --export`)')
    .requiredOption('--out <file>', 'import blob (JSON)')
    .action(async (o: { contractKey: string; device: string; out: string }) => {
      const rt = await createRuntime(globals());
      try {
        let pem: Uint8Array;
        try {
          pem = new Uint8Array(await readFile(o.contractKey));
        } catch (err) {
          throw new EvccError('CONFIG_INVALID', `cannot read ${o.contractKey}`, {}, { cause: err });
        }
        const blob = await wrapContractKey({ contractKeyPem: pem, deviceExportDir: o.device });
        pem.fill(0);
        await writeFile(o.out, `${JSON.stringify(blob, null, 2)}\n`, { mode: 0o644 });
        rt.log('KEYS').info({ storageKey: blob.storageKeyName }, 'contract key wrapped for the vehicle storage key');
      } finally {
        await rt.close();
      }
    });
};
