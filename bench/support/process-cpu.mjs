/**
 * CPU seconds (user + system) of processes and their descendants, from /proc/<pid>/stat:
 * each live process's own time plus what its reaped children used (cutime, cstime), so
 * forked workers that came and went (rsync's per-connection children) still count.
 * A process the benchmark itself starts and reaps (rsync's client, `cloudbox sync --once`)
 * is in the benchmark's own cutime: `ownChildrenSeconds()`.
 */
import { readFileSync } from 'node:fs'
import { processTree } from './process-memory.mjs'

const TICKS = 100 // USER_HZ: 100 on every Linux the benchmark runs on

function statTimes(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // Fields 14–17 of stat (utime, stime, cutime, cstime); `fields` starts at field 3.
    return { own: (Number(fields[11]) + Number(fields[12])) / TICKS, children: (Number(fields[13]) + Number(fields[14])) / TICKS }
  } catch {
    return { own: 0, children: 0 }
  }
}

/** CPU seconds used so far by `roots` and everything below them that is alive or reaped. */
export function treeCpuSeconds(roots, descendants) {
  let sum = 0
  for (const pid of processTree(roots, descendants)) {
    const { own, children } = statTimes(pid)
    sum += own + children
  }
  return sum
}

/** CPU seconds of the benchmark's own children that have exited and been reaped. */
export function ownChildrenSeconds() {
  return statTimes('self').children
}
