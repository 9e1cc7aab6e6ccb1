/**
 * `evcc session replay`: a captured session → a charger-simulator scenario (sim/secc/scenarios format) that plays
 * the charger's side of it again, so a failure seen at a field charger becomes a regression test against our EV.
 *
 * What the capture shows of the charger becomes the scenario's declared behaviour: transport and TLS version, the
 * protocol it chose, its EVSEID, payment options, energy transfer modes and DC limits, response codes other than OK,
 * how long EVSEProcessing stayed Ongoing, slow answers (delays), requests it never answered, and its events in the
 * charge loop (StopCharging, ReNegotiation, EmergencyShutdown, ReceiptRequired at the N-th loop response, a TCP reset
 * after N answers), and a SessionID it changed. What the simulator computes itself (present voltage and current from
 * its power stage) is not replayed: loop lengths that the EV's battery or the power-stage ramps decide may differ
 * by a few iterations; everything the charger decided comes at the same place. Pure: decoded messages in, scenario
 * object out (validated by sim/secc's schema in the caller).
 */
import type { CapturedV2gMessage } from './decode.ts';

export interface ReplaySource {
  messages: readonly Pick<CapturedV2gMessage, 'direction' | 'name' | 'decoded' | 'responseCode' | 'rttMs' | 'schema' | 'atUs'>[];
  transport: { tls: boolean; version?: string };
  /** How the connection ended, when it did. */
  end?: 'fin' | 'reset';
  resetBy?: 'client' | 'server';
  /** The SECC chain ended in a root the vehicle fetched in the session (bench: PKI B), else a known one. */
  chain?: 'pki-a' | 'pki-b' | 'pki-b-cross';
  /** Where it came from (folder id), for the description. */
  origin: string;
}

export type ReplayScenario = Record<string, unknown> & { description: string; transport: 'tls12' | 'tls13' | 'tcp' };

/** Answers slower than this are replayed as a delay (the simulator itself answers within a few ms). */
export const REPLAY_DELAY_THRESHOLD_MS = 200;

const ONGOING_KEYS = ['Authorization', 'ContractAuthentication', 'ChargeParameterDiscovery', 'CableCheck'] as const;
const LOOP_KEYS = new Set(['CurrentDemand', 'ChargingStatus']);

type Doc = Record<string, unknown>;
const obj = (v: unknown): Doc | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Doc) : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

function bodyOf(m: { decoded?: unknown; name: string }): Doc | undefined {
  const d = obj(m.decoded);
  const v2g = obj(d?.V2G_Message) ?? d;
  return obj(obj(v2g?.Body)?.[m.name]);
}

function headerOf(m: { decoded?: unknown }): Doc | undefined {
  const d = obj(m.decoded);
  return obj((obj(d?.V2G_Message) ?? d)?.Header);
}

/** PhysicalValue (ISO-2 Multiplier/Unit/Value, DIN the same) → number. */
function physical(v: unknown): number | undefined {
  const p = obj(v);
  if (!p || p.Value === undefined) return undefined;
  return Number(p.Value) * 10 ** Number(p.Multiplier ?? 0);
}

const stem = (name: string): string => name.replace(/(Req|Res)$/, '');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

function evseStatus(body: Doc): Doc | undefined {
  return obj(body.DC_EVSEStatus) ?? obj(body.AC_EVSEStatus);
}

export function scenarioFromSession(src: ReplaySource): ReplayScenario {
  const msgs = src.messages;
  const responses = msgs.filter((m) => m.direction === 'rx');
  const transport = !src.transport.tls ? 'tcp' : src.transport.version === 'TLSv1.3' ? 'tls13' : 'tls12';
  const scenario: ReplayScenario = { description: `replay of captured session ${src.origin}: the charger's answers as captured`, transport };
  if (src.chain && transport !== 'tcp') scenario.chain = src.chain;

  const schema = msgs.find((m) => m.schema === 'iso2' || m.schema === 'din')?.schema;
  if (schema === 'iso2' || schema === 'din') scenario.protocols = { supported: [schema] };

  // The charger's identity and offer.
  const charger: Doc = {};
  const setup = responses.find((m) => m.name === 'SessionSetupRes');
  const evseId = setup ? bodyOf(setup)?.EVSEID : undefined;
  if (typeof evseId === 'string') {
    const text = schema === 'din' && /^[0-9a-f]+$/i.test(evseId) ? hexAscii(evseId) : evseId;
    if (text && text.length >= 7 && text.length <= 32) charger.evseId = text;
  }
  const sd = responses.find((m) => m.name === 'ServiceDiscoveryRes');
  const sdBody = sd ? bodyOf(sd) : undefined;
  if (sdBody) {
    const payments = arr(obj(sdBody.PaymentOptionList)?.PaymentOption).filter((p): p is 'Contract' | 'ExternalPayment' => p === 'Contract' || p === 'ExternalPayment');
    if (payments.length) charger.paymentOptions = [...new Set(payments)];
    const modes = arr(obj(obj(sdBody.ChargeService)?.SupportedEnergyTransferMode)?.EnergyTransferMode).filter((x): x is string => typeof x === 'string');
    const dinMode = obj(sdBody.ChargeService)?.EnergyTransferType;
    if (modes.length) charger.energyTransferModes = [...new Set(modes)];
    else if (typeof dinMode === 'string') charger.energyTransferModes = [dinMode];
    const services = arr(obj(sdBody.ServiceList)?.Service).map((s) => Number(obj(s)?.ServiceID));
    if (payments.includes('Contract')) charger.certificateService = services.includes(2);
  }
  const cpd = [...responses].reverse().find((m) => m.name === 'ChargeParameterDiscoveryRes');
  const dc = cpd ? obj(bodyOf(cpd)?.DC_EVSEChargeParameter) : undefined;
  if (dc) {
    const limits: Doc = {};
    const set = (key: string, v: number | undefined) => {
      if (v !== undefined && Number.isFinite(v) && v > 0) limits[key] = Math.round(v * 1000) / 1000;
    };
    set('maxVoltageV', physical(dc.EVSEMaximumVoltageLimit));
    set('minVoltageV', physical(dc.EVSEMinimumVoltageLimit));
    set('maxCurrentA', physical(dc.EVSEMaximumCurrentLimit));
    set('minCurrentA', physical(dc.EVSEMinimumCurrentLimit));
    set('maxPowerW', physical(dc.EVSEMaximumPowerLimit));
    if (Object.keys(limits).length) charger.dc = limits;
  }
  if (Object.keys(charger).length) scenario.charger = charger;

  // Response codes other than OK, slow answers, requests never answered.
  const responseCodes: Doc = {};
  const rtts = new Map<string, number[]>();
  for (const r of responses) {
    const key = stem(r.name);
    if (r.responseCode && !r.responseCode.startsWith('OK') && key !== 'supportedAppProtocol') responseCodes[key] ??= r.responseCode;
    if (r.rttMs !== undefined) rtts.set(key, [...(rtts.get(key) ?? []), r.rttMs]);
  }
  if (Object.keys(responseCodes).length) scenario.responseCodes = responseCodes;
  const delays: Doc = {};
  for (const [key, xs] of rtts) {
    const m = median(xs);
    if (m >= REPLAY_DELAY_THRESHOLD_MS && key !== 'supportedAppProtocol') delays[key] = Math.round(m);
  }
  if (Object.keys(delays).length) scenario.delays = delays;
  const last = msgs.at(-1);
  if (last?.direction === 'tx' && last.name !== 'SessionStopReq' && !(src.end === 'reset' && src.resetBy === 'server')) scenario.silent = [stem(last.name)];

  // EVSEProcessing=Ongoing: from the first request of the kind to the first request answered Finished.
  const ongoing: Doc = {};
  for (const key of ONGOING_KEYS) {
    const pairs = requestPairs(msgs, key);
    if (!pairs.length) continue;
    const firstOngoing = pairs.findIndex((p) => p.res && bodyOf(p.res)?.EVSEProcessing === 'Ongoing');
    if (firstOngoing < 0) {
      ongoing[key] = 0;
      continue;
    }
    const finished = pairs.find((p) => p.res && bodyOf(p.res)?.EVSEProcessing === 'Finished');
    ongoing[key] = finished ? Math.max(0, Math.round(Number(finished.req.atUs - pairs[0]!.req.atUs) / 1000) - 1) : 'forever';
  }
  if (Object.keys(ongoing).length) scenario.ongoing = ongoing;

  // Charge-loop events by loop index (1-based, counted over CurrentDemand/ChargingStatus responses).
  const loop: Doc = {};
  let n = 0;
  for (const r of responses) {
    if (!LOOP_KEYS.has(stem(r.name))) continue;
    n++;
    const body = bodyOf(r);
    const status = body ? evseStatus(body) : undefined;
    const note = status?.EVSENotification;
    if (note === 'StopCharging') loop.stopChargingAt ??= n;
    if (note === 'ReNegotiation') loop.renegotiationAt ??= n;
    if (status?.EVSEStatusCode === 'EVSE_EmergencyShutdown') loop.emergencyShutdownAt ??= n;
    if (body?.ReceiptRequired === true) loop.receiptRequiredAt ??= n;
  }
  if (src.end === 'reset' && src.resetBy === 'server' && last && LOOP_KEYS.has(stem(last.name)) && last.direction === 'tx') loop.resetConnectionAfter = n;
  if (Object.keys(loop).length) scenario.loop = loop;

  // A SessionID the charger changed after SessionSetupRes.
  const sid = setup ? headerOf(setup)?.SessionID : undefined;
  const changed = sid !== undefined ? responses.find((r) => r !== setup && stem(r.name) !== 'supportedAppProtocol' && headerOf(r)?.SessionID !== undefined && headerOf(r)?.SessionID !== sid) : undefined;
  if (changed) scenario.faults = { wrongSessionIdFrom: stem(changed.name) };
  return scenario;
}

function requestPairs(msgs: ReplaySource['messages'], key: string) {
  const out: { req: ReplaySource['messages'][number]; res?: ReplaySource['messages'][number] }[] = [];
  msgs.forEach((m, i) => {
    if (m.direction !== 'tx' || stem(m.name) !== key) return;
    const next = msgs[i + 1];
    out.push({ req: m, ...(next && next.direction === 'rx' ? { res: next } : {}) });
  });
  return out;
}

function hexAscii(hex: string): string | undefined {
  let s = '';
  for (let i = 0; i + 1 < hex.length; i += 2) {
    const c = parseInt(hex.slice(i, i + 2), 16);
    if (c < 0x20 || c > 0x7e) return undefined;
    s += String.fromCharCode(c);
  }
  return s;
}

/** The EV's side of a session as a comparable sequence: request names with consecutive repeats folded. */
export function requestSequence(messages: readonly { direction: 'tx' | 'rx'; name: string }[]): string[] {
  const out: string[] = [];
  for (const m of messages) if (m.direction === 'tx' && out.at(-1) !== m.name) out.push(m.name);
  return out;
}
