/** Path and ID rules every back end applies the same way. */
import { validateRelativePath } from '@cloudbox/cloudsync'
import { errors } from '../errors.js'

/** Drop-box share IDs: random, URL-safe, never used as a path by a caller. */
export const SHARE_ID = /^[A-Za-z0-9_-]{16,64}$/

/**
 * A caller's path, normalized (NFC, `/`, no trailing slash), or `''` for the root.
 * Refuses anything that could leave the cloud (see cloudsync's validateRelativePath).
 */
export function cloudPath(path: string): string {
  if (path === '' || path === '/') return ''
  try {
    return validateRelativePath(path.replace(/\/+$/, ''))
  } catch (error) {
    throw errors.unsafePath(path, (error as Error).message.match(/\(([^)]*)\)/)?.[1] ?? 'unsafe name')
  }
}

export const parentOf = (path: string): string => path.slice(0, Math.max(0, path.lastIndexOf('/')))
export const nameOf = (path: string): string => path.slice(path.lastIndexOf('/') + 1)
