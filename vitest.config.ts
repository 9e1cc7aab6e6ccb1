import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['core/**/*.test.ts', 'sim/**/*.test.ts', 'firmware/**/*.test.ts', 'hal/**/*.test.ts', 'boot/**/*.test.ts', 'deploy/**/*.test.ts', 'bin/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/hil/**'],
    // Integration tests start real peers (swtpm, mosquitto, Debian's evse, netns); 2-core machines need room.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    setupFiles: ['test/support/setup.ts'],
  },
});
