import { ensureCommands } from './system-tools.js'

// vitest globalSetup: browser tests drive Debian's Chromium with playwright-core (never a
// downloaded browser).
export default function setup(): void {
  ensureCommands({ chromium: 'chromium' }, { recommends: false })
}
