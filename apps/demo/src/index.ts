/**
 * @packageDocumentation
 * The cloudbox command-line program and the one-command demo.
 *
 * Not built yet: see the open issues.
 */
export {}
