/**
 * A bench-like process for hardening-swtpm.test.ts: makes a session dir the way `evcc bench-session` does
 * (mkdtemp evcc-bench-… under $TMPDIR), starts swtpm in it and prints {dir, swtpmPid, removed} as one JSON line.
 * `hold` then waits to be killed; `once` stops swtpm and exits.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Swtpm } from '../../hal/tpm/swtpm.ts';

const mode = process.argv[2] ?? 'hold';
const dir = await mkdtemp(join(tmpdir(), 'evcc-bench-'));
// The bench session's layout (sim/vehicle-tpm.ts): <session dir>/vehicle/swtpm-state.
const swtpm = await Swtpm.start({ stateDir: join(dir, 'vehicle', 'swtpm-state') });
process.stdout.write(`${JSON.stringify({ dir, swtpmPid: swtpm.pid, removed: Swtpm.lastSweep.removed, killed: Swtpm.lastSweep.killed })}\n`);
if (mode === 'once') {
  await swtpm.stop();
} else {
  setInterval(() => undefined, 60_000);
}
