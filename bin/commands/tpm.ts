import { readFile, rm, writeFile, open as openFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { backendExport, provisionTpm } from '../../firmware/keys/provision.ts';
import { TpmSettings } from '../../firmware/keys/settings.ts';
import { parseSettings } from '../../firmware/settings.ts';
import type { Logger } from '../../core/logger.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { Swtpm } from '../../hal/tpm/swtpm.ts';
import { Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import type { Tpm } from '../../hal/tpm/types.ts';
import { createRuntime, type GlobalOptions, type Runtime } from '../runtime.ts';
import type { CommandModule } from './index.ts';

/** Options every TPM-touching command takes (override the config file). */
export interface TpmCommandOptions {
  tcti?: string;
  dataDir?: string;
  runDir?: string;
}

export function addTpmOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--tcti <tcti>', 'TPM2TOOLS_TCTI (config tpm.tcti; e.g. swtpm:host=127.0.0.1,port=2321)'))
    .addOption(new Option('--data-dir <dir>', 'persistent data dir (config dataDir)'))
    .addOption(new Option('--run-dir <dir>', 'volatile run dir, tmpfs on the device (config runDir)'));
}

export interface TpmContext {
  rt: Runtime;
  settings: TpmSettings;
  tpm: Tpm;
  data: FsStore;
  run: FsStore;
  log: Logger;
  close(): Promise<void>;
}

/** Composition of the TPM part: runtime, tpm2-tools driver, data and run stores. */
export async function openTpmContext(globals: GlobalOptions, o: TpmCommandOptions): Promise<TpmContext> {
  const overrides: Record<string, unknown> = {};
  if (o.dataDir) overrides.dataDir = o.dataDir;
  if (o.runDir) overrides.runDir = o.runDir;
  const rt = await createRuntime(globals, overrides);
  const settings = parseSettings(TpmSettings, { ...(rt.rawConfig.tpm as object | undefined), ...(o.tcti ? { tcti: o.tcti } : {}) }, 'config.tpm');
  const data = await FsStore.open(rt.settings.dataDir);
  const run = await FsStore.open(rt.settings.runDir);
  const log = rt.log('TPM');
  const tpm = await Tpm2Tools.open({ tcti: settings.tcti, runDir: rt.settings.runDir, log });
  return {
    rt, settings, tpm, data, run, log,
    async close() {
      await tpm.close();
      await rt.close();
    },
  };
}

export async function withTpm<T>(globals: GlobalOptions, o: TpmCommandOptions, fn: (c: TpmContext) => Promise<T>): Promise<T> {
  const c = await openTpmContext(globals, o);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

async function readText(path: string, what: string): Promise<string> {
  return new TextDecoder().decode(await readInput(path, what));
}

/** A file the operator named: missing or unreadable is a typed CONFIG_INVALID (exit 1), read before the TPM is touched. */
async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new EvccError('CONFIG_INVALID', `cannot read ${what} ${path} (${why})`, { path }, { cause: err });
  }
}

/** swtpm's server port; the control channel takes port + 1, so both must be valid TCP ports. */
export function parseSwtpmPort(text: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65534) {
    throw new EvccError('CONFIG_INVALID', `--port must be an integer 1…65534 (control channel = port + 1), got "${text}"`, { port: text });
  }
  return port;
}

export async function writeExport(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content, { mode: 0o644 });
}

/** Overwrites a plaintext key file with zeros, syncs and unlinks it (compat path: "imported then destroyed"). */
async function destroyFile(path: string): Promise<void> {
  const size = (await stat(path)).size;
  const fh = await openFile(path, 'r+');
  try {
    await fh.write(Buffer.alloc(size), 0, size, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rm(path, { force: true });
}

function print(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

export const registerTpm: CommandModule = (program, globals) => {
  const tpm = program.command('tpm').description('TPM 2.0 key service: factory provisioning, contract keys, signing');

  addTpmOptions(tpm.command('provision'))
    .description('factory step: SRK, storage key, NV counter (and the OEM provisioning key after the first good boot); idempotent, never overwrites')
    .requiredOption('--oem-policy-key <pem>', 'OEM policy-signing PUBLIC key (PEM)')
    .option('--policy-ref <string>', 'policyRef signed with every state policy', undefined)
    .option('--export <dir>', 'write what the OEM/MO backends need (storage key public, names, policy digests)')
    .option('--da-max-tries <n>', 'dictionary attack: failures before lockout (power losses count too, TPM.md pitfall 13)')
    .option('--da-recovery <s>', 'dictionary attack: seconds after which one failure is forgotten')
    .option('--da-lockout-recovery <s>', 'dictionary attack: seconds before lockout-auth may be retried')
    .option('--hierarchy-escrow-key <pem>', 'OEM hierarchy-escrow PUBLIC key (P-256): after the first good boot, set owner/endorsement/lockout auth, escrowed to it')
    .action(async (o: TpmCommandOptions & { oemPolicyKey: string; policyRef?: string; export?: string; daMaxTries?: string; daRecovery?: string; daLockoutRecovery?: string; hierarchyEscrowKey?: string }) => {
      const daGiven = [o.daMaxTries, o.daRecovery, o.daLockoutRecovery].filter((v) => v !== undefined).length;
      if (daGiven !== 0 && daGiven !== 3) throw new EvccError('CONFIG_INVALID', 'give all three --da-* options or none');
      const num = (v: string, what: string) => {
        if (!/^\d{1,9}$/.test(v)) throw new EvccError('CONFIG_INVALID', `${what} must be a non-negative integer`);
        return Number(v);
      };
      const dictionaryAttack = daGiven
        ? { maxTries: num(o.daMaxTries!, '--da-max-tries'), recoveryTime: num(o.daRecovery!, '--da-recovery'), lockoutRecovery: num(o.daLockoutRecovery!, '--da-lockout-recovery') }
        : undefined;
      await withTpm(globals(), o, async (c) => {
        const pem = await readText(o.oemPolicyKey, 'OEM policy key');
        const hierarchyEscrowKeyPem = o.hierarchyEscrowKey ? await readText(o.hierarchyEscrowKey, 'hierarchy escrow key') : undefined;
        const r = await provisionTpm(c, { oemPolicyKeyPem: pem, policyRef: o.policyRef ? new TextEncoder().encode(o.policyRef) : undefined, dictionaryAttack, hierarchyEscrowKeyPem });
        if (o.export) await writeExport(o.export, backendExport(r.record, r.hierarchyEscrow));
        c.log.info({ created: r.created }, r.created.length ? `provisioned: ${r.created.join(', ')}` : 'already provisioned, nothing changed');
        print({ created: r.created, storageKeyName: r.record.storageKey.name, policies: r.record.policies, nvCounter: r.record.nvCounter,
          oemProvisioningKey: r.record.oemProvisioningKey ? 'present' : 'pending', runtimeSecret: r.record.runtimeSecret ? 'present' : 'pending' });
      });
    });

  addTpmOptions(tpm.command('export'))
    .description('write the backend export of a provisioned TPM')
    .requiredOption('--out <dir>', 'output directory')
    .action(async (o: TpmCommandOptions & { out: string }) => {
      await withTpm(globals(), o, async (c) => {
        const keys = await KeyService.open({ ...c, log: c.rt.log('KEYS') });
        await writeExport(o.out, backendExport(keys.provisioning));
      });
    });

  addTpmOptions(tpm.command('status'))
    .description('provisioning, booted release, counter, contract keys')
    .action(async (o: TpmCommandOptions) => {
      await withTpm(globals(), o, async (c) => {
        // KeyService.status() reports an unreachable TPM as a missing counter value; a status command must not
        // exit 0 then. One cheap command first turns that into TPM_UNREACHABLE (or the TPM's own error).
        await c.tpm.dictionaryAttackState();
        print(await (await KeyService.open({ ...c, log: c.rt.log('KEYS') })).status());
      });
    });

  tpm.command('sim')
    .description('bench without a TPM HAT: run swtpm (a real TPM 2.0 implementation) and print its TCTI until stopped')
    .requiredOption('--state-dir <dir>', 'absolute swtpm state dir (persistent NV, like the TPM chip)')
    .option('--port <n>', 'server port (control = port+1); default: free pair')
    .option('--abrmd', 'put tpm2-abrmd in front (a resource manager, as /dev/tpmrm0 on the device) on a private D-Bus bus; prints the tabrmd TCTI and a DBUS_SESSION_BUS_ADDRESS= line')
    .action(async (o: { stateDir: string; port?: string; abrmd?: boolean }) => {
      const port = o.port === undefined ? undefined : parseSwtpmPort(o.port);
      const stateDir = resolve(o.stateDir);
      const sim = await Swtpm.start({ stateDir, port });
      const { Abrmd } = await import('../../hal/tpm/abrmd.ts');
      const rm = o.abrmd ? await Abrmd.start({ backendTcti: sim.tcti, dir: `${stateDir}.abrmd` }).catch(async (err: unknown) => {
        await sim.stop();
        throw err;
      }) : undefined;
      // Handlers before the TCTI line: a script may stop us as soon as it has read it.
      const stopped = new Promise<void>((done) => {
        for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => done());
      });
      process.stdout.write(rm ? `${rm.tcti}\nDBUS_SESSION_BUS_ADDRESS=${rm.env.DBUS_SESSION_BUS_ADDRESS}\n` : `${sim.tcti}\n`);
      await stopped;
      await rm?.stop();
      await sim.stop();
    });

  addTpmOptions(tpm.command('import-contract-key'))
    .description('import a contract key: --blob (direct import from the MO) or --plaintext (compatibility path; the file is destroyed)')
    .option('--blob <file>', 'evcc-tpm-import/1 blob from `evcc mo wrap-contract-key`')
    .option('--plaintext <file>', 'PEM private key (ISO 15118-2 CertificateInstallationRes path); overwritten and deleted after import')
    .action(async (o: TpmCommandOptions & { blob?: string; plaintext?: string }) => {
      if (!o.blob === !o.plaintext) throw new EvccError('CONFIG_INVALID', 'give exactly one of --blob or --plaintext');
      const blob = o.blob ? await readInput(o.blob, 'import blob') : undefined;
      const pem = o.plaintext ? await readInput(o.plaintext, 'contract key') : undefined;
      try {
        await withTpm(globals(), o, async (c) => {
          const keys = await KeyService.open({ ...c, log: c.rt.log('KEYS') });
          try {
            let r;
            if (blob) {
              r = await keys.importContractKey(blob);
            } else if (pem) {
              try {
                r = await keys.importPlaintextContractKey(pem);
              } finally {
                await destroyFile(o.plaintext!);
              }
            }
            print(r);
          } finally {
            await keys.close();
          }
        });
      } finally {
        pem?.fill(0); // also when the TPM could not be opened
      }
    });

  addTpmOptions(tpm.command('sign'))
    .description('sign a SHA-256 digest with the contract or OEM provisioning key; prints raw r||s (base64)')
    .addOption(new Option('--key <which>', 'key').choices(['contract', 'provisioning']).default('contract'))
    .option('--digest <hex>', '32-byte digest, hex')
    .option('--in <file>', 'file whose SHA-256 is signed')
    .option('--out <file>', 'write the 64-byte raw signature here')
    .action(async (o: TpmCommandOptions & { key: 'contract' | 'provisioning'; digest?: string; in?: string; out?: string }) => {
      if (!o.digest === !o.in) throw new EvccError('CONFIG_INVALID', 'give exactly one of --digest or --in');
      if (o.digest !== undefined && !/^[0-9a-f]{64}$/i.test(o.digest)) throw new EvccError('CONFIG_INVALID', '--digest must be 32 bytes as 64 hex digits');
      const digest = o.digest
        ? new Uint8Array(Buffer.from(o.digest, 'hex'))
        : new Uint8Array(createHash('sha256').update(await readInput(o.in!, 'input file')).digest());
      await withTpm(globals(), o, async (c) => {
        const keys = await KeyService.open({ ...c, log: c.rt.log('KEYS') });
        try {
          const sig = o.key === 'contract' ? await keys.signWithContractKey(digest) : await keys.signWithProvisioningKey(digest);
          if (o.out) await writeFile(o.out, sig);
          print({ key: o.key, digest: Buffer.from(digest).toString('hex'), signature: Buffer.from(sig).toString('base64') });
        } finally {
          await keys.close();
        }
      });
    });
};
