// bufferutil ships no types: the two functions ws uses, with a JS fallback inside.
declare module 'bufferutil' {
  const bufferutil: {
    mask(source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void
    unmask(buffer: Buffer, mask: Buffer): void
  }
  export default bufferutil
}
