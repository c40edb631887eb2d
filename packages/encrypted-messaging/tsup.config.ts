import { defineConfig } from 'tsup'

export default defineConfig({
  entry: ['src/index.ts', 'src/hub/hub-wire.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
})
