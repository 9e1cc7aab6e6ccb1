/**
 * The compact timeline of a captured session (`evcc session show`): the stages with their durations (SLAC, SDP, TCP/
 * TLS, V2G), each exchange on one line — repeated exchanges (CableCheck, CurrentDemand, …) folded into one line with
 * their count and round-trip times — and every error: TLS alerts, resets, non-OK response codes, decode failures,
 * the session's end reason. Pure: the reader's contents and the decoded messages in, lines out.
 */
import { MMTYPE } from '../slac/constants.ts';
import type { CapturedV2gMessage } from './decode.ts';

export interface TimelineMme { atUs: bigint; direction?: 'in' | 'out'; src: string; dst: string; mmtype: number }
export interface TimelineDatagram { atUs: bigint; direction?: 'in' | 'out'; src: string; dst: string; srcPort: number; dstPort: number; payload: Uint8Array }
export interface TimelineConnection {
  client: { address: string; port: number };
  server: { address: string; port: number };
  openedUs: bigint;
  closedUs?: bigint;
  end?: 'fin' | 'reset';
  resetBy?: 'client' | 'server';
  tls: boolean;
  decryption?: { version?: string; suite?: string; alerts: { from: 'client' | 'server'; atUs: bigint; level: number; description: number }[]; problem?: string };
  gap?: boolean;
  messages: CapturedV2gMessage[];
}

export interface TimelineInput {
  interfaces: { name: string; description: string }[];
  packets: number;
  firstUs?: bigint;
  mmes: TimelineMme[];
  datagrams: TimelineDatagram[];
  connections: TimelineConnection[];
  keyLog: boolean;
  /** report.json, when the folder has one. */
  report?: { ok?: boolean; state?: string; endReason?: { code: string; message: string }; timeline?: { state: string; ms: number }[] };
  /** ERROR/FATAL records of the bench log. */
  logErrors?: { time?: number; sub?: string; msg?: string; code?: string }[];
}

export interface TimelineLine {
  /** ms since the first packet. */
  t: number;
  kind: 'stage' | 'slac' | 'sdp' | 'tcp' | 'tls' | 'v2g' | 'error' | 'info';
  text: string;
}

const MME_NAMES: Record<number, string> = Object.fromEntries(Object.entries(MMTYPE).map(([k, v]) => [v, k.replace(/_(REQ|CNF|IND|RSP)$/, '.$1')]));

const TLS_ALERT_NAMES: Record<number, string> = {
  0: 'close_notify', 10: 'unexpected_message', 20: 'bad_record_mac', 40: 'handshake_failure', 42: 'bad_certificate', 43: 'unsupported_certificate',
  44: 'certificate_revoked', 45: 'certificate_expired', 46: 'certificate_unknown', 47: 'illegal_parameter', 48: 'unknown_ca', 49: 'access_denied',
  50: 'decode_error', 51: 'decrypt_error', 70: 'protocol_version', 71: 'insufficient_security', 80: 'internal_error', 90: 'user_canceled', 116: 'certificate_required',
};

function sdpLine(d: TimelineDatagram): string {
  const p = d.payload;
  if (p.length < 8 || p[0] !== 0x01 || p[1] !== 0xfe) return `UDP ${d.srcPort} → ${d.dstPort} (${p.length} bytes, not V2GTP)`;
  const type = (p[2]! << 8) | p[3]!;
  const body = p.subarray(8);
  const sec = (b: number | undefined) => (b === 0x00 ? 'TLS' : b === 0x10 ? 'no TLS' : `security 0x${(b ?? 0).toString(16)}`);
  if (type === 0x9000 && body.length >= 2) return `SECCDiscoveryReq (${sec(body[0])}, TCP) → ${d.dst}`;
  if (type === 0x9001 && body.length >= 20) {
    const g: string[] = [];
    for (let i = 0; i < 16; i += 2) g.push(((body[i]! << 8) | body[i + 1]!).toString(16));
    const addr = g.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
    return `SECCDiscoveryRes: [${addr}]:${(body[16]! << 8) | body[17]!}, ${sec(body[18])}`;
  }
  return `V2GTP 0x${type.toString(16)} over UDP (${body.length} bytes)`;
}

const ms = (us: bigint, first: bigint): number => Number(us - first) / 1000;
const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

/** Folds runs of the same request/response pair (same names, same response code) into one line. */
function v2gLines(msgs: CapturedV2gMessage[], first: bigint): TimelineLine[] {
  const out: TimelineLine[] = [];
  const responseTo = (j: number): CapturedV2gMessage | undefined => (msgs[j + 1]?.direction === 'rx' && !msgs[j + 1]!.error ? msgs[j + 1] : undefined);
  const key = (req: CapturedV2gMessage, res: CapturedV2gMessage | undefined) => `${req.name}|${res?.name ?? ''}|${res?.responseCode ?? ''}`;
  let i = 0;
  while (i < msgs.length) {
    const m = msgs[i]!;
    if (m.error) {
      out.push({ t: ms(m.atUs, first), kind: 'error', text: `${m.direction === 'tx' ? '→' : '←'} ${m.name}: ${m.error}` });
      i++;
      continue;
    }
    if (m.direction === 'rx') {
      out.push({ t: ms(m.atUs, first), kind: 'v2g', text: `← ${m.name} (unsolicited)` });
      i++;
      continue;
    }
    const res = responseTo(i);
    const k = key(m, res);
    const rtts = res?.rttMs !== undefined ? [res.rttMs] : [];
    let count = 1;
    let j = i + (res ? 2 : 1);
    while (j < msgs.length && msgs[j]!.direction === 'tx' && !msgs[j]!.error && res) {
      const r2 = responseTo(j);
      if (!r2 || key(msgs[j]!, r2) !== k) break;
      if (r2.rttMs !== undefined) rtts.push(r2.rttMs);
      count++;
      j += 2;
    }
    const rc = res?.responseCode;
    const failed = rc !== undefined && !rc.startsWith('OK');
    const timing = rtts.length === 0 ? ' — no response' : rtts.length === 1 ? ` ${fmt(rtts[0]!)} ms` : ` rtt median ${fmt(median(rtts))} ms, max ${fmt(Math.max(...rtts))} ms`;
    const answer = res ? ` ← ${res.name}${rc ? ` ${rc}` : ''}` : '';
    out.push({ t: ms(m.atUs, first), kind: failed || !res ? 'error' : 'v2g', text: `→ ${m.name}${count > 1 ? ` ×${count}` : ''}${answer}${timing}` });
    i = j;
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function sessionTimeline(c: TimelineInput): TimelineLine[] {
  const first = c.firstUs ?? 0n;
  const out: TimelineLine[] = [];
  for (const i of c.interfaces) out.push({ t: 0, kind: 'info', text: `interface ${i.name}: ${i.description}` });
  // SLAC: one line per MME, sounds folded.
  if (c.mmes.length) {
    const a = c.mmes[0]!.atUs;
    const b = c.mmes.at(-1)!.atUs;
    out.push({ t: ms(a, first), kind: 'stage', text: `SLAC: ${c.mmes.length} management frames, ${fmt(ms(b, a))} ms` });
    for (let i = 0; i < c.mmes.length;) {
      const m = c.mmes[i]!;
      let j = i + 1;
      while (j < c.mmes.length && c.mmes[j]!.mmtype === m.mmtype && c.mmes[j]!.src === m.src) j++;
      const name = MME_NAMES[m.mmtype] ?? `MMTYPE 0x${m.mmtype.toString(16)}`;
      out.push({ t: ms(m.atUs, first), kind: 'slac', text: `${m.direction === 'out' ? '→' : m.direction === 'in' ? '←' : '·'} ${name}${j - i > 1 ? ` ×${j - i}` : ''} ${m.src} → ${m.dst}` });
      i = j;
    }
  }
  const sdp = c.datagrams.filter((d) => d.srcPort === 15118 || d.dstPort === 15118);
  if (sdp.length) {
    out.push({ t: ms(sdp[0]!.atUs, first), kind: 'stage', text: `SDP: ${sdp.length} datagrams, ${fmt(ms(sdp.at(-1)!.atUs, sdp[0]!.atUs))} ms` });
    for (const d of sdp) out.push({ t: ms(d.atUs, first), kind: 'sdp', text: `${d.direction === 'out' ? '→' : '←'} ${sdpLine(d)}` });
  }
  for (const conn of c.connections) {
    const dur = conn.closedUs !== undefined ? `, ${fmt(ms(conn.closedUs, conn.openedUs))} ms` : ', open at the end of the capture';
    const what = conn.tls ? `TLS ${conn.decryption?.version ?? '?'} ${conn.decryption?.suite ?? ''}`.trim() : 'plain TCP';
    out.push({ t: ms(conn.openedUs, first), kind: 'stage', text: `TCP [${conn.client.address}]:${conn.client.port} → [${conn.server.address}]:${conn.server.port}: ${what}, ${conn.messages.length} V2G messages${dur}` });
    for (const a of conn.decryption?.alerts ?? []) {
      const name = TLS_ALERT_NAMES[a.description] ?? `alert ${a.description}`;
      out.push({ t: ms(a.atUs, first), kind: a.description === 0 ? 'tls' : 'error', text: `TLS alert from the ${a.from === 'client' ? 'EV' : 'SECC'}: ${a.level === 2 ? 'fatal ' : ''}${name}` });
    }
    if (conn.decryption?.problem) out.push({ t: ms(conn.openedUs, first), kind: 'error', text: `TLS not decrypted: ${conn.decryption.problem}${c.keyLog ? '' : ' (no keys.log in this folder)'}` });
    if (conn.gap) out.push({ t: ms(conn.openedUs, first), kind: 'error', text: 'packets missing from the capture: the stream after the gap is not decoded' });
    out.push(...v2gLines(conn.messages, first));
    if (conn.end === 'reset') out.push({ t: ms(conn.closedUs ?? conn.openedUs, first), kind: 'error', text: `TCP reset by the ${conn.resetBy === 'client' ? 'EV' : 'SECC'}` });
    else if (conn.end === 'fin') out.push({ t: ms(conn.closedUs!, first), kind: 'tcp', text: 'TCP closed in order (FIN)' });
  }
  for (const e of c.logErrors ?? []) {
    out.push({ t: e.time !== undefined ? e.time - Number(first / 1000n) : 0, kind: 'error', text: `log: ${e.sub ?? ''}: ${e.msg ?? ''}${e.code ? ` (${e.code})` : ''}` });
  }
  const r = c.report;
  if (r) {
    if (r.timeline?.length) out.push({ t: Number.MAX_SAFE_INTEGER, kind: 'info', text: `states: ${r.timeline.map((s) => `${s.state} ${s.ms} ms`).join(' → ')}` });
    if (r.endReason) out.push({ t: Number.MAX_SAFE_INTEGER, kind: r.ok ? 'info' : 'error', text: `end: ${r.ok ? 'ok' : 'FAILED'} ${r.endReason.code}: ${r.endReason.message}` });
  }
  return out.map((l, i) => ({ l, i })).sort((a, b) => a.l.t - b.l.t || a.i - b.i).map((x) => x.l);
}

/** Lines as printed: `  +1234.5 ms  SLAC: …`. */
export function formatTimeline(lines: readonly TimelineLine[]): string {
  return lines.map((l) => {
    const t = l.t === Number.MAX_SAFE_INTEGER ? '' : `+${l.t.toFixed(1)} ms`;
    const mark = l.kind === 'error' ? '!' : l.kind === 'stage' ? '#' : ' ';
    return `${t.padStart(12)} ${mark} ${l.text}`;
  }).join('\n');
}
