import { describe, expect, it } from 'vitest';
import { parseSettings } from '../settings.ts';
import { OTA_RESERVE_AFTER_FETCH_MS, OTA_ROOT_FETCH_MAX_MS } from './constants.ts';
import { OtaSettings } from './settings.ts';

describe('ota settings', () => {
  it('defaults follow the setup budget and fall back to retry-later', () => {
    const s = parseSettings(OtaSettings, {}, 'ota');
    expect(s).toMatchObject({ fallback: 'retry-later', reserveAfterFetchMs: OTA_RESERVE_AFTER_FETCH_MS, rootFetchMaxMs: OTA_ROOT_FETCH_MAX_MS, protocolVersion: 5 });
    expect(s.proactiveSync.enabled).toBe(true);
  });
  it('refuses a typo, a plain-TCP fallback and a non-MQTT URL with CONFIG_INVALID', () => {
    expect(() => parseSettings(OtaSettings, { fallbak: 'eim' }, 'ota')).toThrow(/ota/);
    expect(() => parseSettings(OtaSettings, { fallback: 'plain-tcp' }, 'ota')).toThrowError(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => parseSettings(OtaSettings, { brokerUrl: 'http://x' }, 'ota')).toThrowError(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
