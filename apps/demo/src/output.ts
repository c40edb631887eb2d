import { writeOut } from './stdout-lines.js'

/** Human or machine output, chosen once per run by `--json`. */
export interface Output {
  readonly json: boolean
  /** A result: a human line (or lines), or one JSON document with `--json`. */
  result(human: string, data: Record<string, unknown>): void
  /** A progress or informational line on stderr (never pollutes --json stdout). */
  note(message: string): void
}

export function createOutput(json: boolean): Output {
  return {
    json,
    result(human, data) {
      writeOut(json ? `${JSON.stringify(data)}\n` : `${human}\n`)
    },
    note(message) {
      if (!json) process.stderr.write(`${message}\n`)
    },
  }
}
