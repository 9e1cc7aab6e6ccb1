import { readFile, writeFile } from 'node:fs/promises';
import { EvccError } from '../../core/errors.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { createRuntime } from '../runtime.ts';
import type { CommandModule } from './index.ts';

/** OEM backend tools (offline): `evcc oem release`. */
export const registerOem: CommandModule = (program, globals) => {
  const oem = program.command('oem').description('OEM backend tools (offline)');
  oem.command('release')
    .description('predict PCR 14 of a signed bundle, build its approved state policy (PolicyPCR ; PolicyNV counter <= version) and sign it')
    .requiredOption('--bundle <file>', 'RAUC bundle (its manifest version is the release version)')
    .requiredOption('--keyring <pem>', 'bundle-signing keyring, to check the bundle before vouching for it')
    .requiredOption('--policy-key <pem>', 'OEM policy-signing PRIVATE key (an HSM in production)')
    .requiredOption('--out <file>', 'signed policy JSON')
    .option('--nv-index <hex>', 'anti-rollback NV counter index', '0x01800101')
    .option('--policy-ref <string>', 'policyRef (must match the one provisioned)')
    .action(async (o: { bundle: string; keyring: string; policyKey: string; out: string; nvIndex: string; policyRef?: string }) => {
      const rt = await createRuntime(globals());
      try {
        const nvIndex = Number(o.nvIndex);
        if (!Number.isInteger(nvIndex) || nvIndex < 0x01000000 || nvIndex > 0x01ffffff) throw new EvccError('CONFIG_INVALID', `bad NV index ${o.nvIndex}`);
        let policyKeyPem: string;
        try {
          policyKeyPem = await readFile(o.policyKey, 'utf8');
        } catch (err) {
          throw new EvccError('CONFIG_INVALID', `cannot read ${o.policyKey}`, {}, { cause: err });
        }
        const p = await createSignedPolicy({ bundlePath: o.bundle, keyring: o.keyring, policyKeyPem, nvIndex, policyRef: o.policyRef });
        await writeFile(o.out, `${JSON.stringify(p, null, 2)}\n`, { mode: 0o644 });
        rt.log('OEM').info({ version: p.version, pcr: p.pcrs.value, policy: p.policy }, `release v${p.version} signed`);
        process.stdout.write(`${JSON.stringify(p, null, 2)}\n`);
      } finally {
        await rt.close();
      }
    });
};
