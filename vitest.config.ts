import { defineConfig } from 'vitest/config'

// One run over every package: each package is a vitest project with its own config,
// plus the repository's own checks in test/.
export default defineConfig({
  test: {
    projects: [
      'packages/*',
      'apps/*',
      { extends: true, test: { name: 'repo', include: ['test/**/*.test.ts'] } },
    ],
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
})
