import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'router-hub',
    include: ['test/**/*.test.ts'],
  },
})
