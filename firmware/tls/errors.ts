/**
 * TLS client error codes. Certificate-path failures other than an unknown root surface with their PKI_* code
 * (PKI_CERT_EXPIRED, PKI_KEY_USAGE, PKI_NOT_CA, PKI_SELF_SIGNED_LEAF, …) so each reason stays distinguishable.
 * Refusals of the SECC's chain are also signalled to the SECC with a TLS alert before our Finished
 * (`refusalAlert` in connect.ts: unknown_ca for TLS_UNKNOWN_ROOT, …).
 */
export type TlsErrorCode =
  | 'TLS_UNKNOWN_ROOT' // chain well-formed but not anchored in an installed V2G root (→ OTA root fetch)
  | 'TLS_PROFILE_MISMATCH' // negotiated version/suite outside the profile
  | 'TLS_HANDSHAKE_FAILED'
  | 'TLS_CONNECT_FAILED'
  | 'TLS_TIMEOUT'
  | 'TLS_CLIENT_CREDENTIALS_MISSING' // mutual profile without vehicle certificate/key
  | 'TLS_CLIENT_CERT_REJECTED' // TLS 1.3: the SECC refused the vehicle certificate (alert or close after our Finished)
  | 'TLS_CLIENT_CERT_REQUESTED' // TLS 1.2: the SECC asked for a client certificate and refused the handshake without one
  | 'TLS_NOT_OFFERED'; // SDP answered "no TLS" where TLS was asked for (evcc tls-probe)
