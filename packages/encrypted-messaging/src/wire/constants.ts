/**
 * Constants shared by the formats of this package. Domain-separation tags all derive
 * from one namespace (STYLE rule 5), so no two uses of a key can collide.
 */

/** The namespace every CloudBox domain-separation tag starts with. */
export const NAMESPACE = 'cloudbox'

/** The bytes of tag `name` at `version`: `cloudbox/<name>/v<version>`. */
export function domainTag(name: string, version = 1): Uint8Array {
  return new TextEncoder().encode(`${NAMESPACE}/${name}/v${version}`)
}
