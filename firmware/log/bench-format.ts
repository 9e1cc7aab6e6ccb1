/**
 * Renders one pino JSON record as a bench-log line: `HH:MM:SS.mmm [LEVEL] SUB: message`.
 * Structured fields (other than the envelope) follow as ` key=value` so a line stays greppable.
 */
const LEVEL_NAMES: Record<string, string> = {
  '10': 'TRACE', '20': 'DEBUG', '30': 'INFO', '40': 'WARN', '50': 'ERROR', '60': 'FATAL',
  trace: 'TRACE', debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR', fatal: 'FATAL',
};
const ENVELOPE = new Set(['level', 'time', 'msg', 'sub', 'pid', 'hostname']);

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

export function formatClock(epochMs: number): string {
  const d = new Date(epochMs);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function renderValue(v: unknown): string {
  if (typeof v === 'string') return /[\s=]/.test(v) ? JSON.stringify(v) : v;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v);
}

export function formatBenchLine(record: Record<string, unknown>, withFields = true): string {
  const time = typeof record.time === 'number' ? formatClock(record.time) : '--:--:--.---';
  const level = LEVEL_NAMES[String(record.level)] ?? String(record.level).toUpperCase();
  const sub = typeof record.sub === 'string' ? `${record.sub}: ` : '';
  let line = `${time} [${level}] ${sub}${String(record.msg ?? '')}`;
  if (withFields) {
    for (const [k, v] of Object.entries(record)) {
      if (ENVELOPE.has(k) || v === undefined) continue;
      if (k === 'err' && v && typeof v === 'object') {
        const e = v as { code?: string; message?: string };
        line += ` err=${renderValue(e.code ?? e.message ?? 'error')}`;
        continue;
      }
      line += ` ${k}=${renderValue(v)}`;
    }
  }
  return line;
}
