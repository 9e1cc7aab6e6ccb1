/**
 * Simulated SECC (charger side): SDP responder + TLS (or plain TCP) server with V2GTP echo. The start of the
 * charger simulator; the ISO 15118-2 session work grows it into a full SECC.
 *
 * Runs on real sockets (NodeUdp6 + node:tls, e.g. inside a test namespace: `evcc sim-secc`) or in-process on a
 * simulated link (SimIpv6Link: SDP in memory, TLS real on loopback) for the embedded bench without root.
 * Behaviours for tests are declared in options: SDP junk before the answer, silence, a no-TLS answer, any
 * certificate chain, TLS 1.2 / 1.3, optional client authentication.
 */
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { EventEmitter } from 'node:events';
import { randomInt } from 'node:crypto';
import type { Logger } from '../../core/logger.ts';
import { decodeDiscoveryReq, encodeDiscoveryRes } from '../../firmware/sdp/codec.ts';
import { answerSupportedAppProtocolReq } from '../../firmware/session/app-handshake.ts';
import { DYNAMIC_PORT_MIN, SDP_SERVER_PORT } from '../../firmware/sdp/constants.ts';
import { encodeV2gtp, V2gtpReassembler } from '../../firmware/v2gtp/codec.ts';
import { PayloadType } from '../../firmware/v2gtp/constants.ts';
import type { SimIpv6Link } from '../../hal/net/sim-net.ts';
import type { Udp6Socket, Udp6Transport, UdpPeer } from '../../hal/net/types.ts';

export type SimSdpMode = 'normal' | 'junk-first' | 'silent' | 'off';

export interface SimSeccOptions {
  /** UDP transport for SDP (NodeUdp6 in a namespace, or `link.host(iface, address)`). */
  udp: Udp6Transport;
  iface: string;
  /** Address announced in SECCDiscoveryRes (the SECC's link-local address on `iface`). */
  address: string;
  /** 'tls12' | 'tls13' | 'tcp' (plain TCP, announced as no-TLS). */
  transport: 'tls12' | 'tls13' | 'tcp';
  /** PEM chain the SECC presents (leaf first) and its PKCS#8 key; not needed for 'tcp'. */
  certChainPem?: string;
  keyPem?: string;
  /** TLS 1.3: require a client certificate anchored in these roots (PEM). */
  clientCaPem?: string;
  /** TLS 1.3 suites the SECC offers, in preference order (default both AES-GCM suites, 128 first). */
  tls13Ciphers?: string;
  /** Where the server listens: '::' (real link) or '127.0.0.1' (simulated link). */
  listenHost?: string;
  /** Server port (default: a free one from the dynamic range). */
  port?: number;
  sdp?: SimSdpMode;
  /** Announce a Security value different from the transport (e.g. 'none' while serving TLS). */
  announceSecurity?: 'tls' | 'none';
  /** Publish the TCP endpoint on this simulated link (in-process bench). */
  link?: SimIpv6Link;
  log?: Logger;
  /** Protocols the SECC accepts in SupportedAppProtocol (default: ISO 15118-2:2013 and DIN SPEC 70121). */
  appProtocols?: readonly { namespace: string; major: number; minor: number }[];
}

export const SECC_APP_PROTOCOLS = [
  { namespace: 'urn:iso:15118:2:2013:MsgDef', major: 2, minor: 0 },
  { namespace: 'urn:din:70121:2012:MsgDef', major: 2, minor: 0 },
] as const;

/** The SECC's SupportedAppProtocolRes for an EXI payload that is a SupportedAppProtocolReq; undefined otherwise. */
function answerAppHandshake(exi: Uint8Array, supported: readonly { namespace: string; major: number; minor: number }[]): Uint8Array | undefined {
  try {
    return answerSupportedAppProtocolReq(exi, supported);
  } catch {
    return undefined;
  }
}

export interface SimConnectionReport {
  remote: string;
  protocol?: string;
  cipher?: string;
  clientCertSubject?: string;
  /** Application bytes received from the EV (after the handshake). */
  appBytes: number;
  /** V2GTP messages received (answered or echoed). */
  v2gtpMessages: number;
  /** A SupportedAppProtocolReq was received and answered. */
  appProtocolAnswered?: boolean;
}

export interface SimSecc {
  readonly port: number;
  readonly address: string;
  /** SDP requests received (valid ones). */
  readonly sdpRequests: number;
  /** TCP connections accepted (a TLS handshake that the EV abandons has one but no `connections` entry). */
  readonly tcpConnections: number;
  readonly connections: SimConnectionReport[];
  /** 'sdp-request' (count, source address), 'connection-closed' (SimConnectionReport), 'tls-error' (message): a connection ended. */
  readonly events: EventEmitter;
  close(): Promise<void>;
}

async function listenInDynamicRange(server: TcpServer | TlsServer, host: string, port?: number): Promise<number> {
  for (let i = 0; ; i++) {
    const p = port ?? randomInt(DYNAMIC_PORT_MIN, 65535);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port: p, exclusive: true }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return p;
    } catch (err) {
      if (port !== undefined || i >= 30) throw err;
    }
  }
}

export async function startSimSecc(o: SimSeccOptions): Promise<SimSecc> {
  const events = new EventEmitter();
  const connections: SimConnectionReport[] = [];
  const sockets = new Set<Socket>();
  let sdpRequests = 0;
  let tcpConnections = 0;
  const log = o.log;

  const serve = (sock: Socket | TLSSocket, tlsInfo?: { protocol?: string; cipher?: string; clientCertSubject?: string }): void => {
    sockets.add(sock);
    const report: SimConnectionReport = { remote: sock.remoteAddress ?? '?', appBytes: 0, v2gtpMessages: 0, ...tlsInfo };
    connections.push(report);
    const reasm = new V2gtpReassembler();
    sock.on('data', (chunk: Buffer) => {
      report.appBytes += chunk.length;
      try {
        for (const m of reasm.push(chunk)) {
          report.v2gtpMessages++;
          // SupportedAppProtocol is answered for real; anything else is echoed until the ISO 15118-2 SECC session
          // state machine lands here.
          const answer = m.payloadType === PayloadType.EXI ? answerAppHandshake(m.payload, o.appProtocols ?? SECC_APP_PROTOCOLS) : undefined;
          if (answer) report.appProtocolAnswered = true;
          sock.write(encodeV2gtp(m.payloadType, answer ?? m.payload));
        }
      } catch (err) {
        log?.warn({ err }, 'V2GTP framing error from EV: closing');
        sock.destroy();
      }
    });
    sock.on('error', () => undefined);
    sock.once('close', () => {
      sockets.delete(sock);
      events.emit('connection-closed', report);
    });
  };

  let server: TcpServer | TlsServer;
  if (o.transport === 'tcp') {
    server = createTcpServer((s) => serve(s));
  } else {
    const tls13 = o.transport === 'tls13';
    server = createTlsServer({
      cert: o.certChainPem,
      key: o.keyPem,
      minVersion: tls13 ? 'TLSv1.3' : 'TLSv1.2',
      maxVersion: tls13 ? 'TLSv1.3' : 'TLSv1.2',
      ciphers: tls13 ? `${o.tls13Ciphers ?? 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384'}:ECDHE-ECDSA-AES128-SHA256` : 'ECDHE-ECDSA-AES128-SHA256',
      ecdhCurve: 'prime256v1:secp384r1:secp521r1',
      ...(o.clientCaPem ? { requestCert: true, rejectUnauthorized: true, ca: o.clientCaPem } : {}),
    });
    server.on('secureConnection', (s: TLSSocket) => {
      const peer = s.getPeerCertificate();
      serve(s, {
        protocol: s.getProtocol() ?? undefined,
        cipher: s.getCipher().name,
        ...(peer && peer.subject ? { clientCertSubject: peer.subject.CN } : {}),
      } as { protocol?: string; cipher?: string; clientCertSubject?: string });
    });
    server.on('tlsClientError', (err) => {
      events.emit('tls-error', err.message);
      log?.info({ reason: err.message }, 'TLS handshake with EV failed');
    });
  }
  server.on('connection', () => {
    tcpConnections++;
  });
  const listenHost = o.listenHost ?? '::';
  const port = await listenInDynamicRange(server, listenHost, o.port);
  o.link?.publishTcp(o.address, port, { host: listenHost === '::' ? '::1' : listenHost, port });

  const announce = o.announceSecurity ?? (o.transport === 'tcp' ? 'none' : 'tls');
  const sdpMode = o.sdp ?? 'normal';
  let udp: Udp6Socket | undefined;
  if (sdpMode !== 'off') {
    udp = await o.udp.open({ iface: o.iface, port: SDP_SERVER_PORT });
    udp.onMessage((data: Uint8Array, from: UdpPeer) => {
      try {
        decodeDiscoveryReq(data);
      } catch {
        return; // not an SDP request: ignore
      }
      sdpRequests++;
      events.emit('sdp-request', sdpRequests, from.address);
      if (sdpMode === 'silent') return;
      const answer = encodeDiscoveryRes({ address: o.address, port, security: announce, transport: 'tcp' });
      const to: UdpPeer = { ...from, iface: from.iface ?? o.iface };
      const send = (d: Uint8Array): void => void udp!.send(d, to).catch(() => undefined);
      if (sdpMode === 'junk-first') {
        send(Uint8Array.from([0x01, 0xfe, 0x90])); // malformed (truncated header)
        send(answer.subarray(0, answer.length - 1)); // wrong length
        send(encodeV2gtp(PayloadType.SDP_REQUEST, answer.subarray(8))); // wrong payload type
        const badSecurity = Uint8Array.from(answer);
        badSecurity[26] = 0x42;
        send(badSecurity); // bad field
      }
      send(answer);
    });
  }
  log?.info({ address: o.address, port, transport: o.transport, sdp: sdpMode }, `SECC sim listening on [${o.address}]:${port}`);

  return {
    port,
    address: o.address,
    get sdpRequests() {
      return sdpRequests;
    },
    get tcpConnections() {
      return tcpConnections;
    },
    connections,
    events,
    async close() {
      await udp?.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
