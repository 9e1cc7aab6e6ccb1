/**
 * The SECC's side of SupportedAppProtocol with the choice rule a scenario declares: the standard rule (the EV's
 * best Priority among the protocols the SECC supports) or the SECC's own preference order (field chargers that
 * pick DIN although the EV offered ISO 15118-2 first). The chosen namespace selects the session handler.
 */
import { decode, encode, SCHEMA_NAMESPACES, type AppHandshake } from '../../firmware/exi/index.ts';
import type { SeccProtocol } from './session.ts';

export interface SeccAppProtocol {
  namespace: string;
  major: number;
  minor: number;
}

export const PROTOCOL_NAMESPACES: Readonly<Record<SeccProtocol, string>> = { iso2: SCHEMA_NAMESPACES.iso2, din: SCHEMA_NAMESPACES.din };

/** ISO 15118-2:2013 and DIN SPEC 70121:2012 are both version 2.0 in SupportedAppProtocol. */
export function appProtocolsOf(supported: readonly SeccProtocol[]): SeccAppProtocol[] {
  return supported.map((p) => ({ namespace: PROTOCOL_NAMESPACES[p], major: 2, minor: 0 }));
}

export function protocolOfNamespace(namespace: string): SeccProtocol | undefined {
  return (Object.keys(PROTOCOL_NAMESPACES) as SeccProtocol[]).find((p) => PROTOCOL_NAMESPACES[p] === namespace);
}

export interface AppProtocolAnswer {
  response: Uint8Array;
  responseCode: AppHandshake.supportedAppProtocolResElement['ResponseCode'];
  /** What the EV offered, in its order. */
  offered: { namespace: string; schemaId: number; priority: number }[];
  chosen?: { namespace: string; schemaId: number; protocol?: SeccProtocol };
}

/** The answer to a SupportedAppProtocolReq; undefined when `exi` is not one. */
export function answerAppProtocol(exi: Uint8Array, supported: readonly SeccAppProtocol[], choice: 'ev-priority' | 'secc-preference' = 'ev-priority'): AppProtocolAnswer | undefined {
  let doc: AppHandshake.Document;
  try {
    doc = decode('appHandshake', exi);
  } catch {
    return undefined;
  }
  if (!('supportedAppProtocolReq' in doc)) return undefined;
  const offered = doc.supportedAppProtocolReq.AppProtocol;
  const candidates = offered
    .map((p) => ({ p, s: supported.find((s) => s.namespace === p.ProtocolNamespace && s.major === p.VersionNumberMajor) }))
    .filter((c): c is { p: (typeof offered)[number]; s: SeccAppProtocol } => c.s !== undefined)
    .sort((a, b) => (choice === 'ev-priority' ? a.p.Priority - b.p.Priority : supported.indexOf(a.s) - supported.indexOf(b.s)));
  const best = candidates[0];
  const res: AppHandshake.supportedAppProtocolResElement = best
    ? { ResponseCode: best.p.VersionNumberMinor === best.s.minor ? 'OK_SuccessfulNegotiation' : 'OK_SuccessfulNegotiationWithMinorDeviation', SchemaID: best.p.SchemaID }
    : { ResponseCode: 'Failed_NoNegotiation' };
  const protocol = best ? protocolOfNamespace(best.p.ProtocolNamespace) : undefined;
  return {
    response: encode('appHandshake', { supportedAppProtocolRes: res }),
    responseCode: res.ResponseCode,
    offered: offered.map((p) => ({ namespace: p.ProtocolNamespace, schemaId: p.SchemaID, priority: p.Priority })),
    ...(best ? { chosen: { namespace: best.p.ProtocolNamespace, schemaId: best.p.SchemaID, ...(protocol ? { protocol } : {}) } } : {}),
  };
}
