import type { Command } from 'commander';
import type { GlobalOptions } from '../runtime.ts';

/** A subcommand module: adds itself to the program. Global options are read lazily at action time. */
export type CommandModule = (program: Command, globals: () => GlobalOptions) => void;

interface CommandEntry {
  /** Top-level command names the module registers. */
  names: readonly string[];
  load: () => Promise<CommandModule>;
}

/**
 * One entry per command module; each module is the composition root of its subcommand. Modules are imported only
 * when their command runs (all of them for `--help`), so starting `evcc slac` does not load the TPM, EXI or MQTT
 * stacks — process start-up stays short on the Pi and in the integration tests that spawn the CLI.
 */
const COMMANDS: readonly CommandEntry[] = [
  { names: ['bench-session'], load: async () => (await import('./bench-session.ts')).registerBenchSession },
  { names: ['slac'], load: async () => (await import('./slac.ts')).registerSlac },
  { names: ['sim'], load: async () => (await import('./sim-slac.ts')).registerSimSlac },
  { names: ['tpm'], load: async () => (await import('./tpm.ts')).registerTpm },
  { names: ['boot'], load: async () => (await import('./boot.ts')).registerBoot },
  { names: ['oem'], load: async () => (await import('./oem.ts')).registerOem },
  { names: ['mo'], load: async () => (await import('./mo.ts')).registerMo },
  { names: ['bundle'], load: async () => (await import('./bundle.ts')).registerBundle },
  { names: ['pki'], load: async () => (await import('./pki.ts')).registerPki },
  { names: ['sim-secc', 'sim'], load: async () => (await import('./sim-secc.ts')).registerSimSecc },
  { names: ['sdp', 'tls-probe'], load: async () => (await import('./sdp.ts')).registerSdpTools },
  { names: ['oem-backend'], load: async () => (await import('./oem-backend.ts')).registerOemBackend },
  { names: ['ota'], load: async () => (await import('./ota.ts')).registerOta },
  { names: ['exi'], load: async () => (await import('./exi.ts')).registerExi },
  { names: ['charge'], load: async () => (await import('./charge.ts')).registerCharge },
  { names: ['run'], load: async () => (await import('./run.ts')).registerRun },
  { names: ['session'], load: async () => (await import('./session.ts')).registerSession },
];

/** Global options that take a value (so the value is not mistaken for the command name). */
const VALUE_OPTIONS = new Set(['-c', '--config', '--log-level', '--log-json']);

/** The first positional argument: the command name, or undefined (help, version, no command). */
export function commandNameOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (VALUE_OPTIONS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return a;
  }
  return undefined;
}

export async function registerCommands(program: Command, globals: () => GlobalOptions, argv: readonly string[]): Promise<void> {
  const name = commandNameOf(argv);
  const wanted = COMMANDS.filter((c) => name !== undefined && c.names.includes(name));
  for (const entry of wanted.length ? wanted : COMMANDS) (await entry.load())(program, globals);
}
