/**
 * Stable error codes of the certificate store and of our path validation. The TLS client maps
 * `PKI_UNKNOWN_ROOT` to `TLS_UNKNOWN_ROOT` (the trigger of the OTA root-CA fetch); every other code surfaces as is.
 */
export type PkiErrorCode =
  | 'PKI_CERT_MALFORMED' // not DER X.509 v3, or over the size cap
  | 'PKI_CHAIN_EMPTY'
  | 'PKI_CHAIN_TOO_LONG'
  | 'PKI_UNKNOWN_ROOT' // chain is well-formed but ends outside the installed roots
  | 'PKI_BAD_SIGNATURE'
  | 'PKI_CERT_EXPIRED'
  | 'PKI_CERT_NOT_YET_VALID'
  | 'PKI_NOT_CA' // an issuing certificate lacks basicConstraints CA:TRUE
  | 'PKI_PATH_LENGTH' // pathLenConstraint exceeded
  | 'PKI_KEY_USAGE' // key usage not as the ISO 15118-2 profile of that role demands
  | 'PKI_SELF_SIGNED_LEAF'
  | 'PKI_ALGORITHM' // key or signature algorithm outside the profile (P-256 / ecdsa-with-SHA256 for ISO 15118-2)
  | 'PKI_NOT_A_ROOT' // asked to install something that is not a self-signed V2G root CA
  | 'PKI_STORE_FULL'
  | 'PKI_STORE_TAMPERED' // integrity tag of the persisted store does not match
  | 'PKI_STORE_CORRUPT'; // the persisted store does not parse
