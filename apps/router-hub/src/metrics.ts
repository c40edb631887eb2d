/** Counters the hub exposes at `/metrics` (Prometheus text format) and in-process. */
export class HubMetrics {
  /** WebSocket connections open now (nodes, routes and accepts). */
  connections = 0
  routesOpen = 0
  routesOpened = 0
  routesRefused = 0
  /** Routes to nodes held by another hub of the cluster. */
  routesForwarded = 0
  registrations = 0
  registrationsFailed = 0
  /** Upgrades refused because an address had too many connections. */
  refused = 0
  bytesRelayed = 0
  framesRelayed = 0

  prometheus(nodes: number): string {
    const lines: string[] = []
    const metric = (name: string, type: 'gauge' | 'counter', help: string, value: number) => {
      lines.push(`# HELP cloudbox_hub_${name} ${help}`, `# TYPE cloudbox_hub_${name} ${type}`, `cloudbox_hub_${name} ${value}`)
    }
    metric('nodes', 'gauge', 'Nodes registered.', nodes)
    metric('connections', 'gauge', 'WebSocket connections open.', this.connections)
    metric('routes', 'gauge', 'Routes open.', this.routesOpen)
    metric('routes_opened_total', 'counter', 'Routes opened.', this.routesOpened)
    metric('routes_refused_total', 'counter', 'Routes refused (node offline or limit).', this.routesRefused)
    metric('routes_forwarded_total', 'counter', 'Routes to nodes held by another hub of the cluster.', this.routesForwarded)
    metric('registrations_total', 'counter', 'Successful node registrations.', this.registrations)
    metric('registrations_failed_total', 'counter', 'Registrations with an invalid signature.', this.registrationsFailed)
    metric('connections_refused_total', 'counter', 'Connections refused by the per-address limit.', this.refused)
    metric('relayed_bytes_total', 'counter', 'Bytes relayed.', this.bytesRelayed)
    metric('relayed_frames_total', 'counter', 'Frames relayed.', this.framesRelayed)
    return lines.join('\n') + '\n'
  }
}
