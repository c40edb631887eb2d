import { defineProject } from 'vitest/config'

export default defineProject({
  test: {
    name: 'securestorage',
    include: ['test/**/*.test.ts'],
    // A private D-Bus session with an unlocked gnome-keyring for the keyring back end.
    globalSetup: ['test/keyring-setup.ts'],
    testTimeout: 30_000,
  },
})
