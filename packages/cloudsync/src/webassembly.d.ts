/**
 * The part of the WebAssembly JavaScript API the chunker uses. Node has it as a global;
 * @types/node 20 does not declare it, and the DOM library would bring far more.
 */
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array)
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, Record<string, unknown>>)
    readonly exports: Record<string, unknown>
  }
  class Memory {
    readonly buffer: ArrayBuffer
    grow(pages: number): number
  }
}
