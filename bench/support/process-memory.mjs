/**
 * Peak memory of a set of processes and their descendants while a workload runs, from
 * /proc: the kernel's high-water mark of each process (reset at the start through
 * clear_refs) and the sum over processes alive at the same moment, sampled every 25 ms
 * so processes that come and go (rsync forks per connection) are counted.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'

/** Every process's parent, from /proc/<pid>/stat (this kernel has no /proc/…/children). */
function parents() {
  const out = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      out.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {
      // Gone meanwhile.
    }
  }
  return out
}

export function processTree(roots, descendants) {
  if (!descendants) return roots
  const all = new Set(roots)
  const parentOf = parents()
  for (let grew = true; grew; ) {
    grew = false
    for (const [pid, parent] of parentOf) {
      if (!all.has(pid) && all.has(parent)) {
        all.add(pid)
        grew = true
      }
    }
  }
  return [...all]
}

function statusKiB(pid, field) {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match === null ? 0 : Number(match[1])
  } catch {
    return 0
  }
}

/**
 * Starts watching; `stop()` returns the peak in MiB. `roots()` is asked each sample
 * (processes start late); `descendants` adds their children (costs a walk of /proc).
 */
export function watchPeakRss(roots, { descendants = false } = {}) {
  for (const pid of processTree(roots(), descendants)) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5')
    } catch {
      // Not ours to reset (or gone): the sampled sum still counts it.
    }
  }
  let peakKiB = 0
  const sample = () => {
    const pids = processTree(roots(), descendants)
    let sum = 0
    for (const pid of pids) {
      sum += statusKiB(pid, 'VmRSS')
      peakKiB = Math.max(peakKiB, statusKiB(pid, 'VmHWM'))
    }
    peakKiB = Math.max(peakKiB, sum)
  }
  sample()
  const timer = setInterval(sample, 25)
  return {
    stop() {
      sample()
      clearInterval(timer)
      return peakKiB / 1024
    },
  }
}
