/**
 * The reliability suite's tally: each fault or attack test adds what it injected, how many
 * the system survived and how many files it lost. `node scripts/reliability.mjs` sets
 * CLOUDBOX_RELIABILITY_LOG and turns the lines into the summary table in bench/results/.
 */
import { appendFileSync } from 'node:fs'

export interface Outcome {
  group: 'faults' | 'hostile input' | 'load'
  what: string
  injected: number
  survived: number
  dataLost: number
  note?: string
}

export function recordOutcome(outcome: Outcome): void {
  const log = process.env.CLOUDBOX_RELIABILITY_LOG
  if (log !== undefined && log !== '') appendFileSync(log, `${JSON.stringify(outcome)}\n`)
}
