/**
 * `npm run test:hil` without hardware named in the environment runs nothing and says so: NOT RUN, exit status 1.
 * A HIL run is never reported as passed when it touched no hardware.
 */
import { HIL_DEVICE_VARIABLES } from './hardware.ts';

export default function setup(): void {
  const named = HIL_DEVICE_VARIABLES.filter((v) => process.env[v]);
  if (named.length === 0) {
    process.stderr.write(`\nHIL: NOT RUN — no hardware named in the environment (set at least one of ${HIL_DEVICE_VARIABLES.join(', ')}; see test/hil/README.md)\n\n`);
    // Exit here, not throw: the runner's stack trace would bury the one line that matters.
    process.exit(1);
  }
  process.stderr.write(`\nHIL: hardware named: ${named.map((v) => `${v}=${process.env[v]}`).join(' ')}; tests needing other hardware are reported as skipped (NOT RUN)\n\n`);
}
