/**
 * Simulated SECC (charger side): SDP responder + TLS (or plain TCP) server, SupportedAppProtocol, then the
 * ISO 15118-2 or DIN SPEC 70121 session (the sans-I/O handlers of iso2.ts / din.ts, picked by the negotiated
 * SchemaID) on the V2GTP stream. Payloads before SupportedAppProtocol that are not a SupportedAppProtocolReq are
 * echoed (the TLS tests use that to see application data flow).
 *
 * Runs on real sockets (NodeUdp6 + node:tls, e.g. inside a test namespace: `evcc sim-secc`) or in-process on a
 * simulated link (SimIpv6Link: SDP in memory, TLS real on loopback) for the embedded bench without root.
 * Behaviours are declared in a scenario (scenario.ts, `scenarios/*.json`) and in options: SDP junk before the
 * answer, silence, a no-TLS answer, any certificate chain, TLS 1.2 / 1.3, optional client authentication.
 */
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { EventEmitter } from 'node:events';
import { randomInt } from 'node:crypto';
import type { Logger } from '../../core/logger.ts';
import { decodeV2gMessage, encodeV2gMessage, type Din, type Iso2 } from '../../firmware/exi/index.ts';
import { decodeDiscoveryReq, encodeDiscoveryRes } from '../../firmware/sdp/codec.ts';
import { DYNAMIC_PORT_MIN, SDP_SERVER_PORT } from '../../firmware/sdp/constants.ts';
import { encodeV2gtp, V2gtpReassembler, type V2gtpMessage } from '../../firmware/v2gtp/codec.ts';
import { PayloadType } from '../../firmware/v2gtp/constants.ts';
import type { Clock } from '../../hal/clock/types.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import type { SimIpv6Link } from '../../hal/net/sim-net.ts';
import type { Udp6Socket, Udp6Transport, UdpPeer } from '../../hal/net/types.ts';
import { answerAppProtocol, appProtocolsOf, type SeccAppProtocol } from './app-protocol.ts';
import { createDinHandler } from './din.ts';
import { createIso2Handler } from './iso2.ts';
import { defaultScenario, type Scenario } from './scenario.ts';
import {
  powerStageFor, SessionMemory, type CertificateServiceHook, type RequestRecord, type SeccHandler, type SeccHandlerOptions, type SeccProtocol,
} from './session.ts';

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
  /** Protocols the SECC accepts in SupportedAppProtocol (default: the scenario's, else ISO 15118-2:2013 and DIN SPEC 70121). */
  appProtocols?: readonly { namespace: string; major: number; minor: number }[];
  /** Declared charger behaviour (default: a well-behaved DC charger for the transport). Options above override its SDP settings. */
  scenario?: Scenario;
  /** Clock of the session handlers and the power stage (default: the system clock). */
  clock?: Clock;
  /** DER trust anchors for contract certificate chains (PnC): the MO root(s), V2G roots. None: PaymentDetails fails. */
  contractRoots?: readonly Uint8Array[];
  /** CertificateInstallation / CertificateUpdate (the CPS / MO side); unset: FAILED_NoCertificateAvailable. */
  certificateService?: CertificateServiceHook;
  /** Wall time for EVSETimeStamp and certificate validity (default Date.now). */
  wallClock?: () => number;
}

export const SECC_APP_PROTOCOLS = [
  { namespace: 'urn:iso:15118:2:2013:MsgDef', major: 2, minor: 0 },
  { namespace: 'urn:din:70121:2012:MsgDef', major: 2, minor: 0 },
] as const;


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
  /** The V2G protocol negotiated in SupportedAppProtocol. */
  v2g?: SeccProtocol;
  /** The session's SessionID (hex), once SessionSetup assigned it. */
  sessionId?: string;
  /** Every V2G request of the session with its arrival time (clock ms) and answer. */
  requests?: RequestRecord[];
  /** How the SECC ended the connection: an orderly close after a FAILED answer, or a TCP reset (scenario). */
  endedBy?: 'close' | 'reset';
}

/** `v2g-request` event payload: one request as the session handler saw and answered it. */
export interface SimRequestEvent {
  connection: number;
  protocol: SeccProtocol;
  record: RequestRecord;
  request: string;
  response?: string;
}

export interface SimSecc {
  readonly port: number;
  readonly address: string;
  /** SDP requests received (valid ones). */
  readonly sdpRequests: number;
  /** TCP connections accepted (a TLS handshake that the EV abandons has one but no `connections` entry). */
  readonly tcpConnections: number;
  readonly connections: SimConnectionReport[];
  /**
   * 'sdp-request' (count, source address), 'connection-closed' (SimConnectionReport), 'tls-error' (message),
   * 'app-protocol' ({ connection, chosen?, responseCode }), 'v2g-request' (SimRequestEvent).
   */
  readonly events: EventEmitter;
  readonly scenario: Scenario;
  /** Paused sessions (SessionStop Pause) the charger remembers across connections. */
  readonly memory: SessionMemory;
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

  const scenario = o.scenario ?? defaultScenario(o.transport);
  const clock = o.clock ?? new SystemClock();
  const memory = new SessionMemory();
  const powerStage = powerStageFor(scenario, clock);
  const appProtocols: readonly SeccAppProtocol[] = o.appProtocols ?? appProtocolsOf(scenario.protocols.supported);
  const handlerOptions: SeccHandlerOptions = {
    scenario, clock, tls: o.transport !== 'tcp', memory, powerStage,
    ...(o.contractRoots ? { contractRoots: o.contractRoots } : {}),
    ...(o.certificateService ? { certificateService: o.certificateService } : {}),
    ...(o.wallClock ? { wallClock: o.wallClock } : {}),
  };

  const serve = (sock: Socket | TLSSocket, tlsInfo?: { protocol?: string; cipher?: string; clientCertSubject?: string }): void => {
    sockets.add(sock);
    const report: SimConnectionReport = { remote: sock.remoteAddress ?? '?', appBytes: 0, v2gtpMessages: 0, ...tlsInfo };
    const connection = connections.push(report) - 1;
    const reasm = new V2gtpReassembler();
    let session: SeccHandler<Iso2.V2G_MessageElement> | SeccHandler<Din.V2G_MessageElement> | undefined;
    // One request at a time, in order: a delayed answer holds back the next request, as a single-threaded SECC does.
    let queue: Promise<void> = Promise.resolve();
    const write = (payloadType: number, payload: Uint8Array): void => {
      if (!sock.destroyed) sock.write(encodeV2gtp(payloadType, payload));
    };

    const onMessage = async (m: V2gtpMessage): Promise<void> => {
      if (sock.destroyed) return;
      report.v2gtpMessages++;
      if (m.payloadType !== PayloadType.EXI) return write(m.payloadType, m.payload); // echo
      if (!session) {
        const answer = answerAppProtocol(m.payload, appProtocols, scenario.protocols.choice);
        if (!answer) return write(m.payloadType, m.payload); // echo: not a SupportedAppProtocolReq
        report.appProtocolAnswered = true;
        log?.info({ offered: answer.offered }, `SECC ← supportedAppProtocolReq (${answer.offered.map((p) => `${p.namespace}#${p.schemaId}/p${p.priority}`).join(', ')})`);
        write(PayloadType.EXI, answer.response);
        log?.info({ chosen: answer.chosen }, `SECC → supportedAppProtocolRes ${answer.responseCode}${answer.chosen ? ` (${answer.chosen.namespace}, SchemaID ${answer.chosen.schemaId})` : ''}`);
        events.emit('app-protocol', { connection, responseCode: answer.responseCode, ...(answer.chosen ? { chosen: answer.chosen } : {}) });
        const protocol = answer.chosen?.protocol;
        if (protocol) {
          session = protocol === 'iso2' ? createIso2Handler(handlerOptions) : createDinHandler(handlerOptions);
          report.v2g = protocol;
          report.requests = session.requests.records;
        }
        return;
      }
      const h = session;
      let reply;
      if (h.protocol === 'iso2') {
        reply = await (h as SeccHandler<Iso2.V2G_MessageElement>).handle(decodeV2gMessage('iso2', m.payload), clock.now());
      } else {
        reply = await (h as SeccHandler<Din.V2G_MessageElement>).handle(decodeV2gMessage('din', m.payload), clock.now());
      }
      if (h.sessionId) report.sessionId = h.sessionId;
      log?.info(`SECC ← ${reply.requestSummary}`);
      const record = h.requests.records.at(-1);
      if (record && reply.requestName) {
        events.emit('v2g-request', { connection, protocol: h.protocol, record, request: reply.requestSummary, ...(reply.responseSummary ? { response: reply.responseSummary } : {}) } satisfies SimRequestEvent);
      }
      if (reply.after === 'reset') {
        log?.info(`SECC ✕ TCP reset instead of an answer (scenario ${scenario.name})`);
        report.endedBy = 'reset';
        return resetConnection(sock);
      }
      if (reply.response) {
        if (reply.delayMs > 0) await clock.sleep(reply.delayMs);
        const bytes = h.protocol === 'iso2'
          ? encodeV2gMessage('iso2', reply.response as Iso2.V2G_MessageElement, reply.encodeOptions)
          : encodeV2gMessage('din', reply.response as Din.V2G_MessageElement, reply.encodeOptions);
        write(PayloadType.EXI, bytes);
        log?.info(`SECC → ${reply.responseSummary}${reply.delayMs > 0 ? ` after ${reply.delayMs} ms` : ''}`);
      } else if (reply.requestName) {
        log?.info(`SECC … ${reply.requestName} not answered (scenario ${scenario.name})`);
      }
      if (reply.after === 'close') {
        report.endedBy = 'close';
        sock.end();
      }
    };

    sock.on('data', (chunk: Buffer) => {
      report.appBytes += chunk.length;
      let messages: V2gtpMessage[];
      try {
        messages = reasm.push(chunk);
      } catch (err) {
        log?.warn({ err }, 'V2GTP framing error from EV: closing');
        sock.destroy();
        return;
      }
      for (const m of messages) {
        queue = queue.then(() => onMessage(m)).catch((err: unknown) => {
          log?.warn({ err }, `SECC: cannot handle the EV's message (${(err as Error).message}): closing`);
          sock.destroy();
        });
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

  const announce = o.announceSecurity ?? scenario.sdp.announce ?? (o.transport === 'tcp' ? 'none' : 'tls');
  const sdpMode = o.sdp ?? scenario.sdp.mode;
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
  log?.info({ address: o.address, port, transport: o.transport, sdp: sdpMode, scenario: scenario.name }, `SECC sim listening on [${o.address}]:${port} (scenario ${scenario.name})`);

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
    scenario,
    memory,
    async close() {
      await udp?.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** TCP RST (a charger that drops the connection in the loop). A TLS socket is reset through its TCP socket. */
function resetConnection(sock: Socket | TLSSocket): void {
  const raw = (sock as TLSSocket & { _parent?: Socket })._parent ?? sock;
  try {
    raw.resetAndDestroy();
  } catch {
    raw.destroy();
  }
  if (!sock.destroyed) sock.destroy();
}
