/**
 * @packageDocumentation
 * Identity, public IDs, minisign signatures, age sealed files, Noise secure channel and CBOR framing.
 *
 * Not built yet: see the open issues.
 */
export {}
