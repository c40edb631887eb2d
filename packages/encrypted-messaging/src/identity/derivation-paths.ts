/**
 * The SLIP-0010 derivation paths of CloudBox keys: the only place they are written.
 * One recovery phrase recovers the node key and every sub-cloud key.
 * All indices are hardened (SLIP-0010 Ed25519 supports only hardened derivation).
 */

/** The purpose index that keeps CloudBox keys apart from other uses of the same phrase. */
export const CLOUDBOX_PURPOSE = 7331

/** The node's own key. */
export const NODE_KEY_PATH = `m/${CLOUDBOX_PURPOSE}'/0'/0'`

/** Largest index a hardened SLIP-0010 path step can carry (2^31 - 1). */
export const MAX_SUB_CLOUD_INDEX = 0x7fffffff

/**
 * The key path of sub-cloud `index`.
 * @throws {RangeError} when index is not an integer in [0, 2^31 - 1].
 */
export function subCloudKeyPath(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > MAX_SUB_CLOUD_INDEX) {
    throw new RangeError(`A sub-cloud index must be an integer from 0 to ${MAX_SUB_CLOUD_INDEX}, got ${String(index)}`)
  }
  return `m/${CLOUDBOX_PURPOSE}'/1'/${index}'`
}
