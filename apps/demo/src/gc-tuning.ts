/**
 * V8 settings of the `cloudbox` program, made as it starts. Every byte the
 * API, the sync and the hub move passes through short-lived native buffers (socket reads,
 * node:crypto's output), and V8 answers that external memory by starting incremental
 * marking every few megabytes: its steps and finalisations took 20–30% of each process's
 * CPU during a transfer. One atomic mark of this small heap costs a few milliseconds
 * instead (API through the hub, 256 MiB: 112 → 220 MB/s up, 95 → 185 down; direct
 * 230 → 330 / 200 → 250; apps/demo/bench/api.bench.mjs). No command here needs the
 * shorter pauses incremental marking buys.
 */
import { setFlagsFromString } from 'node:v8'

/** Called once, first thing (an import for its side effect alone would be dropped by the bundler: the package declares none). */
export function tuneGarbageCollector(): void {
  setFlagsFromString('--no-incremental-marking')
}
