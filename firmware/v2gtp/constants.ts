/** V2GTP (ISO 15118-2 §7.8.3) header constants. */
export const V2GTP_VERSION = 0x01; // [V2G2-062] protocol version
export const V2GTP_INVERSE_VERSION = 0xfe; // [V2G2-063] bitwise inverse of the version
export const V2GTP_HEADER_LENGTH = 8;

/** [V2G2-066] payload types we use. */
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
