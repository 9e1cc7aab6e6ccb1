import { describe, expect, it } from 'vitest';
import { formatBenchLine } from './bench-format.ts';

describe('bench log line', () => {
  it('renders time, level, subsystem and message like an engineer writes it', () => {
    const t = new Date(2026, 0, 1, 16, 48, 58, 998).getTime();
    expect(formatBenchLine({ level: 'info', time: t, sub: 'SLAC', msg: 'matching process successful' }, false))
      .toBe('16:48:58.998 [INFO] SLAC: matching process successful');
  });
  it('appends structured fields as key=value and quotes values with spaces', () => {
    const line = formatBenchLine({ level: 40, time: 0, sub: 'TLS', msg: 'x', issuer: 'CN=V2G Root B', n: 3 });
    expect(line).toMatch(/\[WARN\] TLS: x issuer="CN=V2G Root B" n=3$/);
  });
});
