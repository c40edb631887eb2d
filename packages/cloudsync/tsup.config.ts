import { defineConfig } from 'tsup'

export default defineConfig({
  // The hash worker is its own entry: it runs in worker threads next to the bundle.
  entry: ['src/index.ts', 'src/hash-worker.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
})
