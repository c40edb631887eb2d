/**
 * Small previews of the images in a cloud, made with sharp when files arrive (through
 * the API or by sync) and on demand in listings, cached by content identity (path, size
 * and modification time, so a change makes a new one). A bad, huge or slow image fails
 * alone: it gets no thumbnail, the failure is remembered, and nothing else waits on it.
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { extname, join } from 'node:path'
import type { EntryInfo, StorageBackend } from './storage/storage-backend.js'

export interface ThumbnailOptions {
  /** Longest side in pixels (default 128). */
  size?: number
  /** Output format (default webp). */
  format?: 'webp' | 'jpeg'
  /** Larger files get no thumbnail (default 64 MiB). */
  maxInputBytes?: number
  /** Larger images (width × height) get no thumbnail (default 100 megapixels). */
  maxInputPixels?: number
  /** Per image (default 10 s). */
  timeoutSeconds?: number
  /** Images processed at once (default 2). */
  concurrency?: number
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.avif', '.tif', '.tiff'])

export class Thumbnails {
  readonly #storage: StorageBackend
  readonly #dir: string
  readonly #options: Required<ThumbnailOptions>
  /** Thumbnails being made, by cache key (one job per image at a time). */
  readonly #jobs = new Map<string, Promise<Buffer | undefined>>()
  /** The last key made for each path, so a changed file's old thumbnail is removed. */
  readonly #latest = new Map<string, string>()
  /** Arrivals whose thumbnail is being looked up or made. */
  readonly #arrivals = new Set<Promise<unknown>>()
  #running = 0
  readonly #queue: (() => void)[] = []

  constructor(storage: StorageBackend, cacheDir: string, options: ThumbnailOptions = {}) {
    this.#storage = storage
    this.#dir = cacheDir
    this.#options = { size: 128, format: 'webp', maxInputBytes: 64 * 1024 * 1024, maxInputPixels: 100_000_000, timeoutSeconds: 10, concurrency: 2, ...options }
  }

  static isImage(name: string): boolean {
    return IMAGE_EXTENSIONS.has(extname(name).toLowerCase())
  }

  get mediaType(): string {
    return this.#options.format === 'webp' ? 'image/webp' : 'image/jpeg'
  }

  #key(entry: EntryInfo): string {
    const { size, format } = this.#options
    return createHash('sha256').update(`${entry.path}\0${entry.size}\0${entry.modified}\0${size}\0${format}`).digest('hex').slice(0, 40)
  }

  /** The thumbnail of an image entry, made now if needed; undefined for non-images and images that fail. */
  async get(entry: EntryInfo): Promise<Buffer | undefined> {
    if (entry.type !== 'file' || !Thumbnails.isImage(entry.name) || entry.size > this.#options.maxInputBytes) return undefined
    const key = this.#key(entry)
    const cached = await readFile(join(this.#dir, `${key}.${this.#options.format}`)).catch(() => undefined)
    if (cached !== undefined) return cached
    if (await readFile(join(this.#dir, `${key}.failed`)).then(() => true, () => false)) return undefined
    let job = this.#jobs.get(key)
    if (job === undefined) {
      job = this.#limit(() => this.#make(entry, key)).finally(() => this.#jobs.delete(key))
      this.#jobs.set(key, job)
    }
    return job
  }

  /** The thumbnail if it is made already; otherwise starts making it and returns undefined (for fast listings). */
  async ready(entry: EntryInfo): Promise<Buffer | undefined> {
    if (entry.type !== 'file' || !Thumbnails.isImage(entry.name) || entry.size > this.#options.maxInputBytes) return undefined
    const cached = await readFile(join(this.#dir, `${this.#key(entry)}.${this.#options.format}`)).catch(() => undefined)
    if (cached === undefined) void this.get(entry)
    return cached
  }

  /** Resolves when every thumbnail being made is done (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#jobs.size > 0 || this.#arrivals.size > 0) await Promise.allSettled([...this.#jobs.values(), ...this.#arrivals])
  }

  /** Makes the thumbnail of a file that just arrived (errors are absorbed). */
  prepare(path: string): void {
    // By name first: a folder of 50,000 text files must not cost a stat of each as it arrives.
    if (!Thumbnails.isImage(path)) return
    const arrival = this.#storage.stat(path).then((entry) => this.get(entry)).catch(() => undefined)
    this.#arrivals.add(arrival)
    void arrival.finally(() => this.#arrivals.delete(arrival))
  }

  async #make(entry: EntryInfo, key: string): Promise<Buffer | undefined> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 })
    const previous = this.#latest.get(entry.path)
    this.#latest.set(entry.path, key)
    if (previous !== undefined && previous !== key) {
      await rm(join(this.#dir, `${previous}.${this.#options.format}`), { force: true })
      await rm(join(this.#dir, `${previous}.failed`), { force: true })
    }
    try {
      const input = await this.#storage.read(entry.path, 0, entry.size)
      let image = (await loadSharp())(input, { limitInputPixels: this.#options.maxInputPixels, failOn: 'error', animated: false })
        .rotate() // honour EXIF orientation
        .resize(this.#options.size, this.#options.size, { fit: 'inside', withoutEnlargement: true })
        .timeout({ seconds: this.#options.timeoutSeconds })
      image = this.#options.format === 'webp' ? image.webp({ quality: 70 }) : image.jpeg({ quality: 75, mozjpeg: true })
      const output = await image.toBuffer()
      await writeFile(join(this.#dir, `${key}.${this.#options.format}`), output)
      return output
    } catch (error) {
      // Remembered, so a broken image is not decoded again at every listing.
      await writeFile(join(this.#dir, `${key}.failed`), String((error as Error).message ?? error).slice(0, 500)).catch(() => {})
      return undefined
    }
  }

  async #limit<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#options.concurrency) await new Promise<void>((resolve) => this.#queue.push(resolve))
    this.#running++
    try {
      return await task()
    } finally {
      this.#running--
      this.#queue.shift()?.()
    }
  }
}

// Loaded at the first thumbnail: libvips adds some 20 MiB to every process that imports this package.
const importSharp = () => import('sharp')
let sharpModule: ReturnType<typeof importSharp> | undefined
const loadSharp = async () => (await (sharpModule ??= importSharp())).default
