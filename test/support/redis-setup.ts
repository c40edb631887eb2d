import { ensureCommands } from './system-tools.js'

// vitest globalSetup: the hub cluster tests run a real Redis (Debian's redis-server).
export default function setup(): void {
  ensureCommands({ 'redis-server': 'redis-server' }, { recommends: false })
}
