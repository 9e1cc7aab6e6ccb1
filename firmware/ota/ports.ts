/**
 * What the OTA root fetch needs from the PKI and TLS parts (firmware/pki, firmware/tls — issue #4), as narrow ports
 * so the fetch, its verification and the orchestration are tested on their own. The composition root adapts the
 * real root store and path validator to these.
 */

/** The V2G root store: atomic, persisted, bounded (its own policy decides what happens when full). */
export interface RootStorePort {
  /** DER of every installed V2G root. */
  list(): Promise<Uint8Array[]>;
  /** Installs one root atomically (old set or new set survive a crash, never a torn file). */
  install(der: Uint8Array, meta: { source: string }): Promise<void>;
}

/** Validates the SECC's chain (leaf first) against the given anchors; throws a typed error when it does not. */
export type PathValidatorPort = (chain: Uint8Array[], anchors: Uint8Array[], at: Date) => Promise<void>;

/** What a TLS_UNKNOWN_ROOT failure tells us about the chain the SECC presented. */
export interface UnknownRootInfo {
  /** Issuer DN of the SECC's top certificate (the root we lack). */
  issuer: string;
  /** Authority key identifier of the top certificate, hex, when present. */
  aki?: string;
  /** The chain the SECC presented, leaf first, DER. */
  chain: Uint8Array[];
}
