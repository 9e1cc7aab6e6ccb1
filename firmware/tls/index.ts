/**
 * Public API of the TLS client (used by firmware/evcc.ts and firmware/ota):
 * - `connectTls({connector, trust, log}, {secc, profile, vehicle?, keyLog?, timeoutMs?, clientAuthVerdictMs?, signal?})`
 *   → `TlsChannel` (`stream`, `protocol`, `cipher`, `peerChain`, validated `path`, `handshakeMs`). Throws
 *   `UnknownRootError` with code TLS_UNKNOWN_ROOT (issuerDn, authorityKeyId, presentedChain), PKI_* codes for other
 *   chain failures, TLS_PROFILE_MISMATCH / TLS_HANDSHAKE_FAILED / TLS_CONNECT_FAILED / TLS_TIMEOUT /
 *   TLS_CLIENT_CREDENTIALS_MISSING / TLS_CLIENT_CERT_REJECTED (TLS 1.3: SECC refused the vehicle certificate) /
 *   TLS_CLIENT_CERT_REQUESTED (TLS 1.2: SECC wanted a client certificate). Refusals of the SECC's chain are sent to
 *   it as TLS alerts before our Finished (`refusalAlert`).
 * - `TLS_PROFILES` ('iso2-tls12', 'iso20-tls13'); `trust` is a `CertificateStore` or any `{ anchors() }`.
 * Connectors: hal/net/tls-connector.ts `NodeTlsConnector` (real; `new NodeTlsConnector(link.resolver())` on a
 * SimIpv6Link). Plain TCP (SDP answered "no TLS"): hal/net/tcp-connector.ts `NodeTcpConnector`.
 */
export * from './profiles.ts';
export * from './errors.ts';
export * from './connect.ts';
export * from './settings.ts';
export { UnknownRootError } from '../pki/validate.ts';
