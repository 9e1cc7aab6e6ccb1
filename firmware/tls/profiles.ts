/**
 * TLS client profiles. ISO 15118-2: TLS 1.2, ECDHE-ECDSA-AES128-SHA256 (the static-ECDH suite of the standard does
 * not exist in OpenSSL 3), P-256, ecdsa_secp256r1_sha256, server authentication only. ISO 15118-20 and the
 * recommended upgrade for -2 (TR-2019-04 §6.3): TLS 1.3 with TLS_AES_128_GCM_SHA256 or TLS_AES_256_GCM_SHA384
 * (some SECCs pick the latter) and mutual authentication with the vehicle certificate.
 * A negotiated version or suite outside the profile is refused (TLS_PROFILE_MISMATCH): never a silent downgrade.
 */
export type TlsProfileName = 'iso2-tls12' | 'iso20-tls13';

export interface TlsProfile {
  name: TlsProfileName;
  version: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher string handed to Node (TLS 1.3 names go here as well, PLATFORM.md). */
  ciphers: string;
  /** Suites we accept as negotiated (OpenSSL names as Node reports them). */
  allowedCiphers: readonly string[];
  ecdhCurve: string;
  sigalgs: string;
  /** The vehicle presents its certificate (TLS 1.3 mutual authentication). */
  mutual: boolean;
}

export const TLS_PROFILES: Readonly<Record<TlsProfileName, TlsProfile>> = {
  'iso2-tls12': {
    name: 'iso2-tls12',
    version: 'TLSv1.2',
    ciphers: 'ECDHE-ECDSA-AES128-SHA256',
    allowedCiphers: ['ECDHE-ECDSA-AES128-SHA256'],
    ecdhCurve: 'prime256v1',
    sigalgs: 'ECDSA+SHA256',
    mutual: false,
  },
  'iso20-tls13': {
    name: 'iso20-tls13',
    version: 'TLSv1.3',
    // The TLS 1.2 name keeps Node's cipher list non-empty; maxVersion TLSv1.3/minVersion TLSv1.3 exclude it.
    ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:ECDHE-ECDSA-AES128-SHA256',
    allowedCiphers: ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'],
    ecdhCurve: 'prime256v1:secp384r1:secp521r1',
    sigalgs: 'ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512',
    mutual: true,
  },
};

/**
 * Handshake budget. The standard gives no TLS-specific timer; SDP + TLS must fit V2G_EVCC_CommunicationSetup_Timeout
 * (20 s, plug-in to SessionSetupRes) together with an eventual OTA root fetch, so the handshake gets 5 s.
 */
export const TLS_HANDSHAKE_TIMEOUT_MS = 5_000;

/**
 * TLS 1.3 mutual authentication: the SECC judges the vehicle certificate after our Finished, so "handshake done" on
 * our side is not yet "accepted". We wait up to this long for its verdict: a NewSessionTicket (or data) ends the wait
 * at once; an alert or a close inside it is TLS_CLIENT_CERT_REJECTED. An SECC that sends no ticket costs the whole
 * wait. Our choice: a few PLC round trips plus an embedded SECC's chain check, small against the 20 s
 * communication-setup budget.
 */
export const TLS13_CLIENT_AUTH_VERDICT_MS = 300;
