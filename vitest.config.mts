import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**', 'build/**'],
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Integration suites start real brokers and child processes; two cores.
    maxWorkers: 2,
  },
});
