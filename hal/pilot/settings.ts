import { z } from 'zod';

/**
 * `pilot` section of the runtime config (`evcc run`). `trigger: 'pilot'` starts a session each time the board
 * reports state B/C with 5 % duty; `'now'` starts one session at once (bench without a pilot board).
 */
export const PilotSettings = z.strictObject({
  trigger: z.enum(['pilot', 'now']).default('pilot'),
  /** Serial device of the bench pilot board (protocol evcc-pilot/1, hal/pilot/README.md). */
  serialPath: z.string().min(1).default('/dev/ttyACM0'),
  baudRate: z.number().int().min(1200).max(4_000_000).default(115200),
});
export type PilotSettings = z.infer<typeof PilotSettings>;
