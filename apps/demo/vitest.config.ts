import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'demo',
    include: ['test/**/*.test.ts'],
    // The CLI tests run the real age and minisign.
    globalSetup: ['../../test/support/reference-tools-setup.ts', '../../test/support/redis-setup.ts'],
    testTimeout: 60_000,
  },
})
