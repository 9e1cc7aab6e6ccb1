import { describe, expect, it } from 'vitest';
import { VirtualClock } from './virtual.ts';

describe('VirtualClock', () => {
  it('fires timers in due order and only when time reaches them', () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    clock.setTimer(() => fired.push('b'), 20);
    clock.setTimer(() => fired.push('a'), 10);
    const c = clock.setTimer(() => fired.push('c'), 30);
    clock.advance(15);
    expect(fired).toEqual(['a']);
    clock.clearTimer(c);
    clock.advance(100);
    expect(fired).toEqual(['a', 'b']);
    expect(clock.now()).toBe(115);
    expect(clock.pending).toBe(0);
  });
  it('sleep rejects with the abort reason and leaves no timer behind', async () => {
    const clock = new VirtualClock();
    const ac = new AbortController();
    const p = clock.sleep(1000, ac.signal);
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(clock.pending).toBe(0);
  });
});
