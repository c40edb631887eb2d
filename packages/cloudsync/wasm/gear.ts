// The Gear rolling hash of content-defined chunking, compiled to WebAssembly by
// AssemblyScript (scripts/build-wasm.mjs). Memory layout: the Gear table at 0 (256 × u32),
// the caller's data from DATA_OFFSET. The chunk rules (normalized FastCDC, cut-point
// skipping) are those of src/chunker.ts, which also holds the same loop in JavaScript.

/** The hash state of the chunk being cut, carried across calls (one stream at a time). */
let hash: u32 = 0

export function getHash(): u32 {
  return hash
}

export function setHash(value: u32): void {
  hash = value
}

/**
 * Looks for the end of the current chunk in memory [from, end). The chunk already holds
 * `length` bytes, the first `min` of which are never hashed. Returns the offset just past
 * the cut, or -1 when the chunk goes on past `end` (the state is kept in `hash`).
 */
export function next(from: usize, end: usize, length: u32, min: u32, average: u32, max: u32, maskSmall: u32, maskLarge: u32): i32 {
  let i = from
  let h = hash
  // Cut-point skipping: no boundary before the minimum size.
  if (length < min) {
    const skip = <usize>(min - length)
    if (end - i <= skip) {
      hash = 0
      return -1
    }
    i += skip
    length = min
    h = 0
  }
  // Before the average a harder mask, after it an easier one (normalized chunking).
  if (length < average) {
    let stop = i + <usize>(average - length)
    if (stop > end) stop = end
    const from = i
    while (i < stop) {
      h = (h << 1) + load<u32>(<usize>load<u8>(i) << 2)
      i++
      if ((h & maskSmall) == 0) {
        hash = 0
        return <i32>i
      }
    }
    length += <u32>(i - from)
    if (length < average) {
      hash = h
      return -1
    }
  }
  let stop = i + <usize>(max - length)
  if (stop > end) stop = end
  const start = i
  while (i < stop) {
    h = (h << 1) + load<u32>(<usize>load<u8>(i) << 2)
    i++
    if ((h & maskLarge) == 0) {
      hash = 0
      return <i32>i
    }
  }
  length += <u32>(i - start)
  if (length >= max) {
    hash = 0
    return <i32>i
  }
  hash = h
  return -1
}
