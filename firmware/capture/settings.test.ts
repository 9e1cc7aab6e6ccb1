import { describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { CaptureSettings, keyLogDecision } from './settings.ts';

describe('key-log policy', () => {
  const production = CaptureSettings.parse({});
  it('defaults: capture off, production profile, no key log', () => {
    expect(production).toMatchObject({ enabled: false, profile: 'production', tlsKeyLog: false, allowKeyLogInProduction: false });
    expect(keyLogDecision(production, [])).toEqual({ enabled: false });
  });
  it('a production config refuses any key log route, typed', () => {
    let err: unknown;
    try {
      keyLogDecision(production, ['--keylog', 'tls.keyLogFile']);
    } catch (e) {
      err = e;
    }
    expect(isEvccError(err, 'CAPTURE_KEYLOG_REFUSED')).toBe(true);
    expect((err as Error).message).toMatch(/asked by --keylog, tls\.keyLogFile/);
  });
  it('an explicit enable in production, or a bench config, allows it with a warning that says which', () => {
    expect(keyLogDecision({ profile: 'production', allowKeyLogInProduction: true }, ['capture.tlsKeyLog'])).toMatchObject({ enabled: true, warning: expect.stringMatching(/PRODUCTION config/) });
    expect(keyLogDecision({ profile: 'bench', allowKeyLogInProduction: false }, ['--keylog'])).toMatchObject({ enabled: true, warning: expect.stringMatching(/bench config/) });
  });
  it('unknown keys are refused (a typo cannot silently turn the capture off)', () => {
    expect(CaptureSettings.safeParse({ enable: true }).success).toBe(false);
  });
});
