/**
 * `connectTls`: opens the trusted channel to the SECC.
 *
 * The connector (hal/net) runs the handshake with OpenSSL's verification off and no hostname check (ISO
 * certificates carry no names); our `verifyPeer` gate decides once the SECC's flight is in and before our Finished
 * leaves (so before any application byte can be written):
 *   1. the negotiated version and suite are those of the profile (else TLS_PROFILE_MISMATCH);
 *   2. the SECC's chain validates with firmware/pki against the installed V2G roots, purpose `secc-tls`.
 * An unanchored chain is TLS_UNKNOWN_ROOT (an UnknownRootError: issuer DN + authority key id of the top
 * certificate the SECC presented, and the presented chain) — the trigger of the OTA root fetch (Solution C).
 * A refusal reaches the SECC as a TLS alert (`refusalAlert`: unknown_ca for an unknown root, certificate_expired,
 * unsupported_certificate, bad_certificate, handshake_failure) instead of a silent close.
 * TLS 1.3 mutual: the SECC's verdict on the vehicle certificate comes after our Finished; we wait for it (bounded,
 * `clientAuthVerdictMs`) and report a refusal as TLS_CLIENT_CERT_REJECTED, not as an established channel.
 */
import { EvccError, isEvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { ByteStream, TlsAlertName, TlsConnector, TlsPeerInfo } from '../../hal/net/types.ts';
import { UnknownRootError, validateChain, type ValidatedPath } from '../pki/validate.ts';
import type { AlgorithmPolicy } from '../pki/profiles.ts';
import {
  TLS13_CLIENT_AUTH_VERDICT_MS, TLS_HANDSHAKE_TIMEOUT_MS, TLS_PROFILES, type TlsProfile, type TlsProfileName,
} from './profiles.ts';
import type { TlsErrorCode } from './errors.ts';

/** Anything that can list trust anchors: `CertificateStore` or a fixed list (OTA candidate checks). */
export interface TrustAnchors {
  anchors(): Uint8Array[];
}

export interface ConnectTlsDeps {
  connector: TlsConnector;
  trust: TrustAnchors;
  log: Logger;
  /** Wall clock for certificate validity (injectable for tests). */
  now?: () => Date;
  /** Monotonic ms for the handshake duration figure. */
  monotonic?: () => number;
}

export interface VehicleCredentials {
  /** Vehicle certificate + OEM Sub-CAs, PEM, leaf first. */
  certChainPem: string;
  /**
   * PKCS#8 PEM private key. Node's TLS cannot use a TPM-resident key today (PLATFORM.md), so the TLS 1.3 client
   * key is a software key; it is read into memory by the composition root and never written by the runtime.
   */
  keyPem: string;
}

export interface ConnectTlsOptions {
  secc: { address: string; port: number; iface?: string };
  profile: TlsProfileName | TlsProfile;
  vehicle?: VehicleCredentials;
  algorithms?: AlgorithmPolicy;
  timeoutMs?: number;
  /** Bench builds: receives SSLKEYLOGFILE lines. */
  keyLog?: (line: string) => void;
  signal?: AbortSignal;
  /**
   * Privacy (mutual profiles): in TLS 1.3 the client sends its certificate before Node lets us look at the server's
   * chain, so any SECC learns the vehicle identity. With this option a first handshake without the vehicle
   * certificate fetches and validates the SECC's chain, and only an SECC that passed gets the certificate in the
   * second handshake (validated again). Costs one handshake. Default off (the standard's single handshake).
   */
  validateBeforeClientAuth?: boolean;
  /** TLS 1.3: wait for the SECC's verdict on the vehicle certificate (default TLS13_CLIENT_AUTH_VERDICT_MS; 0 = off). */
  clientAuthVerdictMs?: number;
}

/** Internal: ends the probe handshake after a successful validation. */
class ProbePassed extends Error {}

/**
 * The alert that tells the SECC why we refuse it (RFC 5246 §7.2 / RFC 8446 §6 meanings): unknown_ca for a chain
 * ending in a root we lack, certificate_expired for a validity-window failure, unsupported_certificate for a key
 * usage or algorithm outside the ISO profile, bad_certificate for every other path failure, handshake_failure for
 * a version or suite outside the profile; user_canceled ends the privacy probe (nothing wrong with the SECC).
 */
export function refusalAlert(err: unknown): TlsAlertName {
  if (err instanceof ProbePassed) return 'user_canceled';
  if (!isEvccError(err)) return 'internal_error';
  switch (err.code) {
    case 'PKI_UNKNOWN_ROOT':
    case 'TLS_UNKNOWN_ROOT':
      return 'unknown_ca';
    case 'PKI_CERT_EXPIRED':
    case 'PKI_CERT_NOT_YET_VALID':
      return 'certificate_expired';
    case 'PKI_KEY_USAGE':
    case 'PKI_ALGORITHM':
      return 'unsupported_certificate';
    case 'TLS_PROFILE_MISMATCH':
      return 'handshake_failure';
    default:
      return err.code.startsWith('PKI_') ? 'bad_certificate' : 'internal_error';
  }
}

export interface TlsChannel {
  stream: ByteStream;
  protocol: string;
  cipher: string;
  /** Presented chain (DER, leaf first) and the path we validated. */
  peerChain: Uint8Array[];
  path: ValidatedPath;
  handshakeMs: number;
}

export async function connectTls(deps: ConnectTlsDeps, o: ConnectTlsOptions): Promise<TlsChannel> {
  const profile = typeof o.profile === 'string' ? TLS_PROFILES[o.profile] : o.profile;
  const log = deps.log;
  if (profile.mutual && !o.vehicle) {
    throw new EvccError<TlsErrorCode>('TLS_CLIENT_CREDENTIALS_MISSING', `profile ${profile.name} needs the vehicle certificate and key`);
  }
  const mono = deps.monotonic ?? (() => performance.now());
  const t0 = mono();
  let validated: ValidatedPath | undefined;
  const where = { secc: o.secc.address, port: o.secc.port, profile: profile.name };

  const verifyPeer = (peer: TlsPeerInfo): void => {
    if (peer.clientCertificateRequested && !profile.mutual) {
      log.warn({ ...where, cp: 'TLS-CERT-REQUEST' }, 'SECC requests a client certificate (ISO 15118-2 TLS authenticates the server only): answering without one');
    }
    if (peer.protocol !== profile.version || !profile.allowedCiphers.includes(peer.cipher)) {
      throw new EvccError<TlsErrorCode>('TLS_PROFILE_MISMATCH', `negotiated ${peer.protocol} ${peer.cipher} is outside profile ${profile.name}`, {
        ...where, protocol: peer.protocol, cipher: peer.cipher,
      });
    }
    try {
      validated = validateChain(peer.chainDer, {
        anchors: deps.trust.anchors(),
        now: deps.now?.() ?? new Date(),
        purpose: 'secc-tls',
        algorithms: o.algorithms ?? (profile.version === 'TLSv1.3' ? 'iso15118-20' : 'iso15118-2'),
      });
    } catch (err) {
      if (err instanceof UnknownRootError) {
        throw new UnknownRootError('TLS_UNKNOWN_ROOT', err, where);
      }
      throw err;
    }
  };

  log.info({ ...where, iface: o.secc.iface }, `TLS ${profile.version} handshake with [${o.secc.address}]:${o.secc.port}`);
  const common = {
    host: o.secc.address,
    port: o.secc.port,
    ...(o.secc.iface ? { iface: o.secc.iface } : {}),
    minVersion: profile.version,
    maxVersion: profile.version,
    ciphers: profile.ciphers,
    ecdhCurve: profile.ecdhCurve,
    sigalgs: profile.sigalgs,
    timeoutMs: o.timeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS,
    clientAuthVerdictMs: o.clientAuthVerdictMs ?? TLS13_CLIENT_AUTH_VERDICT_MS,
    alertFor: refusalAlert,
    ...(o.signal ? { signal: o.signal } : {}),
  };
  try {
    if (profile.mutual && o.validateBeforeClientAuth) {
      // Probe: same profile, no client certificate. Our gate validates, then ends the connection on purpose.
      const probe = await deps.connector.connect({
        ...common,
        verifyPeer: (peer) => {
          verifyPeer(peer);
          throw new ProbePassed();
        },
      }).catch((err: unknown) => err);
      if (!(probe instanceof ProbePassed)) {
        throw probe instanceof Error ? probe : new EvccError<TlsErrorCode>('TLS_HANDSHAKE_FAILED', 'probe handshake did not reach validation');
      }
      log.info({ ...where, cp: 'TLS-PROBE-OK' }, 'SECC chain valid in the probe handshake: presenting the vehicle certificate');
      validated = undefined;
    }
    const session = await deps.connector.connect({
      ...common,
      ...(profile.mutual && o.vehicle ? { clientCertChainPem: o.vehicle.certChainPem, clientKeyPem: o.vehicle.keyPem } : {}),
      verifyPeer,
      ...(o.keyLog ? { onKeyLog: o.keyLog } : {}),
    });
    const handshakeMs = mono() - t0;
    const path = validated!;
    log.info({
      ...where, protocol: session.peer.protocol, cipher: session.peer.cipher, anchor: path.anchor.subject,
      viaCross: path.viaCrossCertificate, handshakeMs: Math.round(handshakeMs * 10) / 10, cp: 'TLS-UP',
    }, `TLS established: ${session.peer.protocol} ${session.peer.cipher}, SECC "${path.path[0]!.subject}" anchored in "${path.anchor.subject}"`);
    return { stream: session.stream, protocol: session.peer.protocol, cipher: session.peer.cipher, peerChain: session.peer.chainDer, path, handshakeMs };
  } catch (err) {
    if (err instanceof UnknownRootError) {
      log.warn({ ...where, issuer: err.issuerDn, aki: err.authorityKeyId, cp: 'TLS-UNKNOWN-ROOT' }, 'SECC chain ends in a V2G root we do not have');
    } else if (isEvccError(err)) {
      log.warn({ ...where, err, cp: err.code }, `TLS refused: ${err.message}`);
    }
    throw err;
  }
}
