/**
 * TLS client error codes. Certificate-path failures other than an unknown root surface with their PKI_* code
 * (PKI_CERT_EXPIRED, PKI_KEY_USAGE, PKI_NOT_CA, PKI_SELF_SIGNED_LEAF, …) so each reason stays distinguishable.
 */
export type TlsErrorCode =
  | 'TLS_UNKNOWN_ROOT' // chain well-formed but not anchored in an installed V2G root (→ OTA root fetch)
  | 'TLS_PROFILE_MISMATCH' // negotiated version/suite outside the profile
  | 'TLS_HANDSHAKE_FAILED'
  | 'TLS_CONNECT_FAILED'
  | 'TLS_TIMEOUT'
  | 'TLS_CLIENT_CREDENTIALS_MISSING'; // mutual profile without vehicle certificate/key
