import { z } from 'zod';
import { SimEvOptions } from './sim.ts';

/**
 * `ev` section of the vehicle config: which EV port the runtime uses. Today the only one is the battery model
 * (`sim`): a controller without a BMS link (the bench) charges a simulated battery against a real charger, and says
 * so in the log. A CAN- or serial-backed BMS port adds its own `port` value and options here.
 */
export const EvSettings = z.strictObject({
  port: z.literal('sim').default('sim'),
  sim: SimEvOptions.prefault({}),
});
export type EvSettings = z.infer<typeof EvSettings>;
