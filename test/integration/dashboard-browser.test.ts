/**
 * The live dashboard in a real browser (issue #11, Must show 4): Debian's chromium driven by playwright-core against
 * `evcc bench-session --dashboard` — the real bench session path (swtpm vehicle, SLAC, SDP, TLS with the Solution C
 * root fetch, ISO 15118-2 PnC, battery model time-scaled). The page loads; Start without the token is refused, with
 * it a session runs and the timeline and the chart update while it does; Stop ends a running session; an
 * unknown-root session with the OEM fetch off (`--no-ota`) shows the failure banner in bench words. Screenshots go to
 * test-results/dashboard/ (CI artifacts).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { describeWith, tool } from '../support/prereq.ts';

const repo = join(import.meta.dirname, '..', '..');
const SHOTS = join(repo, 'test-results', 'dashboard');
const CHROMIUM = '/usr/bin/chromium';

interface Bench { child: ChildProcessWithoutNullStreams; url: string; token: string; stderr: () => string }

const benches: Bench[] = [];
let captureDir = '';

/** Starts `evcc bench-session --dashboard 0 …` and waits for its DASHBOARD_UP line (URL and token). */
async function startBench(extra: string[]): Promise<Bench> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'bin/evcc.ts'), 'bench-session', '--dashboard', '0', '--time-scale', '300', '--capture-dir', captureDir, ...extra], {
    cwd: repo, env: { ...process.env, EVCC_DEBUG: '1' },
  });
  let stderr = '';
  child.stdout.resume();
  const up = new Promise<{ url: string; token: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no DASHBOARD_UP line in 30 s:\n${stderr}`)), 30_000);
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /dashboard at (http:\/\/127\.0\.0\.1:\d+\/)#token=([0-9a-f]{32})/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1]!, token: m[2]! });
      }
    });
    child.on('exit', (code) => reject(new Error(`bench exited (${code}) before the dashboard came up:\n${stderr}`)));
  });
  const { url, token } = await up;
  const b = { child, url, token, stderr: () => stderr };
  benches.push(b);
  return b;
}

/**
 * SIGTERM ends the bench: exit 0 when no session runs; during a session's clean-up the bench re-raises the signal
 * after stopping its children (bench-session.ts onTerminatingSignal), so the process ends by SIGTERM.
 */
async function stopBench(b: Bench): Promise<string> {
  const outcome = () => (b.child.signalCode ? `signal ${b.child.signalCode}` : `exit ${b.child.exitCode}`);
  if (b.child.exitCode !== null || b.child.signalCode !== null) return outcome();
  const exited = new Promise<void>((r) => b.child.once('exit', () => r()));
  b.child.kill('SIGTERM');
  await exited;
  return outcome();
}
const CLEAN_STOP = /^(exit 0|signal SIGTERM)$/;

const timelineNames = (page: Page) => page.$$eval('#timeline tbody tr td:first-child', (tds) => tds.map((t) => t.textContent ?? ''));
const sampleCount = async (page: Page) => Number((await page.textContent('#sample-count'))!.split(' ')[0]);

// The bench's vehicle TPM stage (PnC with CertificateInstallation) needs the same tools as the main job's test.
describeWith([tool(CHROMIUM), tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl')])('dashboard in chromium (playwright-core) against the bench session', () => {
  let browser: Browser;

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    captureDir = await mkdtemp(join(tmpdir(), 'evcc-dash-capture-'));
    // As root, chromium's sandbox needs user namespaces the CI machine may not grant: headless without it.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });

  afterAll(async () => {
    await browser?.close();
    for (const b of benches.splice(0)) await stopBench(b);
    if (captureDir) await rm(captureDir, { recursive: true, force: true });
  });

  it('loads; Start needs the token; a session updates timeline and chart live; Stop ends a running session', async () => {
    const bench = await startBench([]);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
    await page.goto(bench.url);
    expect(await page.title()).toBe('EVCC bench dashboard');
    await page.waitForSelector('#link-state.live');
    expect(await page.textContent('#session-state')).toContain('idle');

    // Start without the token: refused, nothing runs.
    await page.click('#start');
    await page.waitForSelector('#control-status.refused');
    expect(await page.textContent('#control-status')).toContain('token required');
    expect(await page.evaluate(async () => (await fetch('/api/session/stop', { method: 'POST' })).status)).toBe(401);
    expect(await page.textContent('#session-state')).toContain('idle');

    // With the token: the session runs; the timeline grows through the stages and the chart gets samples.
    await page.fill('#token', bench.token);
    await page.click('#start');
    await page.waitForSelector('#control-status.ok');
    await page.waitForFunction(() => document.querySelector('#session-state')?.textContent === 'session running');
    await page.waitForFunction(() => [...document.querySelectorAll('#timeline tbody td:first-child')].some((td) => td.textContent === 'SLAC'), undefined, { timeout: 30_000 });
    await page.waitForFunction(() => [...document.querySelectorAll('#timeline tbody td:first-child')].some((td) => td.textContent?.startsWith('Charge loop')), undefined, { timeout: 30_000 });
    const first = await sampleCount(page);
    await page.waitForFunction((n) => Number(document.querySelector('#sample-count')!.textContent!.split(' ')[0]) > n + 5, first, { timeout: 10_000 });
    expect(await page.textContent('#present-voltage')).toMatch(/^\d{3}\.\d V$/);
    await page.screenshot({ path: join(SHOTS, 'session-running.png'), fullPage: true });

    await page.waitForFunction(() => document.querySelector('#session-state')?.textContent === 'session complete', undefined, { timeout: 60_000 });
    const names = await timelineNames(page);
    expect(names.slice(0, 6)).toEqual(['Plug-in', 'SLAC', 'SDP', 'TLS', 'Root fetch (Solution C)', 'TLS (attempt 2)']);
    for (const n of ['SupportedAppProtocol', 'SessionSetup', 'CertificateInstallation', 'Authorization', 'CableCheck', 'PreCharge', 'Charge loop (CurrentDemand)', 'WeldingDetection', 'SessionStop']) expect(names).toContain(n);
    expect(names.at(-1)).toBe('Ended');
    expect(await sampleCount(page)).toBeGreaterThan(20);
    expect(await page.isHidden('#failure')).toBe(true);
    await page.screenshot({ path: join(SHOTS, 'session-complete.png'), fullPage: true });

    // The certificate view: factory root A, root B from the Solution C fetch, the contract installed in the session.
    await page.click('button[data-tab="certificates"]');
    const certs = await page.$$eval('#certificates tbody tr', (rows) => rows.map((r) => r.textContent ?? ''));
    expect(certs.some((r) => r.includes('V2G Root CA A') && r.includes('factory'))).toBe(true);
    expect(certs.some((r) => r.includes('V2G Root CA B') && r.includes('Solution C fetch'))).toBe(true);
    expect(certs.some((r) => r.startsWith('contract'))).toBe(true);
    await page.screenshot({ path: join(SHOTS, 'certificates.png'), fullPage: true });
    await page.click('button[data-tab="system"]');
    expect(await page.textContent('#system')).toContain('measured into PCR 14');
    await page.click('button[data-tab="log"]');

    // Stop: a second session, stopped in its charge loop, ends in order (the vehicle asks for SessionStop).
    // The first session's report says complete before its run has finished its clean-up (commit, TPM and
    // simulator shutdown): until then Start is refused ("a session is running"), as a bench engineer would see it.
    await startWhenAccepted(page);
    await page.waitForFunction(() => document.querySelector('#session-state')?.textContent === 'session running');
    await page.waitForFunction(() => [...document.querySelectorAll('#timeline tbody td:first-child')].some((td) => td.textContent?.startsWith('Charge loop')), undefined, { timeout: 30_000 });
    await page.click('#stop');
    await page.waitForFunction(() => document.querySelector('#session-state')?.textContent !== 'session running', undefined, { timeout: 15_000 });
    const stopped = await timelineNames(page);
    expect(stopped).toContain('SessionStop');
    expect(bench.stderr()).toMatch(/dashboard: Stop accepted/);
    const soc = Number((await page.textContent('#soc-text'))!.split(' ')[0]);
    expect(soc).toBeLessThan(80); // stopped before the target SoC
    await page.screenshot({ path: join(SHOTS, 'session-stopped.png'), fullPage: true });
    await page.close();
    expect(await stopBench(bench), bench.stderr().split('\n').slice(-20).join('\n')).toMatch(CLEAN_STOP);
  }, 150_000);

  it('an unknown-root session with the OEM fetch off shows the failure banner in bench words', async () => {
    const bench = await startBench(['--no-ota']);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    // The URL the log prints carries the token in its fragment (never sent to the server).
    await page.goto(`${bench.url}#token=${bench.token}`);
    await page.waitForSelector('#link-state.live');
    expect(await page.inputValue('#token')).toBe(bench.token);
    await page.click('#start');
    await page.waitForSelector('#failure:not([hidden])', { timeout: 30_000 });
    expect(await page.textContent('#failure-headline')).toBe('TLS connection cannot be established: the charger\'s chain ends in an unknown root CA');
    expect(await page.textContent('#failure-detail')).toMatch(/^TLS_UNKNOWN_ROOT: chain ends in a root that is not installed: issuer "CN=V2G Root CA B/);
    expect(await page.textContent('#failure-hint')).toContain('Solution C');
    await page.waitForFunction(() => document.querySelector('#session-state')?.textContent === 'session failed');
    const names = await timelineNames(page);
    expect(names).toEqual(['Plug-in', 'SLAC', 'SDP', 'TLS', 'Failed']);
    expect(await page.$eval('#timeline tbody tr:nth-child(4)', (tr) => tr.className)).toContain('phase-failed');
    await page.screenshot({ path: join(SHOTS, 'unknown-root.png'), fullPage: true });
    await page.close();
    expect(await stopBench(bench), bench.stderr().split('\n').slice(-20).join('\n')).toMatch(CLEAN_STOP);
  }, 90_000);
});

/** Clicks Start until the dashboard accepts it (the previous session may still be finishing), at most 30 s. */
async function startWhenAccepted(page: Page): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    // Cleared first, so the answer read below is this click's (the first session left "Start: started" there).
    await page.$eval('#control-status', (el) => { el.textContent = ''; });
    await page.click('#start');
    await page.waitForFunction(() => (document.querySelector('#control-status')?.textContent ?? '') !== '');
    const status = (await page.textContent('#control-status')) ?? '';
    if (status === 'Start: started') return;
    expect(status).toBe('Start refused: a session is running');
    if (Date.now() > until) throw new Error('Start still refused after 30 s: the previous session did not finish');
    await page.waitForTimeout(250);
  }
}
