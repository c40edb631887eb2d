import { ensureCommands } from './system-tools.js'

// vitest globalSetup: interop tests run the reference tools (age, minisign) for real.
export default function setup(): void {
  ensureCommands({ age: 'age', 'age-keygen': 'age', minisign: 'minisign' })
}
