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
 * when their command runs (none for the top-level `--help`), so starting `evcc slac` does not load the TPM, EXI or MQTT
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
  { names: ['log'], load: async () => (await import('./log.ts')).registerLog },
];

/**
 * The command list of `evcc --help`, in help order: top-level help registers these names with their summaries and
 * loads no command module (loading all of them took ~1.5 s and ~110 MB here). Each summary is the module's own
 * description (index.test.ts checks that they agree).
 */
export const COMMAND_SUMMARIES: Readonly<Record<string, string>> = {
  'bench-session': 'one whole simulated charging session through the product path (vehicle TPM on swtpm, pilot, SLAC, SDP, TLS + OTA root-CA fetch, ISO 15118-2 PnC or DIN, charge loop to the target SoC, SessionStop, A/B commit) — no hardware, no root',
  slac: 'run ISO 15118-3 SLAC (EV side) on a PLC modem interface and report the match',
  sim: 'simulators (bench without hardware)',
  tpm: 'TPM 2.0 key service: factory provisioning, contract keys, signing',
  boot: 'boot check: replay the initramfs measurement log against PCR 14, verify the installed bundle (RAUC keyring) and that its rootfs image is what booted, check the anti-rollback counter, cache the release ticket',
  oem: 'OEM backend tools (offline)',
  mo: 'mobility operator tools (offline)',
  bundle: 'update bundles (RAUC)',
  pki: 'ISO 15118 PKI tools: test PKI generation and chain checks; the vehicle\'s V2G root store',
  'sim-secc': 'simulated SECC: SDP responder on port 15118, TLS 1.2/1.3 or plain TCP, SupportedAppProtocol, ISO 15118-2 / DIN 70121 session per --scenario',
  sdp: 'SECC discovery: SECCDiscoveryReq to ff02::1 port 15118 on IF (250 ms per try, up to 50 tries)',
  'tls-probe': 'open TLS to a SECC (found by SDP, or --address/--port) and validate its chain with our ISO 15118-2 path validation; prints the channel as JSON, or the typed failure ({code, message, details}) and exits 1',
  'oem-backend': 'OEM backend reference service: root-CA answers over MQTT, update campaigns and the bundle server',
  ota: 'OEM backend link: V2G root fetch and sync (Solution C), backend key',
  exi: 'schema-informed EXI codec (appHandshake, ISO 15118-2, DIN 70121, ISO 15118-20, xmldsig)',
  charge: 'one charging session on real links, starting now (plugged in): SLAC, SDP, TLS (+ OEM root fetch) or TCP, SupportedAppProtocol, ISO 15118-2 or DIN SPEC 70121 to SessionStop',
  run: 'the EVCC service: OEM link, key service, and one session per plug-in reported by the pilot board, until SIGTERM',
  session: 'per-session capture folders: show a timeline, replay the charger as a simulator scenario',
  log: 'the signed security log: verify a log file with the log key\'s public part',
};

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

/** The command a run needs: the named one, or the one `help NAME` asks about. */
function wantedCommandOf(argv: readonly string[]): string | undefined {
  const name = commandNameOf(argv);
  if (name !== 'help') return name;
  const i = argv.indexOf('help');
  return commandNameOf(argv.slice(i + 1));
}

export async function registerCommands(program: Command, globals: () => GlobalOptions, argv: readonly string[]): Promise<void> {
  const name = wantedCommandOf(argv);
  const wanted = COMMANDS.filter((c) => name !== undefined && c.names.includes(name));
  if (wanted.length) {
    for (const entry of wanted) (await entry.load())(program, globals);
    return;
  }
  // No command, or an unknown one: the help (or commander's "unknown command" with it) needs only names and summaries.
  for (const [command, summary] of Object.entries(COMMAND_SUMMARIES)) program.command(command).description(summary);
}

/** Every command module registered (tests: the summaries agree with the modules). */
export async function registerAllCommands(program: Command, globals: () => GlobalOptions): Promise<void> {
  for (const entry of COMMANDS) (await entry.load())(program, globals);
}
