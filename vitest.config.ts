import { defineConfig } from 'vitest/config'

// One run over every package: each package is a vitest project with its own config.
export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*'],
    passWithNoTests: true,
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
})
