import { appendFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Option } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { pemToDerList } from '../../firmware/pki/cert.ts';
import { UnknownRootError } from '../../firmware/pki/validate.ts';
import { discoverSecc } from '../../firmware/sdp/client.ts';
import { SdpSettings } from '../../firmware/sdp/settings.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { connectTls } from '../../firmware/tls/connect.ts';
import { TLS_PROFILES, type TlsProfileName } from '../../firmware/tls/profiles.ts';
import { OsInterfaces } from '../../hal/net/os-interfaces.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { NodeUdp6 } from '../../hal/net/udp6.ts';
import { createRuntime } from '../runtime.ts';
import type { CommandModule } from './index.ts';

const print = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v)}\n`);

/** `evcc sdp` (find the SECC) and `evcc tls-probe` (SDP or a given address, then TLS with our validation): bench tools. */
export const registerSdpTools: CommandModule = (program, globals) => {
  program.command('sdp')
    .description('SECC discovery: SECCDiscoveryReq to ff02::1 port 15118 on IF (250 ms per try, up to 50 tries)')
    .requiredOption('--iface <if>', 'interface of the PLC link')
    .addOption(new Option('--security <policy>', 'tls-required (PnC), tls-preferred (EIM), no-tls').choices(['tls-required', 'tls-preferred', 'no-tls']))
    .action(async (o: { iface: string; security?: string }) => {
      const rt = await createRuntime(globals());
      try {
        const raw = { ...((rt.rawConfig.sdp as object | undefined) ?? {}), ...(o.security ? { security: o.security } : {}) };
        const settings = parseSettings(SdpSettings, raw, 'sdp');
        const localAddress = await new OsInterfaces().waitLinkLocal(o.iface, 5000);
        print(await discoverSecc({ udp: new NodeUdp6(), clock: rt.clock, log: rt.log('SDP') }, { iface: o.iface, localAddress, settings }));
      } finally {
        await rt.close();
      }
    });

  program.command('tls-probe')
    .description('open TLS to a SECC (found by SDP, or --address/--port) and validate its chain with our ISO 15118-2 path validation')
    .requiredOption('--iface <if>', 'interface of the PLC link')
    .requiredOption('--root <pem...>', 'installed V2G roots (PEM files)')
    .addOption(new Option('--profile <p>', 'TLS profile').choices(Object.keys(TLS_PROFILES)).default('iso2-tls12'))
    .option('--address <ipv6>', 'SECC address (skip SDP)')
    .option('--port <n>', 'SECC port (with --address)')
    .option('--vehicle-cert <pem>', 'vehicle certificate chain (TLS 1.3 mutual)')
    .option('--vehicle-key <pem>', 'vehicle PKCS#8 key (TLS 1.3 mutual; a software key: Node cannot use a TPM key for TLS)')
    .option('--keylog <file>', 'append SSLKEYLOGFILE lines (bench builds only: lets Wireshark decrypt the session)')
    .action(async (o: { iface: string; root: string[]; profile: TlsProfileName; address?: string; port?: string; vehicleCert?: string; vehicleKey?: string; keylog?: string }) => {
      const rt = await createRuntime(globals());
      try {
        const anchors = (await Promise.all(o.root.map((f) => readFile(f, 'utf8')))).flatMap(pemToDerList);
        if (anchors.length === 0) throw new EvccError('CONFIG_INVALID', 'no certificate in --root files');
        let secc: { address: string; port: number; iface: string };
        if (o.address) {
          if (!o.port) throw new EvccError('CONFIG_INVALID', '--address needs --port');
          secc = { address: o.address, port: Number(o.port), iface: o.iface };
        } else {
          const localAddress = await new OsInterfaces().waitLinkLocal(o.iface, 5000);
          secc = await discoverSecc({ udp: new NodeUdp6(), clock: rt.clock, log: rt.log('SDP') }, {
            iface: o.iface, localAddress, settings: parseSettings(SdpSettings, rt.rawConfig.sdp ?? {}, 'sdp'),
          });
        }
        const vehicle = o.vehicleCert && o.vehicleKey ? { certChainPem: await readFile(o.vehicleCert, 'utf8'), keyPem: await readFile(o.vehicleKey, 'utf8') } : undefined;
        if (o.keylog) rt.log('TLS').warn({ file: o.keylog }, 'TLS key log enabled: session secrets are written to disk (bench only)');
        const keylog = o.keylog;
        try {
          const ch = await connectTls({ connector: new NodeTlsConnector(), trust: { anchors: () => anchors }, log: rt.log('TLS') }, {
            secc, profile: o.profile, ...(vehicle ? { vehicle } : {}),
            ...(keylog ? { keyLog: (line: string) => appendFileSync(keylog, line.endsWith('\n') ? line : `${line}\n`, { mode: 0o600 }) } : {}),
          });
          print({ protocol: ch.protocol, cipher: ch.cipher, anchor: ch.path.anchor.subject, viaCross: ch.path.viaCrossCertificate, handshakeMs: ch.handshakeMs, secc });
          await ch.stream.close();
        } catch (err) {
          if (err instanceof UnknownRootError) print({ code: err.code, issuerDn: err.issuerDn, authorityKeyId: err.authorityKeyId, topSubjectDn: err.topSubjectDn });
          throw err;
        }
      } finally {
        await rt.close();
      }
    });
};
