import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'securestorage',
    include: ['test/**/*.test.ts'],
  },
})
