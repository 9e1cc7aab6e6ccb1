/**
 * A failed session in the words a bench engineer uses (the red box of the Kilic testbench, Fig. 11: "TLS connection
 * can not be established due to the different root CA"): one headline per failure class, the typed code and the
 * message as `evcc` prints them (`CODE: message` on one line, the CLI's form in bin/failure.ts), and what to try next.
 * Codes without an entry of their own fall back to their stage and the code registry's one-line meaning.
 */
import { describeCode } from '../../core/errors.ts';

export interface FailureWords {
  /** What failed, for a person at the bench. */
  headline: string;
  /** `CODE: message`, one line (the CLI's form). */
  detail: string;
  /** What usually helps; absent when nothing general can be said. */
  hint?: string;
  code: string;
}

/** Collapses a multi-line message into one line (as `evcc` prints a failure). */
export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** The CLI's failure line: `CODE: message`. */
export function failureLine(code: string, message: string): string {
  const m = oneLine(message);
  return m ? `${code}: ${m}` : code;
}

interface Words { headline: string; hint?: string }

/** Failures a bench sees daily, each in its own words. */
const FAILURE_WORDS: Record<string, Words> = {
  TLS_UNKNOWN_ROOT: {
    headline: 'TLS connection cannot be established: the charger\'s chain ends in an unknown root CA',
    hint: 'the vehicle has no V2G root of the charger\'s PKI: enable the OEM root fetch (Solution C, config ota) or install the root (evcc pki roots install)',
  },
  PKI_UNKNOWN_ROOT: {
    headline: 'TLS connection cannot be established: the charger\'s chain ends in an unknown root CA',
    hint: 'enable the OEM root fetch (Solution C) or install the root',
  },
  OTA_ROOT_NOT_FOUND: {
    headline: 'TLS connection cannot be established: the charger\'s root CA is unknown, and the OEM backend does not know it either',
    hint: 'the root is not in the OEM\'s Root Certificate Pool: the OEM must approve it first',
  },
  OTA_ROOT_UNAVAILABLE: {
    headline: 'TLS connection cannot be established: the charger\'s root CA is unknown and could not be fetched from the OEM backend',
    hint: 'check the OEM link (broker reachable, vehicle certificate valid)',
  },
  OTA_BROKER_UNREACHABLE: { headline: 'the OEM backend cannot be reached: the unknown root CA could not be fetched', hint: 'check the broker address and the network' },
  OTA_BACKEND_SILENT: { headline: 'the OEM backend did not answer the root-CA request in time', hint: 'the backend service may be down' },
  TLS_HANDSHAKE_FAILED: { headline: 'TLS connection cannot be established: the handshake with the charger failed' },
  TLS_CONNECT_FAILED: { headline: 'TLS connection cannot be established: the charger refused or dropped the connection' },
  TLS_TIMEOUT: { headline: 'TLS connection cannot be established: the charger did not complete the handshake in time' },
  TLS_CLIENT_CERT_REJECTED: { headline: 'TLS connection cannot be established: the charger refused the vehicle certificate' },
  TLS_NOT_OFFERED: { headline: 'the charger offers no TLS, and this vehicle requires TLS', hint: 'config sdp.security decides whether plain TCP (EIM only) is allowed' },
  SDP_NO_RESPONSE: { headline: 'no charger answered the discovery (SDP): no IPv6 link to a charger', hint: 'check the PLC link (SLAC matched?) and the interface' },
  SDP_TLS_REQUIRED: { headline: 'the charger offers no TLS, and this vehicle requires TLS' },
  SLAC_TIMEOUT_MATCH: { headline: 'no PLC link: the charger did not confirm the SLAC match', hint: 'check the control pilot (5 % duty) and the charger\'s modem' },
  SLAC_TIMEOUT_PARM_CNF: { headline: 'no PLC link: no charger answered CM_SLAC_PARM.REQ', hint: 'check the modem and the cable' },
  SLAC_TIMEOUT_ATTEN_CHAR: { headline: 'no PLC link: no charger reported the attenuation (CM_ATTEN_CHAR)', hint: 'check the cable and the modem' },
  SLAC_NO_SUITABLE_EVSE: { headline: 'no PLC link: no charger within the attenuation limit answered' },
  SLAC_TIMEOUT_SET_KEY: { headline: 'no PLC link: the local modem did not take the network key (CM_SET_KEY)' },
  SLAC_LINK_NOT_JOINED: { headline: 'no PLC link: the modem did not join the charger\'s network' },
  EVCC_SETUP_TIMEOUT: { headline: 'the charging session could not be set up in time (V2G_EVCC_CommunicationSetup_Timeout)', hint: 'the timeline shows the stage that used the time' },
  EVCC_TRUST_UNAVAILABLE: { headline: 'no verified certificate store: the charger cannot be authenticated', hint: 'the TPM refused the software state (degraded) and no OEM-approved roots are present' },
  EVCC_NO_TCP: { headline: 'the charger offers no TLS and this vehicle opens no plain-TCP channel' },
  APPHAND_NO_COMMON_PROTOCOL: { headline: 'the charger speaks none of the protocols the vehicle offered (SupportedAppProtocol)' },
  APPHAND_TIMEOUT: { headline: 'the charger did not answer SupportedAppProtocolReq in time' },
  ISO2_ISOLATION_FAULT: { headline: 'the charger reported an isolation fault in CableCheck: no energy transfer' },
  ISO2_PRECHARGE_TIMEOUT: { headline: 'PreCharge did not reach the battery voltage in time: the contactors stayed open' },
  ISO2_CABLE_CHECK_TIMEOUT: { headline: 'CableCheck did not finish in time' },
  ISO2_EVSE_EMERGENCY_SHUTDOWN: { headline: 'the charger made an emergency shutdown' },
  ISO2_EVSE_OVERVOLTAGE: { headline: 'the charger delivered more voltage than the vehicle allows: contactors opened at once' },
  DIN_ISOLATION_FAULT: { headline: 'the charger reported an isolation fault in CableCheck: no energy transfer' },
  DIN_PRECHARGE_TIMEOUT: { headline: 'PreCharge did not reach the battery voltage in time: the contactors stayed open' },
  ABORTED: { headline: 'the session was stopped (operator, unplug or service stop)' },
};

/** Failure classes by code prefix: the stage a code belongs to. */
const STAGE_WORDS: [RegExp, string][] = [
  [/^TLS_/, 'TLS connection cannot be established'],
  [/^PKI_/, 'certificate check failed'],
  [/^OTA_/, 'the OEM root fetch (Solution C) failed'],
  [/^SLAC_/, 'no PLC link to the charger (SLAC)'],
  [/^SDP_/, 'the charger could not be discovered (SDP)'],
  [/^(TPM_|KEYS_|POLICY_)/, 'the vehicle\'s key service (TPM) refused'],
  [/^CONTRACT_/, 'the contract certificate could not be installed'],
  [/^ISO2_/, 'the ISO 15118-2 session failed'],
  [/^DIN_/, 'the DIN SPEC 70121 session failed'],
  [/^(SESSION_|V2GTP_|EXI_|XMLDSIG_|APPHAND_)/, 'the V2G session failed'],
  [/^(TCP_|NET_)/, 'no network connection to the charger'],
];

/** The banner text for a failed session: the code's own words, else its stage, else the registry's meaning. */
export function describeFailureForBench(code: string, message: string): FailureWords {
  const own = FAILURE_WORDS[code];
  const stage = STAGE_WORDS.find(([re]) => re.test(code))?.[1];
  const meaning = describeCode(code);
  const headline = own?.headline ?? (stage ? `${stage}: ${meaning ?? oneLine(message)}` : `charging session failed: ${meaning ?? oneLine(message)}`);
  return { headline, detail: failureLine(code, message), code, ...(own?.hint ? { hint: own.hint } : {}) };
}
