/**
 * @packageDocumentation
 * The CloudBox sync engine.
 *
 * Not built yet: see the open issues.
 */
export {}
