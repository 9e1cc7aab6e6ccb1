import { performance } from 'node:perf_hooks';
import { runBenchSession } from '../bin/commands/bench-session.ts';
import type { BenchReport } from './run.ts';
import { summarize } from './stats.ts';

/**
 * The main job (`evcc bench-session`, in-process, logs silent), a whole accelerated ISO-2 DC PnC session with the
 * battery model at time scale 600 (20 → 80 % SoC): plug-in → SessionSetupRes, the PaymentDetails → AuthorizationRes
 * exchange including the TPM signature (through the pre-armed policy session), the TPM signature alone, the
 * CurrentDemand round trip, and the whole run; the TPM-less run (--no-tpm, EIM) as the peer in the same run.
 */
const N = 5;

export async function run(): Promise<BenchReport> {
  const plain: number[] = [];
  const withTpm: number[] = [];
  const setup: number[] = [];
  const sign: number[] = [];
  const auth: number[] = [];
  const cd: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < N; i++) {
    for (const tpm of [false, true]) {
      const t = performance.now();
      const r = await runBenchSession({ logLevel: 'silent' }, { tls: '1.2', chargerPki: 'b', protocol: 'iso2', ota: true, tpm, timeScale: 600 });
      const ms = performance.now() - t;
      if (!r.ok) throw new Error(`bench session failed: ${r.endReason.code}: ${r.endReason.message}`);
      rss.push(process.memoryUsage().rss / 1024 / 1024);
      if (!tpm) {
        plain.push(ms);
        continue;
      }
      if ('skipped' in r.tpm) throw new Error(`TPM stage skipped: ${r.tpm.skipped}`);
      if (r.tpm.contractKey !== 'signed') throw new Error('the contract key did not sign the AuthorizationReq');
      withTpm.push(ms);
      setup.push(r.setupMs ?? Number.NaN);
      const s = r.session!;
      sign.push(s.effectTimes.sign?.medianMs ?? Number.NaN);
      auth.push((s.roundTrips.PaymentDetailsRes?.medianMs ?? 0) + (s.effectTimes.sign?.medianMs ?? 0) + (s.roundTrips.AuthorizationRes?.medianMs ?? 0));
      cd.push(s.roundTrips.CurrentDemandRes?.medianMs ?? Number.NaN);
    }
  }
  const p = summarize(plain);
  const w = summarize(withTpm);
  return {
    title: `Main job: evcc bench-session in-process, ISO-2 DC, battery 20 → 80 % at time scale 600 (${N} runs each, alternating; logs silent)`,
    rows: [
      { name: 'whole run, no TPM (--no-tpm: EIM)', ...p, unit: 'ms' },
      { name: 'whole run, vehicle TPM on swtpm (PnC)', ...w, unit: 'ms' },
      { name: 'plug-in → SessionSetupRes (Solution C on the way)', ...summarize(setup), unit: 'ms' },
      { name: 'PaymentDetailsReq → AuthorizationRes incl. TPM signature', ...summarize(auth), unit: 'ms' },
      { name: 'contract-key signature of AuthorizationReq (TPM)', ...summarize(sign), unit: 'ms' },
      { name: 'CurrentDemand round trip (loopback TLS, sim charger)', ...summarize(cd), unit: 'ms', note: 'V2G_EVCC_Msg_Timeout 250 ms' },
      { name: 'RSS after a session (bench process)', ...summarize(rss), unit: 'MB' },
      { name: 'with TPM / without (ratio of medians)', median: w.median / p.median, unit: 'x' },
    ],
    notes: ['The TPM stage (factory provisioning, release, measured boot) is a one-off sequence in a real vehicle; the session never waits for it.'],
  };
}
