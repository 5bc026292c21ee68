import { defineConfig } from 'vitest/config';

// Tests that need Debian packages (haproxy): run by test/system/run.sh, never by `npm test`.
export default defineConfig({
  test: {
    include: ['test/system/**/*.system.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});
