import { describe, expect, it } from 'vitest';
import { EvccError } from '../core/errors.ts';
import { debugFromEnv, describeFailure } from './failure.ts';

describe('describeFailure', () => {
  it('a typed failure: one line with its code, exit 1', () => {
    const r = describeFailure(new EvccError('CONFIG_INVALID', 'bad\n  value'), false);
    expect(r).toEqual({ text: 'evcc: CONFIG_INVALID: bad value\n', exitCode: 1 });
  });

  it('anything else is INTERNAL, exit 70, still one line without a stack', () => {
    const r = describeFailure(new TypeError('x is not a function'), false);
    expect(r).toEqual({ text: 'evcc: INTERNAL: x is not a function\n', exitCode: 70 });
    expect(describeFailure('thrown string', false).text).toBe('evcc: INTERNAL: thrown string\n');
    expect(describeFailure(new Error(''), false).text).toBe('evcc: INTERNAL: Error\n');
  });

  it('with debug: the stack and the cause chain follow the line', () => {
    const cause = new Error('ENOENT: no such file');
    const r = describeFailure(new EvccError('CONFIG_INVALID', 'cannot read x', {}, { cause }), true);
    expect(r.text.split('\n')[0]).toBe('evcc: CONFIG_INVALID: cannot read x');
    expect(r.text).toMatch(/EvccError: cannot read x\n\s+at /);
    expect(r.text).toMatch(/caused by: Error: ENOENT: no such file\n\s+at /);
  });

  it('EVCC_DEBUG=1 / true / yes turns debug on, anything else does not', () => {
    expect(debugFromEnv({ EVCC_DEBUG: '1' })).toBe(true);
    expect(debugFromEnv({ EVCC_DEBUG: 'yes' })).toBe(true);
    expect(debugFromEnv({ EVCC_DEBUG: '0' })).toBe(false);
    expect(debugFromEnv({})).toBe(false);
  });
});
