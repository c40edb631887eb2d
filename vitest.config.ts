import { defineConfig } from 'vitest/config'

// One run over every package: each package is a vitest project with its own config,
// plus the repository's own checks in test/ and the reliability suite in test/reliability/.
export default defineConfig({
  test: {
    projects: [
      'packages/*',
      'apps/*',
      { extends: true, test: { name: 'repo', include: ['test/**/*.test.ts'], exclude: ['test/reliability/**'] } },
      // Faults, hostile input and 1,000 sessions load both cores: they run after every other
      // project, so timing-sensitive tests elsewhere never share the machine with them.
      { extends: true, test: { name: 'reliability', include: ['test/reliability/**/*.test.ts'], sequence: { groupOrder: 1 }, globalSetup: ['test/support/reference-tools-setup.ts'] } },
    ],
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
})
