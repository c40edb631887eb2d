/**
 * @packageDocumentation
 * Symmetric CloudBox instances: server or client, pairing, transports.
 *
 * Not built yet: see the open issues.
 */
export {}
