import { describe, expect, it } from 'vitest';
import { parsePilotLine, PILOT_LINE_MAX, PilotLineSplitter } from './serial-board.ts';

/** A CP line padded with spaces (tokens may be separated by several) to exactly `length` bytes. */
function cpLineOf(length: number): string {
  const head = 'CP B';
  const tail = '5.0';
  return `${head}${' '.repeat(length - head.length - tail.length)}${tail}`;
}

function split(input: string): { lines: string[]; overlong: number } {
  const s = new PilotLineSplitter();
  const lines: string[] = [];
  s.push(input, (l) => lines.push(l));
  return { lines, overlong: s.overlong };
}

describe('PilotLineSplitter: the 64-byte limit is on the line without its \\r\\n', () => {
  it('a 64-byte line ending in CRLF is kept (the \\r is ignored, README)', () => {
    const line = cpLineOf(PILOT_LINE_MAX);
    expect(line).toHaveLength(64);
    const r = split(`${line}\r\n`);
    expect(r.overlong).toBe(0);
    expect(r.lines).toHaveLength(1);
    expect(parsePilotLine(r.lines[0]!)).toEqual({ kind: 'cp', reading: { state: 'B', dutyPercent: 5 } });
  });

  it('the same line with LF only is kept; 65 bytes of content are dropped, with CRLF or without', () => {
    expect(split(`${cpLineOf(64)}\n`).lines).toHaveLength(1);
    expect(split(`${cpLineOf(65)}\r\n`)).toEqual({ lines: [], overlong: 1 });
    expect(split(`${cpLineOf(65)}\n`)).toEqual({ lines: [], overlong: 1 });
  });

  it('a \\r inside the line is content: 64 bytes + \\r + x, or + \\r\\r, is over-long', () => {
    expect(split(`${cpLineOf(64)}\rx\n`).overlong).toBe(1);
    expect(split(`${cpLineOf(64)}\r\r\n`).overlong).toBe(1);
  });

  it('the limit holds across chunk boundaries and the next line is read normally', () => {
    const s = new PilotLineSplitter();
    const lines: string[] = [];
    const input = `${cpLineOf(64)}\r\nCP A 0\r\n`;
    for (const ch of input) s.push(ch, (l) => lines.push(l));
    expect(lines.map((l) => parsePilotLine(l).kind)).toEqual(['cp', 'cp']);
    expect(s.overlong).toBe(0);
  });
});
