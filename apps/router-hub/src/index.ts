/**
 * @packageDocumentation
 * The CloudBox router hub: nodes register by proving their key, clients open routes to
 * a node by its public ID, and frames pass through unread. The wire format is in
 * `@cloudbox/encrypted-messaging/hub` (PROTOCOL.md, "Router hub").
 */
export { RouterHub } from './router-hub.js'
export type { RouterHubOptions, RouterHubComponents } from './router-hub.js'
export { HubMetrics } from './metrics.js'
export type { FrameHook } from './frame-relay.js'
