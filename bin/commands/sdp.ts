import { appendFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Option } from 'commander';
import { EvccError, isEvccError } from '../../core/errors.ts';
import { CaptureSettings } from '../../firmware/capture/settings.ts';
import { pemToDerList } from '../../firmware/pki/cert.ts';
import { UnknownRootError } from '../../firmware/pki/validate.ts';
import { discoverSecc } from '../../firmware/sdp/client.ts';
import { SdpSettings } from '../../firmware/sdp/settings.ts';
import { parseSettings } from '../../firmware/settings.ts';
import { connectTls } from '../../firmware/tls/connect.ts';
import type { TlsErrorCode } from '../../firmware/tls/errors.ts';
import { TLS_PROFILES, type TlsProfileName } from '../../firmware/tls/profiles.ts';
import { TlsSettings } from '../../firmware/tls/settings.ts';
import { OsInterfaces } from '../../hal/net/os-interfaces.ts';
import { NodeTlsConnector } from '../../hal/net/tls-connector.ts';
import { NodeUdp6 } from '../../hal/net/udp6.ts';
import { createRuntime } from '../runtime.ts';
import { decideKeyLog } from '../capture-policy.ts';
import type { CommandModule } from './index.ts';

const print = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v)}\n`);

/** A file the operator named: unreadable is a typed CONFIG_INVALID (exit 1), not an internal error. */
async function readNamed(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', `cannot read ${what} ${path}: ${(err as Error).message}`, { path }, { cause: err });
  }
}

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
    .description('open TLS to a SECC (found by SDP, or --address/--port) and validate its chain with our ISO 15118-2 path validation; '
      + 'prints the channel as JSON, or the typed failure ({code, message, details}) and exits 1')
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
        // The same key-log policy as a session's (CAPTURE_KEYLOG_REFUSED for a production config), decided before
        // any connection: a probe is no side door around it.
        const keylog = o.keylog && decideKeyLog(rt, parseSettings(CaptureSettings, rt.rawConfig.capture ?? {}, 'capture'), ['tls-probe --keylog']).enabled ? o.keylog : undefined;
        const tlsSettings = parseSettings(TlsSettings, rt.rawConfig.tls ?? {}, 'tls');
        const anchors = (await Promise.all(o.root.map((f) => readNamed(f, '--root')))).flatMap(pemToDerList);
        if (anchors.length === 0) throw new EvccError('CONFIG_INVALID', 'no certificate in --root files');
        let secc: { address: string; port: number; iface: string };
        if (o.address) {
          const port = Number(o.port);
          if (!o.port || !Number.isInteger(port) || port < 1 || port > 65535) throw new EvccError('CONFIG_INVALID', '--address needs --port 1..65535');
          secc = { address: o.address, port, iface: o.iface };
        } else {
          const localAddress = await new OsInterfaces().waitLinkLocal(o.iface, 5000);
          const found = await discoverSecc({ udp: new NodeUdp6(), clock: rt.clock, log: rt.log('SDP') }, {
            iface: o.iface, localAddress, settings: parseSettings(SdpSettings, rt.rawConfig.sdp ?? {}, 'sdp'),
          });
          secc = { address: found.address, port: found.port, iface: found.iface };
          if (found.security !== 'tls') {
            const err = new EvccError<TlsErrorCode>('TLS_NOT_OFFERED', `SECC [${found.address}]:${found.port} answered SDP with "no TLS" (plain TCP session: DIN 70121 / ISO-2 EIM)`, { ...secc });
            print({ code: err.code, message: err.message, details: err.details, secc });
            throw err;
          }
        }
        const vehicle = o.vehicleCert && o.vehicleKey
          ? { certChainPem: await readNamed(o.vehicleCert, '--vehicle-cert'), keyPem: await readNamed(o.vehicleKey, '--vehicle-key') }
          : undefined;
        try {
          const ch = await connectTls({ connector: new NodeTlsConnector(), trust: { anchors: () => anchors }, log: rt.log('TLS') }, {
            secc, profile: o.profile, ...(vehicle ? { vehicle } : {}),
            timeoutMs: tlsSettings.handshakeTimeoutMs, clientAuthVerdictMs: tlsSettings.clientAuthVerdictMs,
            ...(keylog ? { keyLog: (line: string) => appendFileSync(keylog, line.endsWith('\n') ? line : `${line}\n`, { mode: 0o600 }) } : {}),
          });
          print({ protocol: ch.protocol, cipher: ch.cipher, anchor: ch.path.anchor.subject, viaCross: ch.path.viaCrossCertificate, handshakeMs: ch.handshakeMs, secc });
          await ch.stream.close();
        } catch (err) {
          // The typed failure on stdout; the top level prints `evcc: CODE: message` and exits 1 (no stack trace).
          if (err instanceof UnknownRootError) {
            print({ code: err.code, message: err.message, issuerDn: err.issuerDn, authorityKeyId: err.authorityKeyId, topSubjectDn: err.topSubjectDn, secc });
          } else if (isEvccError(err)) {
            print({ code: err.code, message: err.message, details: err.details, secc });
          } else {
            throw new EvccError('TLS_HANDSHAKE_FAILED', `TLS probe failed: ${err instanceof Error ? err.message : String(err)}`, { ...secc }, { cause: err });
          }
          throw err;
        }
      } finally {
        await rt.close();
      }
    });
};
