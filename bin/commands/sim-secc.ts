import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { pemToDerList } from '../../firmware/pki/cert.ts';
import { OsInterfaces } from '../../hal/net/os-interfaces.ts';
import { NodeUdp6 } from '../../hal/net/udp6.ts';
import { listScenarios, loadScenario } from '../../sim/secc/scenario.ts';
import { startSimSecc, type SimRequestEvent, type SimSdpMode } from '../../sim/secc/secc.ts';
import { createRuntime, type GlobalOptions } from '../runtime.ts';
import { readChainList, type ChainFile } from './pki.ts';
import type { CommandModule } from './index.ts';

interface SimSeccCli {
  iface: string;
  transport: 'tls12' | 'tls13' | 'tcp';
  pki?: string;
  chain?: string;
  cert?: string;
  key?: string;
  clientAuth?: boolean;
  clientCa?: string;
  sdp: SimSdpMode;
  announce?: 'tls' | 'none';
  port?: string;
  tls13Ciphers?: string;
  scenario?: string;
  contractRoots?: string[];
}

/** Scenario chain names → the chain names `evcc pki init` writes. */
const CHAIN_OF_SCENARIO = { 'pki-a': 'secc-a', 'pki-b': 'secc-b', 'pki-b-cross': 'secc-b-via-cross' } as const;
/** Contract-chain anchors taken from a `--pki` dir when `--contract-roots` is not given. */
const PKI_CONTRACT_ROOTS = ['mo/mo-root.pem', 'pki-a/v2g-root.pem', 'pki-b/v2g-root.pem'];

async function chainFromPki(dir: string, name: string): Promise<ChainFile> {
  const all = [...(await readChainList(dir))];
  try {
    all.push(...(JSON.parse(await readFile(join(dir, 'negative/negative.json'), 'utf8')) as ChainFile[]));
  } catch {
    // no negative samples written
  }
  const c = all.find((x) => x.name === name);
  if (!c) throw new EvccError('CONFIG_INVALID', `chain ${name} not in ${dir} (have: ${all.map((x) => x.name).join(', ')})`);
  return c;
}

async function contractRootsOf(o: SimSeccCli): Promise<Uint8Array[]> {
  const files = o.contractRoots ?? (o.pki ? PKI_CONTRACT_ROOTS.map((f) => join(o.pki!, f)) : []);
  const roots: Uint8Array[] = [];
  for (const f of files) {
    try {
      roots.push(...pemToDerList(await readFile(f, 'utf8')));
    } catch (err) {
      if (o.contractRoots) throw new EvccError('CONFIG_INVALID', `cannot read contract root ${f}`, { file: f }, { cause: err });
    }
  }
  return roots;
}

function addOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--iface <if>', 'interface of the PLC link')
    .option('--scenario <name|path>', `declared charger behaviour (sim/secc/scenarios: ${listScenarios().join(', ')}; or a JSON file)`)
    .addOption(new Option('--transport <t>', 'server transport (default: the scenario\'s, else tls12)').choices(['tls12', 'tls13', 'tcp']).default('tls12'))
    .option('--pki <dir>', 'test PKI dir from `evcc pki init` (with --chain)')
    .option('--chain <name>', 'chain name from chains.json / negative.json, e.g. secc-a, secc-b, secc-b-via-cross (default: the scenario\'s)', 'secc-a')
    .option('--cert <pem>', 'certificate chain PEM (leaf first), instead of --pki')
    .option('--key <pem>', 'PKCS#8 key of the leaf, instead of --pki')
    .option('--client-auth', 'TLS 1.3: require a vehicle certificate (anchored in the OEM root of --pki, or --client-ca)')
    .option('--client-ca <pem>', 'roots for the vehicle certificate')
    .option('--contract-roots <pem...>', 'anchors for PnC contract chains (default with --pki: its MO root and V2G roots)')
    .addOption(new Option('--sdp <mode>', 'SDP behaviour (default: the scenario\'s)').choices(['normal', 'junk-first', 'silent', 'off']).default('normal'))
    .addOption(new Option('--announce <security>', 'Security value in SECCDiscoveryRes (default: by transport)').choices(['tls', 'none']))
    .option('--port <n>', 'server port (default: free port in 49152-65535)')
    .option('--tls13-ciphers <list>', 'TLS 1.3 suites in preference order');
}

/**
 * `evcc sim-secc` (also `evcc sim secc`): the simulated charger on a real interface — SDP responder, TLS/TCP server,
 * SupportedAppProtocol and the ISO 15118-2 / DIN SPEC 70121 session as the scenario declares it. Prints one JSON line
 * per event on stdout (`ready`, `sdp-request`, `app-protocol`, `request`, `connection-closed`, `tls-error`) so tests
 * and benches can follow it; the SIM log lines go to stderr; stops on SIGTERM/SIGINT.
 */
async function runSimSecc(o: SimSeccCli, cmd: Command, globals: () => GlobalOptions): Promise<void> {
  const rt = await createRuntime(globals());
  const log = rt.log('SIM');
  const emit = (v: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(v)}\n`);
  const explicit = (name: string): boolean => cmd.getOptionValueSource(name) !== 'default' && cmd.getOptionValueSource(name) !== undefined;
  try {
    const scenario = o.scenario ? loadScenario(o.scenario) : undefined;
    const transport = scenario && !explicit('transport') ? scenario.transport : o.transport;
    const chain = scenario && !explicit('chain') ? CHAIN_OF_SCENARIO[scenario.chain] : (o.chain ?? 'secc-a');
    const sdp = scenario && !explicit('sdp') ? scenario.sdp.mode : o.sdp;
    const clientAuth = o.clientAuth ?? scenario?.clientAuth ?? false;
    let certChainPem: string | undefined;
    let keyPem: string | undefined;
    let clientCaPem: string | undefined;
    if (transport !== 'tcp') {
      if (o.cert && o.key) {
        certChainPem = await readFile(o.cert, 'utf8');
        keyPem = await readFile(o.key, 'utf8');
      } else if (o.pki) {
        const c = await chainFromPki(o.pki, chain);
        certChainPem = await readFile(join(o.pki, c.chain), 'utf8');
        keyPem = await readFile(join(o.pki, c.leafKey), 'utf8');
      } else {
        throw new EvccError('CONFIG_INVALID', 'sim-secc needs --pki DIR [--chain NAME] or --cert and --key');
      }
      if (o.clientCa) clientCaPem = await readFile(o.clientCa, 'utf8');
      else if (clientAuth && o.pki) clientCaPem = await readFile(join(o.pki, 'oem/oem-root.pem'), 'utf8');
      else if (clientAuth) throw new EvccError('CONFIG_INVALID', '--client-auth needs --pki or --client-ca');
    }
    const contractRoots = await contractRootsOf(o);
    const address = await new OsInterfaces().waitLinkLocal(o.iface, 10_000);
    const secc = await startSimSecc({
      udp: new NodeUdp6(), iface: o.iface, address, transport, sdp, log, contractRoots,
      ...(scenario ? { scenario } : {}),
      ...(certChainPem ? { certChainPem } : {}), ...(keyPem ? { keyPem } : {}), ...(clientCaPem ? { clientCaPem } : {}),
      ...(o.announce ? { announceSecurity: o.announce } : {}),
      ...(o.port ? { port: Number(o.port) } : {}),
      ...(o.tls13Ciphers ? { tls13Ciphers: o.tls13Ciphers } : {}),
    });
    secc.events.on('sdp-request', (n: number, from: string) => emit({ event: 'sdp-request', n, from }));
    secc.events.on('app-protocol', (e: Record<string, unknown>) => emit({ event: 'app-protocol', ...e }));
    secc.events.on('v2g-request', (e: SimRequestEvent) => emit({ event: 'request', connection: e.connection, protocol: e.protocol, ...e.record }));
    secc.events.on('connection-closed', (r: unknown) => emit({ event: 'connection-closed', ...(r as object), tcpConnections: secc.tcpConnections }));
    secc.events.on('tls-error', (m: string) => emit({ event: 'tls-error', message: m, tcpConnections: secc.tcpConnections }));
    emit({ event: 'ready', address, port: secc.port, iface: o.iface, transport, scenario: secc.scenario.name });
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    await secc.close();
  } finally {
    await rt.close();
  }
}

function simCommand(program: Command): Command {
  // `sim` is shared with the SLAC simulators' module: reuse it when that one registered it first.
  return program.commands.find((c) => c.name() === 'sim') ?? program.command('sim').description('simulators (bench without hardware)');
}

export const registerSimSecc: CommandModule = (program, globals) => {
  const description = 'simulated SECC: SDP responder on port 15118, TLS 1.2/1.3 or plain TCP, SupportedAppProtocol, ISO 15118-2 / DIN 70121 session per --scenario';
  addOptions(program.command('sim-secc').description(description))
    .action((o: SimSeccCli, cmd: Command) => runSimSecc(o, cmd, globals));
  addOptions(simCommand(program).command('secc').description(description))
    .action((o: SimSeccCli, cmd: Command) => runSimSecc(o, cmd, globals));
};
