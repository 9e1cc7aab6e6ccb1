/**
 * The session report a bench engineer reads (`--json`) and the closing line of the bench log: protocol, payment,
 * energy, duration, SoC start/end, per-state timeline, message counts and the typed end reason.
 */
import type { Logger } from '../../core/logger.ts';
import type { EvStatus } from '../../hal/ev/types.ts';
import type { SessionReport } from '../evcc.ts';
import type { SecurityPolicy } from './policy.ts';

export interface ChargeReport extends SessionReport {
  /** true when the plug-in ended with a completed (or paused-and-resumed, then completed) V2G session. */
  ok: boolean;
  security: SecurityPolicy;
  protocol?: 'iso2' | 'din';
  payment?: 'Contract' | 'ExternalPayment';
  /** Battery state of charge at the start and the end of the session, %. */
  soc?: { start: number; end: number };
  /** Energy the battery took in, Wh. */
  energyWh?: number;
  /** Plug-in to the end, ms. */
  durationMs?: number;
  /** Requests sent, per message. */
  messages?: Record<string, number>;
  endReason: { code: string; message: string; orderly: boolean };
  /** V2G roots the vehicle trusts after the session (Solution C may have added one). */
  roots: string[];
}

export function chargeReportOf(r: SessionReport, o: { security: SecurityPolicy; evStart?: EvStatus; evEnd?: EvStatus; roots: string[] }): ChargeReport {
  const s = r.session;
  const ok = r.state === 'Ended' && s?.outcome === 'completed';
  const endReason = s
    ? { code: s.reason.code, message: s.reason.message, orderly: s.orderly }
    : { code: r.error?.code ?? 'EVCC_STAGE_FAILED', message: r.error?.message ?? `ended in ${r.state}`, orderly: false };
  const messages: Record<string, number> = {};
  for (const x of [...(r.paused ?? []), ...(s ? [s] : [])]) for (const [k, v] of Object.entries(x.requests)) messages[k] = (messages[k] ?? 0) + v;
  return {
    ...r, ok, security: o.security, endReason, roots: o.roots,
    ...(s?.protocol?.protocol ? { protocol: s.protocol.protocol } : {}),
    ...(s?.protocol?.payment ? { payment: s.protocol.payment } : {}),
    ...(o.evStart && o.evEnd ? { soc: { start: round1(o.evStart.socPercent), end: round1(o.evEnd.socPercent) }, energyWh: Math.round(o.evEnd.energyDeliveredWh) } : {}),
    ...(s ? { durationMs: Math.round(r.timeline.reduce((n, t) => n + t.ms, 0)), messages } : {}),
  };
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/** The bench log's closing line for one plug-in. */
export function logChargeEnd(log: Logger, r: ChargeReport): void {
  const what = [
    r.protocol ? (r.protocol === 'din' ? 'DIN SPEC 70121' : 'ISO 15118-2') : undefined,
    r.payment ? (r.payment === 'Contract' ? 'PnC' : 'EIM') : undefined,
    r.channel ? r.channel.kind.toUpperCase() : undefined,
    r.soc ? `SoC ${r.soc.start} → ${r.soc.end} %` : undefined,
    r.energyWh !== undefined ? `${(r.energyWh / 1000).toFixed(2)} kWh` : undefined,
    r.setupMs !== undefined ? `setup ${r.setupMs} ms` : undefined,
  ].filter(Boolean).join(', ');
  const fields = { cp: r.ok ? 'EVCC_SESSION_OK' : 'EVCC_SESSION_FAILED', state: r.state, code: r.endReason.code, orderly: r.endReason.orderly, setupMs: r.setupMs, soc: r.soc, energyWh: r.energyWh, messages: r.messages, timeline: r.timeline, degraded: r.security.degraded?.code };
  if (r.ok) log.info(fields, `session complete: ${what}${r.security.degraded ? ` (degraded: ${r.security.degraded.code})` : ''}`);
  else log.error(fields, `session FAILED: ${r.endReason.code}: ${r.endReason.message}${what ? ` (${what})` : ''}${r.endReason.orderly ? ', stopped in order' : ''}`);
}
