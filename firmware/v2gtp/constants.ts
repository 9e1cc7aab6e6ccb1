/** V2GTP header constants (ISO 15118-2, V2G Transfer Protocol clause; layout in PROTOCOLS.md §2). */
export const V2GTP_VERSION = 0x01; // protocol version
export const V2GTP_INVERSE_VERSION = 0xfe; // bitwise inverse of the version
export const V2GTP_HEADER_LENGTH = 8;

/** Payload types we use. */
export const PayloadType = {
  EXI: 0x8001, // EXI-encoded V2G message
  SDP_REQUEST: 0x9000,
  SDP_RESPONSE: 0x9001,
} as const;
export type PayloadTypeValue = (typeof PayloadType)[keyof typeof PayloadType];

/**
 * Largest payload we accept on a stream. ISO 15118-2 messages are a few kB (a CertificateInstallationRes with
 * chains is the largest, well under 16 kB); the cap keeps a hostile length field from making us allocate.
 */
export const DEFAULT_MAX_PAYLOAD = 65_536;
