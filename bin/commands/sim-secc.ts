import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Option } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { OsInterfaces } from '../../hal/net/os-interfaces.ts';
import { NodeUdp6 } from '../../hal/net/udp6.ts';
import { startSimSecc, type SimSdpMode } from '../../sim/secc/secc.ts';
import { createRuntime } from '../runtime.ts';
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
}

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

/**
 * `evcc sim-secc`: the simulated charger (SDP responder + TLS/TCP server with V2GTP echo) on a real interface.
 * Prints one JSON line per event on stdout (`ready`, `sdp-request`, `connection-closed`, `tls-error`) so tests and
 * benches can follow it; stops on SIGTERM/SIGINT.
 */
export const registerSimSecc: CommandModule = (program, globals) => {
  program.command('sim-secc')
    .description('simulated SECC: SDP responder on port 15118 + TLS 1.2/1.3 (or plain TCP) server with V2GTP echo')
    .requiredOption('--iface <if>', 'interface of the PLC link')
    .addOption(new Option('--transport <t>', 'server transport').choices(['tls12', 'tls13', 'tcp']).default('tls12'))
    .option('--pki <dir>', 'test PKI dir from `evcc pki init` (with --chain)')
    .option('--chain <name>', 'chain name from chains.json / negative.json, e.g. secc-a, secc-b, secc-b-via-cross', 'secc-a')
    .option('--cert <pem>', 'certificate chain PEM (leaf first), instead of --pki')
    .option('--key <pem>', 'PKCS#8 key of the leaf, instead of --pki')
    .option('--client-auth', 'TLS 1.3: require a vehicle certificate (anchored in the OEM root of --pki, or --client-ca)')
    .option('--client-ca <pem>', 'roots for the vehicle certificate')
    .addOption(new Option('--sdp <mode>', 'SDP behaviour').choices(['normal', 'junk-first', 'silent', 'off']).default('normal'))
    .addOption(new Option('--announce <security>', 'Security value in SECCDiscoveryRes (default: by transport)').choices(['tls', 'none']))
    .option('--port <n>', 'server port (default: free port in 49152-65535)')
    .option('--tls13-ciphers <list>', 'TLS 1.3 suites in preference order')
    .action(async (o: SimSeccCli) => {
      const rt = await createRuntime(globals());
      const log = rt.log('SIM');
      const emit = (v: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(v)}\n`);
      try {
        let certChainPem: string | undefined;
        let keyPem: string | undefined;
        let clientCaPem: string | undefined;
        if (o.transport !== 'tcp') {
          if (o.cert && o.key) {
            certChainPem = await readFile(o.cert, 'utf8');
            keyPem = await readFile(o.key, 'utf8');
          } else if (o.pki) {
            const c = await chainFromPki(o.pki, o.chain ?? 'secc-a');
            certChainPem = await readFile(join(o.pki, c.chain), 'utf8');
            keyPem = await readFile(join(o.pki, c.leafKey), 'utf8');
          } else {
            throw new EvccError('CONFIG_INVALID', 'sim-secc needs --pki DIR [--chain NAME] or --cert and --key');
          }
          if (o.clientCa) clientCaPem = await readFile(o.clientCa, 'utf8');
          else if (o.clientAuth && o.pki) clientCaPem = await readFile(join(o.pki, 'oem/oem-root.pem'), 'utf8');
          else if (o.clientAuth) throw new EvccError('CONFIG_INVALID', '--client-auth needs --pki or --client-ca');
        }
        const address = await new OsInterfaces().waitLinkLocal(o.iface, 10_000);
        const secc = await startSimSecc({
          udp: new NodeUdp6(), iface: o.iface, address, transport: o.transport, sdp: o.sdp, log,
          ...(certChainPem ? { certChainPem } : {}), ...(keyPem ? { keyPem } : {}), ...(clientCaPem ? { clientCaPem } : {}),
          ...(o.announce ? { announceSecurity: o.announce } : {}),
          ...(o.port ? { port: Number(o.port) } : {}),
          ...(o.tls13Ciphers ? { tls13Ciphers: o.tls13Ciphers } : {}),
        });
        secc.events.on('sdp-request', (n: number, from: string) => emit({ event: 'sdp-request', n, from }));
        secc.events.on('connection-closed', (r: unknown) => emit({ event: 'connection-closed', ...(r as object), tcpConnections: secc.tcpConnections }));
        secc.events.on('tls-error', (m: string) => emit({ event: 'tls-error', message: m, tcpConnections: secc.tcpConnections }));
        emit({ event: 'ready', address, port: secc.port, iface: o.iface, transport: o.transport });
        await new Promise<void>((resolve) => {
          process.once('SIGTERM', resolve);
          process.once('SIGINT', resolve);
        });
        await secc.close();
      } finally {
        await rt.close();
      }
    });
};
