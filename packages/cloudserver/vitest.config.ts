import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'cloudserver',
    include: ['test/**/*.test.ts'],
    // The status page test opens the page in real headless Chromium.
    globalSetup: ['../../test/support/browser-setup.ts'],
  },
})
