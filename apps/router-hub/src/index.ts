/**
 * @packageDocumentation
 * The CloudBox router hub: relays encrypted frames it cannot read.
 *
 * Not built yet: see the open issues.
 */
export {}
