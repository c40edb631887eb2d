/**
 * @packageDocumentation
 * Secret key-value storage: OS keyring, encrypted vault file, memory.
 *
 * Not built yet: see the open issues.
 */
export {}
