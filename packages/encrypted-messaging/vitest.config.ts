import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'encrypted-messaging',
    include: ['test/**/*.test.ts'],
    globalSetup: ['../../test/support/reference-tools-setup.ts'],
  },
})
