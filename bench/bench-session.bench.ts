import { performance } from 'node:perf_hooks';
import { runBenchSession } from '../bin/commands/bench-session.ts';
import type { BenchReport } from './run.ts';
import { summarize } from './stats.ts';

/**
 * The main job (`evcc bench-session`, in-process, logs silent): what the vehicle TPM stage on swtpm (factory
 * provisioning, OEM release, measured boot, trust unsealed, MO contract key imported and armed) adds to the
 * simulated session, and the contract-key signature through the pre-armed session after SupportedAppProtocol.
 * Runs alternate between --no-tpm and the TPM stage so machine load hits both alike.
 */
const N = 5;

export async function run(): Promise<BenchReport> {
  const plain: number[] = [];
  const withTpm: number[] = [];
  const stage: number[] = [];
  const setup: number[] = [];
  const sign: number[] = [];
  for (let i = 0; i < N; i++) {
    for (const tpm of [false, true]) {
      const t = performance.now();
      const r = await runBenchSession({ logLevel: 'silent' }, { tls: '1.2', chargerPki: 'b', ota: true, tpm });
      const ms = performance.now() - t;
      if (r.state !== 'Established') throw new Error(`bench session failed: ${r.error?.code}`);
      if (!tpm) {
        plain.push(ms);
        continue;
      }
      if ('skipped' in r.tpm) throw new Error(`TPM stage skipped: ${r.tpm.skipped}`);
      if (r.tpm.contractKey !== 'signed' || r.tpm.signMs === undefined) throw new Error('contract key did not sign');
      withTpm.push(ms);
      stage.push(r.tpm.stageMs);
      setup.push(r.setupMs ?? Number.NaN);
      sign.push(r.tpm.signMs);
    }
  }
  const p = summarize(plain);
  const w = summarize(withTpm);
  return {
    title: `Main job: evcc bench-session in-process (${N} runs each, alternating; logs silent)`,
    rows: [
      { name: 'session without TPM stage (--no-tpm), whole run', ...p, unit: 'ms' },
      { name: 'session with vehicle TPM stage (swtpm), whole run', ...w, unit: 'ms' },
      { name: 'vehicle TPM stage (swtpm start → contract key armed)', ...summarize(stage), unit: 'ms' },
      { name: 'communication setup (plug-in → SupportedAppProtocolRes)', ...summarize(setup), unit: 'ms' },
      { name: 'contract-key signature, pre-armed session (TPM2_Sign)', ...summarize(sign), unit: 'ms' },
      { name: 'with TPM / without (ratio of medians)', median: w.median / p.median, unit: 'x' },
    ],
    notes: ['The TPM stage is a one-off factory/boot sequence in a real vehicle; a charging session never waits for it.'],
  };
}
