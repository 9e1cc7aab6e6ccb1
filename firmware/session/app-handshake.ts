/**
 * SupportedAppProtocol handshake (ISO 15118-2 and -20, appHandshake schema): the first EXI exchange on the V2G
 * channel, in which the EVCC offers the protocol namespaces it speaks with a priority each and the SECC picks one.
 * EV side: build the request, send it in V2GTP, wait V2G_EVCC_Msg_Timeout for the answer, check it. SECC side
 * (used by the simulator): pick the offered protocol with the best priority among those it supports.
 */
import type { Clock } from '../../hal/clock/types.ts';
import type { ByteStream } from '../../hal/net/types.ts';
import { EvccError, isEvccError } from '../../core/errors.ts';
import { decode, encode, type AppHandshake } from '../exi/index.ts';
import type { Logger } from '../../core/logger.ts';
import { encodeV2gtp, V2gtpReassembler } from '../v2gtp/codec.ts';
import { PayloadType } from '../v2gtp/constants.ts';
import { V2G_EVCC_MSG_TIMEOUT_MS } from './timers.ts';

export type AppHandshakeErrorCode =
  | 'APPHAND_NO_COMMON_PROTOCOL'
  | 'APPHAND_INVALID_RESPONSE'
  | 'APPHAND_TIMEOUT'
  | 'APPHAND_CHANNEL_CLOSED';

export interface OfferedProtocol {
  namespace: string;
  major: number;
  minor: number;
  schemaId: number;
  /** 1 = most preferred (the schema allows 1…20). */
  priority: number;
}

/** What this EVCC speaks today: ISO 15118-2:2013 first, DIN SPEC 70121 second. */
export const DEFAULT_OFFER: readonly OfferedProtocol[] = [
  { namespace: 'urn:iso:15118:2:2013:MsgDef', major: 2, minor: 0, schemaId: 1, priority: 1 },
  { namespace: 'urn:din:70121:2012:MsgDef', major: 2, minor: 0, schemaId: 2, priority: 2 },
];

export interface NegotiatedProtocol extends OfferedProtocol {
  responseCode: AppHandshake.supportedAppProtocolResElement['ResponseCode'];
}

function fail(code: AppHandshakeErrorCode, message: string, details: Record<string, unknown> = {}): EvccError<AppHandshakeErrorCode> {
  return new EvccError(code, message, details);
}

export function buildSupportedAppProtocolReq(offer: readonly OfferedProtocol[]): Uint8Array {
  return encode('appHandshake', {
    supportedAppProtocolReq: {
      AppProtocol: offer.map((p) => ({
        ProtocolNamespace: p.namespace,
        VersionNumberMajor: p.major,
        VersionNumberMinor: p.minor,
        SchemaID: p.schemaId,
        Priority: p.priority,
      })),
    },
  });
}

/** Checks the SECC's answer against what we offered; a SchemaID we did not offer is a protocol violation. */
export function evaluateSupportedAppProtocolRes(offer: readonly OfferedProtocol[], exi: Uint8Array): NegotiatedProtocol {
  let doc: AppHandshake.Document;
  try {
    doc = decode('appHandshake', exi);
  } catch (err) {
    throw fail('APPHAND_INVALID_RESPONSE', `SupportedAppProtocolRes does not decode: ${isEvccError(err) ? err.code : String(err)}`);
  }
  if (!('supportedAppProtocolRes' in doc)) throw fail('APPHAND_INVALID_RESPONSE', 'expected supportedAppProtocolRes, got supportedAppProtocolReq');
  const res = doc.supportedAppProtocolRes;
  if (res.ResponseCode === 'Failed_NoNegotiation') {
    throw fail('APPHAND_NO_COMMON_PROTOCOL', 'SECC supports none of the offered protocols', { offered: offer.map((p) => p.namespace) });
  }
  const chosen = offer.find((p) => p.schemaId === res.SchemaID);
  if (res.SchemaID === undefined || !chosen) {
    throw fail('APPHAND_INVALID_RESPONSE', `SECC chose SchemaID ${String(res.SchemaID)} which was not offered`, { schemaId: res.SchemaID });
  }
  return { ...chosen, responseCode: res.ResponseCode };
}

/**
 * SECC side: among the offered protocols whose namespace and major version the SECC supports, the one with the
 * best (lowest) Priority; a different minor version is accepted "with minor deviation".
 */
export function answerSupportedAppProtocolReq(exi: Uint8Array, supported: readonly { namespace: string; major: number; minor: number }[]): Uint8Array {
  const doc = decode('appHandshake', exi);
  if (!('supportedAppProtocolReq' in doc)) throw fail('APPHAND_INVALID_RESPONSE', 'expected supportedAppProtocolReq');
  const candidates = doc.supportedAppProtocolReq.AppProtocol
    .map((p) => ({ p, s: supported.find((s) => s.namespace === p.ProtocolNamespace && s.major === p.VersionNumberMajor) }))
    .filter((c) => c.s !== undefined)
    .sort((a, b) => a.p.Priority - b.p.Priority);
  const best = candidates[0];
  const res: AppHandshake.supportedAppProtocolResElement = best
    ? { ResponseCode: best.p.VersionNumberMinor === best.s!.minor ? 'OK_SuccessfulNegotiation' : 'OK_SuccessfulNegotiationWithMinorDeviation', SchemaID: best.p.SchemaID }
    : { ResponseCode: 'Failed_NoNegotiation' };
  return encode('appHandshake', { supportedAppProtocolRes: res });
}

export interface AppHandshakeOptions {
  stream: ByteStream;
  clock: Clock;
  log: Logger;
  offer?: readonly OfferedProtocol[];
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** EV side of the exchange on an established channel. */
export function performAppHandshake(o: AppHandshakeOptions): Promise<NegotiatedProtocol> {
  const offer = o.offer ?? DEFAULT_OFFER;
  const timeoutMs = o.timeoutMs ?? V2G_EVCC_MSG_TIMEOUT_MS.supportedAppProtocol;
  const reasm = new V2gtpReassembler({ accept: [PayloadType.EXI] });
  return new Promise<NegotiatedProtocol>((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, value?: NegotiatedProtocol) => {
      if (settled) return;
      settled = true;
      o.clock.clearTimer(timer);
      o.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(value!);
    };
    const timer = o.clock.setTimer(() => finish(fail('APPHAND_TIMEOUT', `no SupportedAppProtocolRes within V2G_EVCC_Msg_Timeout (${timeoutMs} ms)`, { timeoutMs })), timeoutMs);
    const onAbort = () => finish(o.signal!.reason instanceof Error ? o.signal!.reason : fail('APPHAND_TIMEOUT', 'aborted'));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    o.stream.onData((chunk) => {
      if (settled) return;
      try {
        const [msg] = reasm.push(chunk);
        if (!msg) return;
        const negotiated = evaluateSupportedAppProtocolRes(offer, msg.payload);
        o.log.info({ namespace: negotiated.namespace, schemaId: negotiated.schemaId, responseCode: negotiated.responseCode }, `SupportedAppProtocolRes: ${negotiated.responseCode}, ${negotiated.namespace}`);
        finish(undefined, negotiated);
      } catch (err) {
        finish(isEvccError(err) ? err : fail('APPHAND_INVALID_RESPONSE', String(err)));
      }
    });
    o.stream.onClose((err) => finish(fail('APPHAND_CHANNEL_CLOSED', `channel closed before SupportedAppProtocolRes${err ? `: ${err.message}` : ''}`)));
    o.log.info({ offered: offer.map((p) => `${p.namespace}#${p.schemaId}/p${p.priority}`) }, `SupportedAppProtocolReq: ${offer.length} protocol(s) offered`);
    o.stream.write(encodeV2gtp(PayloadType.EXI, buildSupportedAppProtocolReq(offer))).catch((err: unknown) => finish(fail('APPHAND_CHANNEL_CLOSED', `write failed: ${String(err)}`)));
  });
}
