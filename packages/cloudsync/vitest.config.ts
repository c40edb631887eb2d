import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'cloudsync',
    include: ['test/**/*.test.ts'],
  },
})
