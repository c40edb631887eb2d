/** A version vector: per device, how many changes of that device a version includes. */
export type VersionVector = Readonly<Record<string, number>>

export type Ordering = 'equal' | 'newer' | 'older' | 'concurrent'

/** How `a` relates to `b`: newer (a includes all of b and more), older, equal, or concurrent. */
export function compareVersions(a: VersionVector, b: VersionVector): Ordering {
  let aAhead = false
  let bAhead = false
  for (const device of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[device] ?? 0
    const y = b[device] ?? 0
    if (x > y) aAhead = true
    else if (y > x) bAhead = true
  }
  if (aAhead && bAhead) return 'concurrent'
  if (aAhead) return 'newer'
  if (bAhead) return 'older'
  return 'equal'
}

/** The version after a change made by `device`. */
export function bump(version: VersionVector, device: string): VersionVector {
  return { ...version, [device]: (version[device] ?? 0) + 1 }
}

/** The smallest version that includes both. */
export function mergeVersions(a: VersionVector, b: VersionVector): VersionVector {
  const out: Record<string, number> = { ...a }
  for (const [device, count] of Object.entries(b)) out[device] = Math.max(out[device] ?? 0, count)
  return out
}
