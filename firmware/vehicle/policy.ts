/**
 * The session's security policy as one explicit object (STYLE.md §7): from what the key service said at start (the
 * contract key armed, or a typed refusal = degraded mode) and the configuration, it decides together
 *   - whether Plug & Charge may be used at all,
 *   - what SDP asks for (TLS or not) and what it accepts,
 *   - once SDP has answered, the channel (TLS or plain TCP) and the SupportedAppProtocol offer on it.
 * Rules (ISO 15118-2 §7.7.3 and field behaviour, PROTOCOLS.md §2, §7):
 *   - PnC needs TLS: with the contract usable, SDP asks for TLS and the offer on TLS is ISO-2. A charger that answers
 *     without TLS (most DC chargers in the 2024 field survey) still charges the vehicle, with EIM over plain TCP, said
 *     in a WARN line and the report — never with the contract (`pncSdpSecurity: 'tls-required'` refuses instead).
 *   - DIN SPEC 70121 is plain TCP: it is never offered inside TLS (a DIN-only charger would otherwise pick DIN on a
 *     channel it cannot continue on).
 *   - EIM: SDP asks as configured (TLS preferred by default, so the charger is authenticated when it can be); an
 *     answer without TLS gives a TCP channel with ISO-2 (EIM) and DIN offered by the configured priorities.
 *   - Nothing is downgraded silently: each decision carries its reason, logged and reported.
 */
import type { SdpSecurityPolicy } from '../sdp/settings.ts';
import type { OfferedProtocol } from '../session/app-handshake.ts';

/**
 * What the key service said at start: ready (the state is OEM-approved) with the contract key armed, or ready with no
 * contract yet but an OEM provisioning certificate to get one by CertificateInstallation (`contractKey` absent), or
 * refused (typed).
 */
export type KeyReadiness = { ready: true; version: number; contractKey?: string } | { ready: false; code: string; message: string };

export type PaymentOption = 'Contract' | 'ExternalPayment';

export interface SecurityPolicy {
  /** Plug & Charge (contract signature in the TPM) allowed for this session. */
  pnc: boolean;
  paymentOptions: PaymentOption[];
  /** What SDP asks for and accepts. */
  sdpSecurity: SdpSecurityPolicy;
  /** Why (one sentence, also logged). */
  reason: string;
  /** Set when the TPM refused (measured boot failed, rollback, no contract key): EIM only. */
  degraded?: { code: string; message: string };
}

export const ISO2_NAMESPACE = 'urn:iso:15118:2:2013:MsgDef';
export const DIN_NAMESPACE = 'urn:din:70121:2012:MsgDef';

export interface ProtocolPreferences {
  /** SupportedAppProtocol priorities (1 = most preferred) on a plain-TCP channel. */
  iso2Priority: number;
  dinPriority: number;
  /** Offer DIN at all (plain TCP only). */
  din: boolean;
  /** SDP request when PnC is not possible. */
  eimSdpSecurity: SdpSecurityPolicy;
  /** SDP request when PnC is possible: ask TLS; `tls-preferred` lets a no-TLS charger charge with EIM over TCP. */
  pncSdpSecurity: 'tls-required' | 'tls-preferred';
}

export const DEFAULT_PROTOCOL_PREFERENCES: ProtocolPreferences = { iso2Priority: 1, dinPriority: 2, din: true, eimSdpSecurity: 'tls-preferred', pncSdpSecurity: 'tls-preferred' };

/**
 * Pure: PnC only with a key service that armed the contract key, and then TLS is required whatever the config
 * says; without it the vehicle is EIM-capable only (degraded mode, ARCHITECTURE.md §3 step 1).
 */
export function securityPolicy(keys: KeyReadiness, prefs: Pick<ProtocolPreferences, 'eimSdpSecurity' | 'pncSdpSecurity'> = DEFAULT_PROTOCOL_PREFERENCES): SecurityPolicy {
  if (keys.ready) {
    const what = keys.contractKey
      ? `contract key ${keys.contractKey} armed for release v${keys.version}: PnC (TLS only) and EIM offered`
      : `no contract yet (release v${keys.version} approved): PnC with CertificateInstallation (OEM provisioning key in the TPM) and EIM offered`;
    return {
      pnc: true, paymentOptions: ['Contract', 'ExternalPayment'], sdpSecurity: prefs.pncSdpSecurity,
      reason: `${what}; SDP ${prefs.pncSdpSecurity}${prefs.pncSdpSecurity === 'tls-preferred' ? ' (a charger without TLS gets EIM over TCP, never the contract)' : ''}`,
    };
  }
  return {
    pnc: false, paymentOptions: ['ExternalPayment'], sdpSecurity: prefs.eimSdpSecurity,
    reason: `key service refused (${keys.code}): ${keys.code === 'KEYS_DISABLED' ? 'no TPM key service' : 'degraded mode'}, EIM only (ExternalPayment), no contract signature; SDP ${prefs.eimSdpSecurity}`,
    degraded: { code: keys.code, message: keys.message },
  };
}

export interface ChannelPlan {
  channel: 'tls' | 'tcp';
  /** Contract may be selected on this channel (PnC allowed and TLS). */
  pnc: boolean;
  offer: OfferedProtocol[];
  reason: string;
}

/** The channel and offer once SDP has answered (`security` as the SECC announced it). */
export function channelPlan(policy: SecurityPolicy, security: 'tls' | 'none', prefs: ProtocolPreferences = DEFAULT_PROTOCOL_PREFERENCES): ChannelPlan {
  const iso2: OfferedProtocol = { namespace: ISO2_NAMESPACE, major: 2, minor: 0, schemaId: 1, priority: prefs.iso2Priority };
  const din: OfferedProtocol = { namespace: DIN_NAMESPACE, major: 2, minor: 0, schemaId: 2, priority: prefs.dinPriority };
  if (security === 'tls') {
    return {
      channel: 'tls', pnc: policy.pnc, offer: [{ ...iso2, priority: 1 }],
      reason: policy.pnc ? 'TLS: ISO 15118-2 offered (PnC and EIM)' : 'TLS: ISO 15118-2 offered (EIM); DIN is never offered inside TLS',
    };
  }
  const offer = (prefs.din ? [iso2, din] : [iso2]).sort((a, b) => a.priority - b.priority);
  return {
    channel: 'tcp', pnc: false, offer,
    reason: `no TLS: plain TCP, EIM only; offered ${offer.map((p) => (p.namespace === DIN_NAMESPACE ? 'DIN SPEC 70121' : 'ISO 15118-2')).join(' and ')}${policy.pnc ? ' (PnC not used: it needs TLS)' : ''}`,
  };
}
