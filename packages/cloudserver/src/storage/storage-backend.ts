/** One entry of a listing: a file or a folder of the cloud. */
export interface EntryInfo {
  /** Relative path from the cloud's root, with `/`. */
  path: string
  name: string
  type: 'file' | 'folder'
  /** Bytes (0 for folders). */
  size: number
  /** Last modification, ms since the epoch. */
  modified: number
  /** In listings: the image's thumbnail (base64), when it is ready. */
  thumbnail?: string
}

/** A sealed file waiting in the drop box: ciphertext the server cannot open, and who it is for. */
export interface ShareInfo {
  id: string
  /** The uploader's public ID. */
  from: string
  /** Recipients who have not removed it yet (public IDs). */
  to: string[]
  /** The file name the sender gave (shown to recipients; never used as a path on the server). */
  name: string
  /** Bytes of the sealed (age) file. */
  size: number
  created: number
  /** Optional minisign signature of the sealed file by `from`. */
  signature?: string
}

export interface StorageUsage {
  /** Bytes of the cloud's files. */
  usedBytes: number
  files: number
  /** Bytes of sealed files waiting in the drop box (they count toward the quota too). */
  sharedBytes: number
  /** Bytes of uploads received but not committed yet (they count toward the quota too, until they expire). */
  stagedBytes: number
}

/**
 * Where a server keeps its files. The API speaks to this interface only, so the local
 * folder (default) and an object store serve the same endpoints. Paths are relative,
 * `/`-separated and checked by the back end; `''` is the root.
 */
export interface StorageBackend {
  list(path: string): Promise<EntryInfo[]>
  stat(path: string): Promise<EntryInfo>
  /**
   * Up to `length` bytes from `offset` (fewer at the end of the file). `into`, when given,
   * holds at least `length` bytes and may take them (the result is then a view of it), so
   * a server reading chunk after chunk reuses its memory; a back end may ignore it.
   */
  read(path: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>
  /** Bytes received so far for a staged upload, or undefined when there is none. */
  uploadSize(upload: string): Promise<number | undefined>
  /** Appends to a staged upload; `offset` must be its current size. Returns the new size. */
  uploadAppend(upload: string, offset: number, bytes: Uint8Array): Promise<number>
  /** Moves a finished upload to `path` (atomically), replacing a file there only when `overwrite`. */
  uploadCommit(upload: string, path: string, options: ChangeOptions): Promise<EntryInfo>
  uploadAbort(upload: string): Promise<void>
  /** Drops staged uploads that received nothing for `idleMs` (their bytes stop counting); returns how many. */
  dropStaleUploads(idleMs: number): Promise<number>
  /** Deletes a file, or a folder with everything in it. */
  remove(path: string, options?: { by?: string }): Promise<void>
  /** Renames or moves; refuses to replace unless `overwrite`. */
  move(from: string, to: string, options: ChangeOptions): Promise<EntryInfo>
  copy(from: string, to: string, options: ChangeOptions): Promise<EntryInfo>
  /** Creates a folder and any missing parents; fine if it exists. */
  mkdir(path: string): Promise<EntryInfo>
  /** Entries whose name contains `query` (case-insensitive), at most `limit`. */
  search(query: string, limit: number): Promise<EntryInfo[]>
  usage(): Promise<StorageUsage>
  /** Moves a finished upload into the drop box under `share.id`. */
  shareCommit(upload: string, share: Omit<ShareInfo, 'size'>): Promise<ShareInfo>
  listShares(): Promise<ShareInfo[]>
  getShare(id: string): Promise<ShareInfo>
  /** As `read`, of a share's sealed file. */
  readShare(id: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>
  /** Replaces a share's record (e.g. fewer recipients). */
  updateShare(share: ShareInfo): Promise<void>
  removeShare(id: string): Promise<void>
}

/** How a change through the API may replace what is there. */
export interface ChangeOptions {
  readonly overwrite: boolean
  /** The caller (public ID), recorded with the versions a replacement keeps. */
  readonly by?: string
}
