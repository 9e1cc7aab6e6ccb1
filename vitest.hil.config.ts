import { defineConfig } from 'vitest/config';

/**
 * Hardware-in-the-loop (`npm run test:hil`): the session suite against the real modem, pilot board, TPM and charger
 * named in the environment (test/hil/README.md). Never part of `npm test` (vitest.config.ts excludes test/hil).
 */
export default defineConfig({
  test: {
    include: ['test/hil/**/*.hil.test.ts'],
    globalSetup: ['test/hil/global-setup.ts'],
    // Real chargers take their time (CableCheck, PreCharge, a whole charge loop); one device set, one test at a time.
    testTimeout: 300_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
