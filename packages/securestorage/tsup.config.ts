import { defineConfig } from 'tsup'

export default defineConfig({
  // durable-file is its own entry so importing it loads no keyring binding.
  entry: ['src/index.ts', 'src/durable-file.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
})
