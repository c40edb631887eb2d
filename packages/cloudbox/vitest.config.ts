import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'cloudbox',
    include: ['test/**/*.test.ts'],
  },
})
