import { describe, expect, it } from 'vitest';
import { isRegisteredCode } from '../../core/error-codes.ts';
import { parseCert } from '../pki/cert.ts';
import { generateTestPki } from '../pki/generate.ts';
import { certificateView, rootOrigin } from './certificates.ts';
import { describeFailureForBench } from './failure-words.ts';
import { DashboardFeed, type DashboardInput } from './feed.ts';
import { redactConfig, systemView } from './system.ts';

const pv = (value: number, unit: string, m = 0) => ({ Multiplier: m, Unit: unit, Value: Math.round(value / 10 ** m) });
const T0 = Date.UTC(2026, 11, 3, 8, 0, 0);
const log = (dt: number, sub: string, msg: string, fields: Record<string, unknown> = {}): DashboardInput =>
  ({ kind: 'log', at: T0 + dt, record: { level: 'info', time: T0 + dt, sub, msg, ...fields } });
const transition = (dt: number, from: string, to: string) => log(dt, 'EVCC', `${from} -> ${to}`, { from, to });
const tx = (dt: number, name: string, body: Record<string, unknown> = {}, soc?: number): DashboardInput =>
  ({ kind: 'message', at: T0 + dt, message: { direction: 'tx', name, document: { Body: { [name]: body } } }, ...(soc !== undefined ? { socPercent: soc } : {}) });
const rx = (dt: number, name: string, body: Record<string, unknown> = {}): DashboardInput =>
  ({ kind: 'message', at: T0 + dt, message: { direction: 'rx', name, document: { Header: {}, Body: { [name]: body } }, rttMs: 2 } });

function run(inputs: DashboardInput[]): DashboardFeed {
  const feed = new DashboardFeed();
  for (const i of inputs) feed.apply(i);
  return feed;
}

describe('DashboardFeed', () => {
  it('a session with the unknown-root path: timeline phases in order with durations, repetitions counted', () => {
    const feed = run([
      { kind: 'sessionStarted', at: T0, label: 'bench' },
      transition(50, 'WaitForPlugIn', 'Matching'),
      transition(550, 'Matching', 'WaitForSeccDiscoveryRes'),
      transition(560, 'WaitForSeccDiscoveryRes', 'WaitForChannel'),
      log(580, 'TLS', 'SECC chain ends in a V2G root we do not have', { cp: 'TLS-UNKNOWN-ROOT' }),
      log(581, 'OTA', 'requesting V2G root from OEM backend', { requestId: 'ab12', budgetMs: 8000 }),
      log(600, 'TLS', 'retrying TLS connection', { attempt: 2 }),
      transition(610, 'WaitForChannel', 'V2GSession'),
      tx(640, 'supportedAppProtocolReq'),
      tx(660, 'SessionSetupReq'),
      tx(700, 'CableCheckReq'), tx(1200, 'CableCheckReq'), tx(1700, 'CableCheckReq'),
      tx(1800, 'CurrentDemandReq'), tx(1900, 'CurrentDemandReq'),
      tx(2000, 'SessionStopReq'),
      { kind: 'sessionEnded', at: T0 + 2010, end: { ok: true, state: 'Ended', endReason: { code: 'SESSION_COMPLETED', message: 'done', orderly: true } } },
    ]);
    const s = feed.snapshot();
    expect(s.timeline.map((p) => p.name)).toEqual([
      'Plug-in', 'SLAC', 'SDP', 'TLS', 'Root fetch (Solution C)', 'TLS (attempt 2)', 'SupportedAppProtocol', 'SessionSetup', 'CableCheck',
      'Charge loop (CurrentDemand)', 'SessionStop', 'Ended',
    ]);
    expect(s.timeline.map((p) => p.ms)).toEqual([50, 500, 10, 21, 19, 10, 50, 40, 1100, 200, 10, 0]);
    expect(s.timeline.find((p) => p.name === 'CableCheck')?.count).toBe(3);
    expect(s.timeline.every((p) => p.status === 'done')).toBe(true);
    expect(s.session).toMatchObject({ state: 'ended', code: 'SESSION_COMPLETED' });
    expect(s.failure).toBeUndefined();
  });

  it('charger limits and present values from the decoded messages become chart samples with the EV SoC', () => {
    const feed = new DashboardFeed();
    feed.apply({ kind: 'sessionStarted', at: T0, label: 'bench' });
    feed.apply(rx(100, 'ChargeParameterDiscoveryRes', { DC_EVSEChargeParameter: { EVSEMaximumVoltageLimit: pv(500, 'V', -1), EVSEMaximumCurrentLimit: pv(200, 'A', -1), EVSEMaximumPowerLimit: pv(100_000, 'W', 1) } }));
    const ups = feed.apply(rx(1000, 'CurrentDemandRes', { EVSEPresentVoltage: pv(365, 'V', -1), EVSEPresentCurrent: pv(150, 'A', -1) }));
    feed.apply(tx(1100, 'CurrentDemandReq', { EVTargetVoltage: pv(370, 'V', -1), EVTargetCurrent: pv(200, 'A', -1) }, 42.04));
    feed.apply(rx(1200, 'CurrentDemandRes', { EVSEPresentVoltage: pv(366, 'V', -1), EVSEPresentCurrent: pv(151, 'A', -1) }));
    expect(ups.map((u) => u.type)).toEqual(['sample', 'limits']);
    const s = feed.snapshot();
    expect(s.limits).toMatchObject({ maxVoltageV: 500, maxCurrentA: 200, maxPowerW: 100_000, presentVoltageV: 366, presentCurrentA: 151, presentPowerW: 55_266, evTargetVoltageV: 370, socPercent: 42 });
    expect(s.samples).toEqual([
      { t: 1, voltageV: 365, currentA: 150, powerKw: 54.75, limitVoltageV: 500, limitCurrentA: 200, limitPowerKw: 100 },
      { t: 1.2, voltageV: 366, currentA: 151, powerKw: 55.27, socPercent: 42, limitVoltageV: 500, limitCurrentA: 200, limitPowerKw: 100 },
    ]);
  });

  it('a failed session: the failing phase is marked and the banner speaks bench words', () => {
    const feed = run([
      { kind: 'sessionStarted', at: T0, label: 'bench' },
      transition(50, 'WaitForPlugIn', 'Matching'),
      transition(550, 'Matching', 'WaitForSeccDiscoveryRes'),
      transition(560, 'WaitForSeccDiscoveryRes', 'WaitForChannel'),
      log(580, 'TLS', 'SECC chain ends in a V2G root we do not have', { cp: 'TLS-UNKNOWN-ROOT' }),
      { kind: 'sessionEnded', at: T0 + 590, end: { ok: false, state: 'Failed', endReason: { code: 'TLS_UNKNOWN_ROOT', message: 'chain ends in a root that is not installed: issuer "CN=V2G Root CA B"', orderly: false } } },
    ]);
    const s = feed.snapshot();
    expect(s.timeline.map((p) => `${p.name}:${p.status}`)).toEqual(['Plug-in:done', 'SLAC:done', 'SDP:done', 'TLS:failed', 'Failed:failed']);
    expect(s.failure).toMatchObject({
      headline: 'TLS connection cannot be established: the charger\'s chain ends in an unknown root CA',
      detail: 'TLS_UNKNOWN_ROOT: chain ends in a root that is not installed: issuer "CN=V2G Root CA B"', state: 'Failed',
    });
    // A new session clears the banner and the timeline, the log stays.
    feed.apply({ kind: 'sessionStarted', at: T0 + 5000, label: 'bench' });
    expect(feed.snapshot().failure).toBeUndefined();
    expect(feed.snapshot().timeline.map((p) => p.name)).toEqual(['Plug-in']);
    expect(feed.snapshot().log).toHaveLength(4);
  });

  it('the log is bounded, and lines read like the bench log', () => {
    const feed = new DashboardFeed({ maxLogLines: 3 });
    for (let i = 0; i < 5; i++) feed.apply(log(i, 'SLAC', `line ${i}`, { cp: 'X' }));
    const lines = feed.snapshot().log;
    expect(lines.map((l) => l.text.replace(/^\d\d:\d\d:\d\d\.\d{3} /, ''))).toEqual(['[INFO] SLAC: line 2', '[INFO] SLAC: line 3', '[INFO] SLAC: line 4']);
    expect(lines[0]).toMatchObject({ cp: 'X', sub: 'SLAC', level: 'info' });
  });
});

describe('failure words', () => {
  it('every code with words of its own is a registered code', async () => {
    const src = await import('node:fs/promises').then((f) => f.readFile(new URL('./failure-words.ts', import.meta.url), 'utf8'));
    const table = src.slice(src.indexOf('const FAILURE_WORDS'), src.indexOf('/** Failure classes'));
    const codes = [...table.matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
    expect(codes.length).toBeGreaterThan(20);
    expect(codes.filter((c) => !isRegisteredCode(c))).toEqual([]);
  });

  it('codes without words of their own: their stage and the registry meaning', () => {
    expect(describeFailureForBench('SLAC_DECODE_TRUNCATED', 'x').headline).toMatch(/^no PLC link to the charger \(SLAC\): /);
    expect(describeFailureForBench('NOT_A_CODE', 'multi\n  line').detail).toBe('NOT_A_CODE: multi line');
  });
});

describe('certificate and system views', () => {
  it('roots with origin, fingerprint and expiry warnings; contract chains marked active', async () => {
    const pki = await generateTestPki();
    const far = new Date(parseCert(pki.a.root.der).notAfter.getTime() - 10 * 86_400_000);
    const view = certificateView({
      roots: [{ der: pki.a.root.der, source: 'factory', approvedBy: 'release' }, { der: pki.b.root.der, source: 'ota:49ec966a0742f3a1' }],
      contractChains: [{ id: 'k1', chain: [pki.a.root.der] }], activeContractId: 'k1', storeMode: 'full',
    }, far);
    expect(view.rows.map((r) => [r.role, r.origin ?? r.contractId, r.fingerprint.length])).toEqual([
      ['v2g-root', 'factory', 64], ['v2g-root', 'Solution C fetch (request 49ec966a)', 64], ['contract', 'k1', 64],
    ]);
    expect(view.rows[0]!.expiry).toBe('expires-soon');
    expect(view.warnings[0]).toMatch(/^V2G root CN=V2G Root CA A.* expires in (9|10) day\(s\)/);
    expect(rootOrigin('ota-sync:0123456789')).toBe('proactive sync (request 01234567)');
  });

  it('degraded mode says why; secrets in the config are hidden', () => {
    const v = systemView({
      mode: 'bench', config: { ota: { keyPassphrase: 'x', caFile: '/etc/ca.pem' } },
      readiness: { ready: false, code: 'TPM_POLICY_PCR', message: 'PCR 14 differs' }, boot: { error: 'bundle signature invalid' },
    });
    expect(v.security).toMatchObject({ mode: 'eim-only', degraded: true, why: 'degraded mode (TPM_POLICY_PCR): PCR 14 differs' });
    expect(v.boot.state).toBe('not measured: bundle signature invalid');
    expect(v.config).toEqual({ ota: { keyPassphrase: '(hidden)', caFile: '/etc/ca.pem' } });
    expect(redactConfig({ token: 'a', list: [{ secret: 1 }] })).toEqual({ token: '(hidden)', list: [{ secret: '(hidden)' }] });
  });
});
