/**
 * SDP (SECC Discovery Protocol, ISO 15118-2 §7.10.1) constants. Names follow the standard where it names them and
 * the open implementations (RISE-V2G, Josev) where it does not.
 */
/** UDP port of the SDP server (ISO 15118-2 SDP clause). */
export const SDP_SERVER_PORT = 15118;
/** The EVCC multicasts SECCDiscoveryReq to the link-local all-nodes group. */
export const SDP_MULTICAST_ADDRESS = 'ff02::1';
/** [V2G2-159] the EVCC waits at least this long for SECCDiscoveryRes before repeating the request. */
export const SDP_RESPONSE_TIMEOUT_MS = 250;
/** [V2G2-161] at most this many SECCDiscoveryReq per SDP run. */
export const SDP_MAX_REQUESTS = 50;

/** SECCDiscoveryReq/Res `Security` byte. */
export const SdpSecurity = { TLS: 0x00, NO_TLS: 0x10 } as const;
/** `TransportProtocol` byte; UDP (0x10) is reserved and unused by ISO 15118-2. */
export const SdpTransport = { TCP: 0x00, UDP: 0x10 } as const;

export const SDP_REQUEST_PAYLOAD_LENGTH = 2;
export const SDP_RESPONSE_PAYLOAD_LENGTH = 20;

/** The SECC listens on a port of the IANA dynamic range (49152–65535); relaxable by setting. */
export const DYNAMIC_PORT_MIN = 49152;
