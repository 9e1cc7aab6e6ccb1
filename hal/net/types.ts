/**
 * Network interfaces as the EVCC needs them: the modem's netdev (PLC link), its MAC and its IPv6 link-local
 * address (SDP and TLS run over link-local, always scoped to this interface — the Pi has eth0 too).
 */
export interface InterfaceInfo {
  name: string;
  index: number;
  mac: Uint8Array;
  /** fe80::/10 address without scope, when one is assigned and past DAD. */
  linkLocal?: string;
}

export interface NetInterfaces {
  lookup(name: string): Promise<InterfaceInfo>;
  /** Waits until the interface has a usable link-local address (DAD done). */
  waitLinkLocal(name: string, timeoutMs: number): Promise<string>;
}

// ---------------------------------------------------------------------------------------------------------------
// Sockets for SDP (UDP over IPv6, link-local multicast) and for TLS or plain TCP to the SECC. Real
// implementations: hal/net/udp6.ts (node:dgram), hal/net/tls-connector.ts (node:tls) and hal/net/tcp-connector.ts
// (node:net); simulated: hal/net/sim-net.ts (UDP in memory, TCP endpoints mapped to loopback listeners).

/** A UDP peer. `address` never carries a `%scope`; link-local peers name their interface in `iface`. */
export interface UdpPeer {
  address: string;
  port: number;
  iface?: string;
}

export interface Udp6Socket {
  /** Where the socket is bound (address without scope). */
  readonly local: { address: string; port: number };
  /** Sends one datagram; link-local and multicast destinations are scoped to the socket's interface. */
  send(data: Uint8Array, to: UdpPeer): Promise<void>;
  /** Every datagram received (the receiver validates; nothing is dropped here). */
  onMessage(listener: (data: Uint8Array, from: UdpPeer) => void): void;
  close(): Promise<void>;
}

export interface Udp6OpenOptions {
  /** The interface every packet of this socket is scoped to (the modem's netdev). */
  iface: string;
  /** Local address to bind (the EV's link-local address); default `::`. */
  address?: string;
  /** Local port; 0 or absent = ephemeral. */
  port?: number;
  /** Multicast hop limit; SDP uses 1 (link scope). */
  multicastHops?: number;
}

export interface Udp6Transport {
  open(options: Udp6OpenOptions): Promise<Udp6Socket>;
}

/** A connected, ordered byte stream (TCP or TLS application data). */
export interface ByteStream {
  write(data: Uint8Array): Promise<void>;
  /** Registers the receiver of incoming bytes; bytes that arrived earlier are delivered at once, in order. */
  onData(listener: (chunk: Uint8Array) => void): void;
  /** Called once when the stream ends or fails. */
  onClose(listener: (err?: Error) => void): void;
  /** Graceful close (TLS close_notify, then FIN). */
  close(): Promise<void>;
  destroy(): void;
}

/** What the TLS handshake produced, before any application byte is written. */
export interface TlsPeerInfo {
  /** Certificates the server presented, DER, in the order it sent them (leaf first). */
  chainDer: Uint8Array[];
  /** `TLSv1.2` | `TLSv1.3`. */
  protocol: string;
  /** OpenSSL/IANA name of the negotiated suite, e.g. `ECDHE-ECDSA-AES128-SHA256`, `TLS_AES_128_GCM_SHA256`. */
  cipher: string;
  /** The peer address as connected (without scope). */
  remoteAddress: string;
  remotePort: number;
  /**
   * TLS 1.2: the server sent a CertificateRequest (ISO 15118-2 TLS authenticates the server only; we answer with
   * no certificate). Undefined where the connector cannot see it (TLS 1.3 requests are encrypted).
   */
  clientCertificateRequested?: boolean;
}

/** TLS alert descriptions (RFC 5246 §7.2, RFC 8446 §6) the EV may send when it refuses a peer or reports. */
export type TlsAlertName =
  | 'close_notify' | 'handshake_failure' | 'bad_certificate' | 'unsupported_certificate' | 'certificate_revoked'
  | 'certificate_expired' | 'certificate_unknown' | 'illegal_parameter' | 'unknown_ca' | 'access_denied'
  | 'decode_error' | 'decrypt_error' | 'protocol_version' | 'insufficient_security' | 'internal_error'
  | 'user_canceled' | 'certificate_required';

/** Codes the TLS connector raises itself (besides whatever `verifyPeer` throws). */
export type TlsConnectorErrorCode =
  | 'TLS_CONNECT_FAILED' // TCP connect refused / unreachable
  | 'TLS_HANDSHAKE_FAILED' // alert from the server, version or suite mismatch, close during the handshake
  | 'TLS_CLIENT_CERT_REJECTED' // TLS 1.3: the server refused our (vehicle) certificate after our Finished
  | 'TLS_CLIENT_CERT_REQUESTED' // TLS 1.2: the server asked for a client certificate and refused the handshake without one
  | 'TLS_TIMEOUT'
  | 'ABORTED'
  | 'CONFIG_INVALID';

export interface TlsConnectOptions {
  host: string;
  port: number;
  /** Interface that scopes a link-local `host`. */
  iface?: string;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  maxVersion: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher string; TLS 1.3 suite names go here too (PLATFORM.md: Node has no separate option). */
  ciphers: string;
  ecdhCurve: string;
  sigalgs: string;
  /** Client certificate chain (PEM, leaf first) and PKCS#8 key for mutual authentication. */
  clientCertChainPem?: string;
  clientKeyPem?: string;
  /**
   * MANDATORY gate: runs once the server's handshake flight is processed and before the connection is handed out
   * (the NodeTlsConnector runs it before our Finished leaves: TLS 1.2 before ClientKeyExchange, TLS 1.3 with our
   * Certificate/Finished flight held back). The connector writes no application byte and returns no stream unless
   * this resolves; if it throws, the connector sends a fatal alert (`alertFor`), closes the connection, and
   * `connect` rejects with that error. (This is where firmware/tls does its own path validation.)
   */
  verifyPeer(peer: TlsPeerInfo): Promise<void> | void;
  /** The alert to send when `verifyPeer` throws `err`; default `bad_certificate`. */
  alertFor?(err: unknown): TlsAlertName;
  /**
   * TLS 1.3: how long to wait after our Finished for the server's verdict on our certificate (its NewSessionTicket
   * or first bytes mean accepted; an alert or close means refused, TLS_CLIENT_CERT_REJECTED) before declaring the
   * channel up anyway (a server that sends no ticket says nothing until we speak). 0 = do not wait. Default 0.
   */
  clientAuthVerdictMs?: number;
  /** SSLKEYLOGFILE lines (bench builds only). */
  onKeyLog?: (line: string) => void;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface TlsSession {
  readonly peer: TlsPeerInfo;
  readonly stream: ByteStream;
}

export interface TlsConnector {
  /**
   * Opens a TCP connection, runs the TLS handshake, calls `verifyPeer` and only then resolves. Errors:
   * TLS_CONNECT_FAILED (TCP), TLS_HANDSHAKE_FAILED (alert, version or suite mismatch), TLS_CLIENT_CERT_REJECTED,
   * TLS_CLIENT_CERT_REQUESTED, TLS_TIMEOUT, ABORTED, or whatever `verifyPeer` threw. Failures caused by the server
   * carry `details.alert` / `details.alertName` when the server sent an alert.
   */
  connect(options: TlsConnectOptions): Promise<TlsSession>;
}

/** Plain TCP to the SECC: DIN SPEC 70121 and ISO 15118-2 EIM sessions when SDP answered "no TLS". */
export interface TcpConnectOptions {
  host: string;
  port: number;
  /** Interface that scopes a link-local `host`. */
  iface?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export type TcpConnectorErrorCode =
  | 'TCP_CONNECT_FAILED' // refused, unreachable, reset before the connection was up
  | 'TCP_TIMEOUT' // no SYN-ACK within timeoutMs
  | 'ABORTED';

export interface TcpConnector {
  /** Opens the TCP connection; the stream's `close()` is FIN, `destroy()` is RST-like. Errors: TcpConnectorErrorCode. */
  connect(options: TcpConnectOptions): Promise<ByteStream>;
}
