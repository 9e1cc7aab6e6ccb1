/**
 * Helpers for the SECC handler tests: an EV side that sends hand-written request bodies through the real EXI codec
 * (encode → decode, as on the wire) and encodes every answer (so a schema-invalid response fails the test).
 */
import { decodeV2gMessage, encodeV2gMessage, type Din, type Iso2 } from '../../firmware/exi/index.ts';
import type { VirtualClock } from '../../hal/clock/virtual.ts';
import type { SeccHandler, SeccReply } from './session.ts';

export interface Exchange<M> {
  reply: SeccReply<M>;
  /** The response body element (`{ ResponseCode, ... }`), undefined when the SECC stayed silent. */
  res: Record<string, unknown> & { ResponseCode?: string };
  header?: { SessionID: string };
}

/** A deterministic byte source: 01 02 03 … (SessionIDs and GenChallenges differ per call). */
export function counterRandom(start = 1): (n: number) => Uint8Array {
  let next = start;
  return (n) => Uint8Array.from({ length: n }, () => next++ & 0xff);
}

export class TestEv<M extends Iso2.V2G_MessageElement | Din.V2G_MessageElement> {
  sessionId = '00';

  constructor(private readonly schema: M extends Iso2.V2G_MessageElement ? 'iso2' : 'din', readonly secc: SeccHandler<M>, readonly clock: VirtualClock) {}

  /** Sends `{ <Name>Req: content }` with the current SessionID (or a given header), after waiting `afterMs`. */
  async send(body: Record<string, unknown>, o: { afterMs?: number; header?: Record<string, unknown> } = {}): Promise<Exchange<M>> {
    if (o.afterMs) this.clock.advance(o.afterMs);
    const message = { Header: { SessionID: this.sessionId, ...o.header }, Body: body };
    const wire = this.schema === 'iso2'
      ? decodeV2gMessage('iso2', encodeV2gMessage('iso2', message as Iso2.V2G_MessageElement))
      : decodeV2gMessage('din', encodeV2gMessage('din', message as Din.V2G_MessageElement));
    const reply = await this.secc.handle(wire as M, this.clock.now());
    if (!reply.response) return { reply, res: {} };
    const bytes = this.schema === 'iso2'
      ? encodeV2gMessage('iso2', reply.response as Iso2.V2G_MessageElement)
      : encodeV2gMessage('din', reply.response as Din.V2G_MessageElement);
    const decoded = (this.schema === 'iso2' ? decodeV2gMessage('iso2', bytes) : decodeV2gMessage('din', bytes)) as { Header: { SessionID: string }; Body: Record<string, unknown> };
    const res = decoded.Body[reply.responseName!] as Exchange<M>['res'];
    return { reply, res, header: decoded.Header };
  }
}

export const physical = (Value: number, Unit: string, Multiplier = 0) => ({ Multiplier, Unit, Value });
export const value = (p: unknown): number => {
  const v = p as { Multiplier: number; Value: number };
  return v.Value * 10 ** v.Multiplier;
};
