import { UnsafePathError } from './errors.js'

/** The engine's own state folder inside a synced folder; never synced. */
export const STATE_DIR = '.cloudbox'
/** Prefix of the engine's temporary files beside their targets. */
export const TEMP_PREFIX = '.cloudbox-tmp-'
/** Ignore rules of this device only, beside the synced `.cloudboxignore`; never synced. */
export const LOCAL_IGNORE_FILE = '.cloudboxignore.local'

const MAX_PATH_BYTES = 4096
const MAX_SEGMENT_BYTES = 255
// Names Windows reserves in every folder (with or without an extension).
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/
const RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i

/**
 * Checks a relative path that came from a peer and returns it normalized (NFC, `/`).
 * Refuses what could escape the folder or hurt another platform: absolute paths, drive
 * letters, `..` and `.`, empty segments, NUL and control characters, backslashes,
 * reserved device names, trailing dots or spaces, over-long names, the engine's own
 * state folder at any depth (compared as a case-insensitive, normalizing disk would:
 * `.CloudBox`, `.cloudbox` with a zero-width character, `CLOUDB~1`), its temporary files,
 * and the local-only ignore file.
 * @throws {UnsafePathError}
 */
export function validateRelativePath(path: unknown): string {
  const refuse = (why: string) => new UnsafePathError(`The peer sent an unsafe file name (${why}); it was refused and the rest of the sync goes on.`, { path: typeof path === 'string' ? path.slice(0, 200) : undefined })
  if (typeof path !== 'string' || path.length === 0) throw refuse('empty')
  const normalized = path.normalize('NFC')
  if (Buffer.byteLength(normalized) > MAX_PATH_BYTES) throw refuse('too long')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(normalized)) throw refuse('control character')
  if (normalized.includes('\\')) throw refuse('backslash')
  if (normalized.startsWith('/') || /^[a-zA-Z]:/.test(normalized)) throw refuse('absolute path')
  const segments = normalized.split('/')
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') throw refuse('empty, "." or ".." segment')
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) throw refuse('name too long')
    if (RESERVED.test(segment)) throw refuse('reserved device name')
    if (/[. ]$/.test(segment)) throw refuse('name ends with a dot or space')
    if (/[<>:"|?*]/.test(segment)) throw refuse('character not allowed on Windows')
  }
  if (segments.some(namesStateFolder)) throw refuse('the engine\'s state folder')
  if ((segments[segments.length - 1] as string).startsWith(TEMP_PREFIX)) throw refuse('the engine\'s temporary file name')
  if (foldName(segments[segments.length - 1] as string) === LOCAL_IGNORE_FILE) throw refuse('the local-only ignore file')
  return normalized
}

/**
 * A name as a case-insensitive, normalizing file system may see it: NFKC, default-ignorable
 * characters (zero-width spaces, joiners, soft hyphens…) removed, letter case folded.
 */
export function foldName(name: string): string {
  return name.normalize('NFKC').replace(/\p{Default_Ignorable_Code_Point}/gu, '').toUpperCase().toLowerCase()
}

/**
 * True for a name that is, or on some file system could open, a `.cloudbox` folder: any
 * letter case, any Unicode variant that normalizes to it, and the Windows 8.3 short names
 * of it (`CLOUDB~1`, or the hashed form `CLxxxx~N` used once the first ones are taken).
 * Such a folder at any depth is another engine's state.
 */
export function namesStateFolder(name: string): boolean {
  // Plain ASCII (nearly every name) folds to its lower case; every spelling is 8+ characters.
  if (PRINTABLE_ASCII.test(name)) {
    if (name.length < 8) return false
    const lower = name.toLowerCase()
    return lower === STATE_DIR || /^cloudb~\d+$/.test(lower) || /^cl[0-9a-f]{4}~\d+$/.test(lower)
  }
  const folded = foldName(name)
  return folded === STATE_DIR || /^cloudb~\d+$/.test(folded) || /^cl[0-9a-f]{4}~\d+$/.test(folded)
}

/**
 * The name a losing version is kept under: `NAME.sync-conflict-<YYYYMMDD-HHMMSS>-<device>.EXT`.
 */
export function conflictName(path: string, device: string, when: Date): string {
  const slash = path.lastIndexOf('/')
  const folder = path.slice(0, slash + 1)
  const base = path.slice(slash + 1)
  const dot = base.lastIndexOf('.')
  const [name, extension] = dot > 0 ? [base.slice(0, dot), base.slice(dot)] : [base, '']
  const stamp = when.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15)
  const safeDevice = device.replace(/[^A-Za-z0-9]/g, '').slice(0, 16) || 'device'
  return `${folder}${name}.sync-conflict-${stamp}-${safeDevice}${extension}`
}
