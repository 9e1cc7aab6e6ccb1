/**
 * One family's campaign in a worker thread (run.ts starts it, watches it, and terminates it on a hang). Reports
 * progress and the final FamilyReport by message; before each input it stores the input's index in a shared cell
 * and, for families whose seeds differ between processes, the input's case file as JSON in a shared buffer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runCampaign } from './campaign.ts';
import { stableJson, type Target } from './core.ts';
import { target } from './targets/index.ts';

export interface WorkerJob {
  family: string;
  seed: number;
  inputs: number;
  start: number;
  timeBudgetS?: number;
  /** Int32 cells: campaign.ts CampaignOptions.current. */
  current: SharedArrayBuffer;
  /** Int32 length, then UTF-8 JSON of the current case (non-deterministic families only). */
  currentCase: SharedArrayBuffer;
}

const job = workerData as WorkerJob;
const t = await target(job.family);
const current = new Int32Array(job.current);
const caseLength = new Int32Array(job.currentCase, 0, 1);
const caseBytes = new Uint8Array(job.currentCase, 4);
const encoder = new TextEncoder();

/** Publishes each input before it runs (so a hang can be saved) when run.ts cannot regenerate it. */
function publishing<I>(inner: Target<I>): Target<I> {
  if (inner.deterministicSeeds !== false) return inner;
  return {
    ...inner,
    run: (input) => {
      const { written } = encoder.encodeInto(stableJson(inner.toFile(input)), caseBytes);
      Atomics.store(caseLength, 0, written);
      return inner.run(input);
    },
  };
}

const report = await runCampaign(publishing(t), {
  seed: job.seed, inputs: job.inputs, start: job.start, current,
  ...(job.timeBudgetS !== undefined ? { timeBudgetS: job.timeBudgetS } : {}),
  onFailure: (failure) => parentPort!.postMessage({ type: 'failure', failure }),
});
// Failures went out one by one already.
parentPort!.postMessage({ type: 'report', report: { ...report, failures: [] } });
