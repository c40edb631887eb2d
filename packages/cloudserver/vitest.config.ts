import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'cloudserver',
    include: ['test/**/*.test.ts'],
  },
})
