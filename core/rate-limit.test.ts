import { describe, expect, it } from 'vitest';
import { messageTemplate, OVERFLOW_KEY_SUFFIX, RepeatLimiter } from './rate-limit.ts';

describe('RepeatLimiter', () => {
  it('passes the burst, counts the rest and summarises them when the window is over', () => {
    const l = new RepeatLimiter({ windowMs: 1000, burst: 3 });
    const passed = Array.from({ length: 10 }, (_, i) => l.hit('WARN|OEM', 'dropped', i)).filter((r) => r.pass).length;
    expect(passed).toBe(3);
    expect(l.pending).toBe(1);
    expect(l.expire(999)).toEqual([]);
    const [summary, ...rest] = l.expire(1000);
    expect(rest).toEqual([]);
    expect(summary).toMatchObject({ suppressed: 7, windowStart: 0 });
    // A new window starts with the next event.
    expect(l.hit('WARN|OEM', 'dropped', 1001).pass).toBe(true);
  });

  it('reports an ended window on the next event of any key, first', () => {
    const l = new RepeatLimiter({ windowMs: 100, burst: 1 });
    l.hit('g', 'a', 0, 'sample-a');
    l.hit('g', 'a', 1);
    const r = l.hit('g', 'b', 150);
    expect(r.pass).toBe(true);
    expect(r.ended).toEqual([expect.objectContaining({ sample: 'sample-a', suppressed: 1 })]);
  });

  it('keeps keys apart by group and key', () => {
    const l = new RepeatLimiter({ windowMs: 1000, burst: 1 });
    expect(l.hit('WARN|OEM', 'x', 0).pass).toBe(true);
    expect(l.hit('WARN|TLS', 'x', 0).pass).toBe(true);
    expect(l.hit('WARN|OEM', 'y', 0).pass).toBe(true);
    expect(l.hit('WARN|OEM', 'x', 0).pass).toBe(false);
  });

  it('bounds memory: beyond maxKeys, new keys share one overflow key per group', () => {
    const l = new RepeatLimiter({ windowMs: 1000, burst: 2, maxKeys: 4 });
    let passed = 0;
    for (let i = 0; i < 10_000; i++) if (l.hit('WARN|OEM', `distinct ${i}`, 0).pass) passed++;
    expect(l.trackedKeys).toBe(5); // 4 keys + the overflow key
    expect(passed).toBe(4 + 2);
    const ended = l.flush();
    expect(ended.find((s) => s.key.endsWith(OVERFLOW_KEY_SUFFIX))?.suppressed).toBe(10_000 - 4 - 2);
  });

  it('flush ends every window', () => {
    const l = new RepeatLimiter({ windowMs: 1000, burst: 1 });
    l.hit('g', 'a', 0);
    l.hit('g', 'a', 0);
    l.hit('g', 'b', 0);
    expect(l.flush().map((s) => s.suppressed)).toEqual([1]);
    expect(l.trackedKeys).toBe(0);
  });

  it('refuses nonsense options', () => {
    expect(() => new RepeatLimiter({ windowMs: 0, burst: 1 })).toThrow(RangeError);
    expect(() => new RepeatLimiter({ windowMs: 10, burst: 0 })).toThrow(RangeError);
  });
});

describe('messageTemplate', () => {
  it('treats numbers and long hex runs as placeholders', () => {
    expect(messageTemplate('payload of 70012 bytes exceeds 4096')).toBe(messageTemplate('payload of 81 bytes exceeds 4096'));
    expect(messageTemplate('request 0011aabbccddeeff dropped')).toBe('request <hex> dropped');
    expect(messageTemplate('root-CA request dropped')).not.toBe(messageTemplate('root-list request dropped'));
  });
});
