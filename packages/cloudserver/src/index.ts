/**
 * @packageDocumentation
 * What only a CloudBox server needs: encrypted REST API, thumbnails, storage back ends.
 *
 * Not built yet: see the open issues.
 */
export {}
