import { defineConfig } from 'vitest/config';

// Integration tests share one real RabbitMQ broker and one PostgreSQL database, so test files run one at a
// time; tests inside a file use their own queue or table names where they can.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default'],
  },
});
