/**
 * A CloudBox instance: a cloud server or a cloud client, from the same class. Many can
 * live in one process, created and destroyed on the fly.
 *
 * Every connection is a Noise secure channel (IK: the client knows the server's key
 * from the pairing URI), split into a control lane (hello, pairing, admin, keep-alive)
 * and a sync lane (the cloudsync protocol). Direct WebSockets and hub routes carry the
 * same bytes, so a hub sees ciphertext only.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import {
  acceptSecureChannel,
  createChannelMux,
  HandshakeTimeoutError,
  initiateSecureChannel,
  ready,
  ReplayGuard,
  signDocument,
  verifyDocument,
  type DocumentSource,
  type Identity,
  type MessageChannel,
  type SecureChannel,
  type SignDocumentOptions,
  type VerifiedSignature,
} from '@cloudbox/encrypted-messaging'
import { STATE_DIR, StatusStream, SyncEngine, type SyncEngineOptions } from '@cloudbox/cloudsync'
import type { HubApiReply } from '@cloudbox/encrypted-messaging/hub'
import { dispatchAdmin, remoteAdmin } from './admin-calls.js'
import { Backoff, sleep, type BackoffOptions } from './backoff.js'
import { CloudState, type CloudStateData, type DeviceRecord, type PairedCloud } from './cloud-state.js'
import { ControlPeer } from './control-peer.js'
import { CloudBoxError, errors, isCloudBoxError, refusalError } from './errors.js'
import type { CloudAdmin, DeviceInfo, SubCloudInfo } from './interfaces/cloud-admin.js'
import { formatPairingUri, parsePairingUri, pairingQr, type PairingInfo } from './pairing-uri.js'
import { PinBook, pinKey, pinProof, assertPinFormat, type Role } from './pins.js'
import { eventError, type CloudBoxEvent, type InstanceState, type TransportKind } from './status.js'
import { DirectListener } from './transport/direct-listener.js'
import { HubLink } from './transport/hub-link.js'
import { dialDirect, dialHub } from './transport/websocket.js'
import { CONTROL_LANE, controlCodec, NOT_READY_CLOSE_CODE, SESSION_LIMIT_CLOSE_CODE, LANE_HIGH_WATER_BYTES, PIN_SALT_LENGTH, PRE_WELCOME_MAX_MESSAGE, SESSION_LANES, SESSION_MAX_MESSAGE } from './wire/control.js'

export interface CloudBoxInit {
  role: 'server' | 'client'
  /** The folder this instance syncs. */
  folder: string
  /** Where the instance keeps its state (default `<folder>/.cloudbox/box`). */
  stateDir?: string
  /** Shown to peers and in the pairing URI (default: "CloudBox"). */
  name?: string
  /** Server: a router hub to register at, so clients reach it without an open port. Client: used when the pairing URI names none. */
  hub?: string
  /** Server: listen for direct WebSocket connections here (port 0 picks one). */
  listen?: { host?: string; port?: number }
  /** Server: direct addresses to put in the pairing URI (default: the listener's URL). */
  advertise?: string[]
  /** Server: sets (or replaces) the master PIN at start. */
  masterPin?: string
  /** Server: bytes the folder may hold (clients: a local limit). */
  quotaBytes?: number
  /** Server: sessions open at once (default 1,024). */
  maxSessions?: number
  /**
   * Server: sessions not yet welcomed (handshake, hello, PIN check) at once, from one
   * network address (default 16) and from everyone (default 128); more are closed unread.
   */
  maxPendingSessions?: { perAddress?: number; total?: number }
  /** Server: other hubs of `hub`'s cluster where the hub may ask it to accept routes (any other is refused). */
  clusterHubs?: string[]
  /** Control-lane keep-alive interval (default 15 s); three missed periods drop the session. */
  keepAliveMs?: number
  reconnect?: BackoffOptions
  /** Sync the folder (default true). */
  sync?: boolean
  /** Watch the folder for changes (default true). */
  watch?: boolean
  /** What is kept of files that a peer's change (or the API) replaces or deletes (default: staggered, 30 days, a tenth of the disk at most). */
  versions?: SyncEngineOptions['versions']
  /** Where sub-clouds keep their folders (default `<stateDir>/subclouds`). */
  subCloudRoot?: string
}

export interface CloudBoxComponents {
  /** The node's identity (from its recovery phrase; the secret stays in it). */
  identity: Identity
  /** Share a listener between clouds of one process (sub-clouds use their parent's). */
  listener?: DirectListener
  /** Milliseconds since the epoch (tests move time forward). */
  now?: () => number
}

interface ServerSession {
  device: string
  /** Resolves once the session is closed and forgotten. */
  finished: Promise<void>
  secure: SecureChannel
  control: ControlPeer
  role: Role
}

const DEFAULT_NAME = 'CloudBox'

export class CloudBox {
  readonly role: 'server' | 'client'
  readonly init: CloudBoxInit
  readonly identity: Identity
  readonly status = new StatusStream<CloudBoxEvent>()
  /** The owner's functions: run locally on a server, over the channel on a client. */
  readonly admin: CloudAdmin
  readonly #components: CloudBoxComponents
  readonly #now: () => number
  #state: InstanceState = 'stopped'
  #cloudState: CloudState | undefined
  #pins: PinBook | undefined
  #engine: SyncEngine | undefined
  #listener: DirectListener | undefined
  #ownListener = false
  #unregister: (() => void) | undefined
  #hubLink: HubLink | undefined
  readonly #sessions = new Set<ServerSession>()
  /** Sessions not yet welcomed, per network address. */
  readonly #pending = new Map<string, number>()
  #pendingTotal = 0
  readonly #replayGuard = new ReplayGuard()
  readonly #subClouds = new Map<number, CloudBox>()
  #abort = new AbortController()
  #clientLoop: Promise<void> | undefined
  #clientSession: { secure: SecureChannel; control: ControlPeer } | undefined
  #starting: Promise<void> | undefined
  #unsubscribeEngine: (() => void) | undefined
  #apiHandler: ((request: Uint8Array) => Promise<HubApiReply>) | undefined

  constructor(init: CloudBoxInit, components: CloudBoxComponents) {
    if (init.role !== 'server' && init.role !== 'client') throw new TypeError('role must be "server" or "client"')
    if (typeof init.folder !== 'string' || init.folder === '') throw new TypeError('folder is required')
    if (init.masterPin !== undefined) assertPinFormat(init.masterPin)
    this.role = init.role
    this.init = init
    this.identity = components.identity
    this.#components = components
    this.#now = components.now ?? Date.now
    this.admin = init.role === 'server' ? this.#localAdmin() : remoteAdmin((op, args) => this.#requireClientSession().control.call(op, args))
  }

  /** The cloud's (server) or device's (client) public ID. */
  get id(): string {
    return this.identity.publicId
  }

  get state(): InstanceState {
    return this.#state
  }

  get stateDir(): string {
    return this.init.stateDir ?? join(this.init.folder, STATE_DIR, 'box')
  }

  /** The sync engine, once started (undefined for a client not yet paired). */
  get engine(): SyncEngine | undefined {
    return this.#engine
  }

  /** Client: the cloud it is paired with. */
  get paired(): PairedCloud | undefined {
    return this.#cloudState?.data.paired
  }

  /** Client: connected to its server now. */
  get connected(): boolean {
    return this.#clientSession !== undefined
  }

  /** Server: the direct listener's URL, when listening. */
  get directUrl(): string | undefined {
    return this.#listener?.url
  }

  #emit(event: CloudBoxEvent): void {
    this.status.emit(event)
  }

  #setState(state: InstanceState): void {
    this.#state = state
    this.#emit({ type: 'state', state })
  }

  #requireRunning(what: string): CloudState {
    if (this.#state !== 'running' || this.#cloudState === undefined) throw errors.state(what, this.#state)
    return this.#cloudState
  }

  async start(): Promise<void> {
    if (this.#state === 'running') return
    if (this.#state === 'destroyed') throw errors.state('start()', 'destroyed')
    if (this.#starting !== undefined) return this.#starting
    this.#starting = ready().then(() => this.#start()).finally(() => (this.#starting = undefined))
    return this.#starting
  }

  async #start(): Promise<void> {
    this.#setState('starting')
    this.#abort = new AbortController()
    try {
      const state = await CloudState.load(this.stateDir, fresh)
      this.#cloudState = state
      if (this.role === 'server') {
        this.#pins = new PinBook(state, this.#now)
        if (this.init.masterPin !== undefined) await this.#pins.setMaster(this.init.masterPin)
        await this.#startEngine(this.id)
        await this.#startListening()
        for (const record of state.data.subClouds) await this.#openSubCloud(record.index, record.name, record.quotaBytes)
      } else if (state.data.paired !== undefined) {
        // Connecting while the first scan runs: records go out as the scan commits them.
        await this.#startEngine(state.data.paired.id, () => (this.#clientLoop = this.#runClient()))
      }
      this.#setState('running')
    } catch (error) {
      await this.#teardown()
      this.#setState('stopped')
      throw error
    }
  }

  /** Starts the engine; `onOpen` runs once sessions may connect, before its first scan ends. */
  async #startEngine(folderId: string, onOpen?: () => void): Promise<void> {
    if (this.init.sync === false || this.#engine !== undefined) return
    const quotaBytes = this.#quota()
    const engine = new SyncEngine({
      folder: this.init.folder,
      deviceId: this.id,
      folderId,
      ...(quotaBytes === undefined ? {} : { quotaBytes }),
      ...(this.init.watch === undefined ? {} : { watch: this.init.watch }),
      ...(this.init.versions === undefined ? {} : { versions: this.init.versions }),
    })
    this.#unsubscribeEngine = engine.status.on((event) => this.#emit({ type: 'sync', event }))
    await engine.start({
      onOpen: () => {
        this.#engine = engine
        onOpen?.()
      },
    })
    this.#engine = engine
  }

  async #startListening(): Promise<void> {
    const handler = (raw: MessageChannel) => void this.#accept(raw)
    if (this.#components.listener !== undefined) {
      this.#listener = this.#components.listener
    } else if (this.init.listen !== undefined) {
      this.#listener = new DirectListener(this.init.listen)
      this.#ownListener = true
      await this.#listener.start()
    }
    this.#unregister = this.#listener?.register(this.id, handler)
    if (this.init.hub !== undefined) {
      this.#hubLink = new HubLink({
        url: this.init.hub,
        signer: this.identity,
        onRoute: handler,
        onApiCall: (request) => this.#apiHandler?.(request) ?? Promise.resolve({ status: 404, error: { code: 'ERR_NOT_FOUND', message: 'This cloud serves no API.' } }),
        onEvent: (event) => {
          if (event.type === 'retry') this.#emit(event)
          else if (event.type === 'untrusted-hub') this.#emit({ type: 'session-error', error: eventError(errors.untrustedHub(event.hub)) })
          else this.#emit({ type: 'hub', state: event.state, url: event.url, ...(event.state === 'disconnected' && event.reason !== undefined ? { error: eventError(event.reason) } : {}) })
        },
        ...(this.init.reconnect === undefined ? {} : { backoff: this.init.reconnect }),
        ...(this.init.keepAliveMs === undefined ? {} : { keepAliveMs: this.init.keepAliveMs }),
        ...(this.init.clusterHubs === undefined ? {} : { clusterHubs: this.init.clusterHubs }),
      })
      this.#hubLink.start()
    }
  }

  /** Stops networking and sync; the state stays on disk. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'destroyed') return
    await this.#starting?.catch(() => {})
    this.#setState('stopping')
    await this.#teardown()
    this.#setState('stopped')
  }

  async #teardown(): Promise<void> {
    this.#abort.abort()
    for (const sub of this.#subClouds.values()) await sub.stop()
    this.#subClouds.clear()
    await this.#hubLink?.stop()
    this.#hubLink = undefined
    this.#unregister?.()
    this.#unregister = undefined
    if (this.#ownListener) await this.#listener?.stop()
    this.#listener = undefined
    this.#ownListener = false
    for (const session of this.#sessions) await session.secure.close().catch(() => {})
    await this.#clientSession?.secure.close().catch(() => {})
    await this.#clientLoop
    this.#clientLoop = undefined
    this.#unsubscribeEngine?.()
    await this.#engine?.stop()
    this.#engine = undefined
    await this.#cloudState?.flushed()
  }

  /**
   * Stops the instance for good. With `wipe`, deletes its state (keys stay with the
   * identity; the synced files stay, except a sub-cloud's own folder).
   */
  async destroy(options: { wipe?: boolean; wipeFolder?: boolean } = {}): Promise<void> {
    if (this.#state === 'destroyed') return
    await this.stop()
    this.#setState('destroyed')
    this.status.close()
    if (options.wipe === true) {
      await rm(this.stateDir, { recursive: true, force: true })
      await rm(join(this.init.folder, STATE_DIR), { recursive: true, force: true })
    }
    if (options.wipeFolder === true) await rm(this.init.folder, { recursive: true, force: true })
  }

  // ————— pairing info (server) —————

  pairingInfo(): PairingInfo {
    if (this.role !== 'server') throw errors.role('server', 'A pairing URI')
    const addresses = this.init.advertise ?? (this.#listener === undefined ? [] : this.#listener.reachableUrls())
    return { id: this.id, name: this.#name, ...(this.init.hub === undefined ? {} : { hub: this.init.hub.replace(/\/+$/, '') }), addresses }
  }

  /** `cloudbox://pair?id=…&hub=…&name=…&addr=…` */
  pairingUri(): string {
    return formatPairingUri(this.pairingInfo())
  }

  /** `terminal`: with colour escapes; `text`: plain Unicode blocks (for files, logs, NO_COLOR). */
  pairingQr(format: 'terminal' | 'text' | 'svg'): Promise<string>
  pairingQr(format: 'png'): Promise<Buffer>
  pairingQr(format: 'terminal' | 'text' | 'svg' | 'png'): Promise<string | Buffer> {
    return pairingQr(this.pairingUri(), format as 'png')
  }

  get #name(): string {
    return (this.init.name ?? DEFAULT_NAME).slice(0, 64)
  }

  /**
   * Server, running: sets (or replaces) the master PIN, as `init.masterPin` does at start.
   * Local only: a remote owner adds one-time PINs instead.
   */
  async setMasterPin(pin: string): Promise<void> {
    if (this.role !== 'server') throw errors.role('server', 'A master PIN')
    this.#requireRunning('Setting the master PIN')
    assertPinFormat(pin)
    await (this.#pins as PinBook).setMaster(pin)
  }

  // ————— signing —————

  /** Signs a document with this node's key (minisign format). */
  sign(document: DocumentSource, options?: SignDocumentOptions): Promise<string> {
    return signDocument(this.identity, document, options)
  }

  /** Verifies a signature by `signer` (default: this node). */
  verify(document: DocumentSource, signature: string, signer: string = this.id): Promise<VerifiedSignature> {
    return verifyDocument(document, signature, signer)
  }

  // ————— server side —————

  async #accept(raw: MessageChannel & { readonly remoteAddress?: string }): Promise<void> {
    const state = this.#cloudState
    const pins = this.#pins
    if (this.#state !== 'running' || state === undefined || pins === undefined) {
      // Listening (directly and at the hub) starts before the sub-clouds are open and
      // stops after they close: a device that comes in then is told to retry, so an
      // ordinary restart never reads as a server that failed to prove its key.
      return void (await raw.close(Object.assign(errors.serverNotReady(), { closeCode: NOT_READY_CLOSE_CODE })).catch(() => {}))
    }
    // Until welcomed, a session is a stranger's: few at once from one address, and in all.
    const address = raw.remoteAddress ?? 'unknown'
    const limits = this.init.maxPendingSessions ?? {}
    if ((this.#pending.get(address) ?? 0) >= (limits.perAddress ?? 16) || this.#pendingTotal >= (limits.total ?? 128)) {
      const busy = errors.sessionLimit()
      this.#emit({ type: 'session-error', error: eventError(busy) })
      // Closed before any handshake, with a close code the device reads as "busy", not as an impostor.
      return void (await raw.close(Object.assign(busy, { closeCode: SESSION_LIMIT_CLOSE_CODE })).catch(() => {}))
    }
    this.#pending.set(address, (this.#pending.get(address) ?? 0) + 1)
    this.#pendingTotal++
    let pending = true
    const settle = () => {
      if (!pending) return
      pending = false
      this.#pendingTotal--
      const left = (this.#pending.get(address) ?? 1) - 1
      if (left <= 0) this.#pending.delete(address)
      else this.#pending.set(address, left)
    }
    try {
      await this.#acceptSession(raw, state, pins, address, settle)
    } finally {
      settle()
    }
  }

  async #acceptSession(raw: MessageChannel, state: CloudState, pins: PinBook, address: string, welcomed: () => void): Promise<void> {
    let secure: SecureChannel
    try {
      // Small messages only until the peer is welcomed: a stranger cannot make this side hold much.
      secure = await acceptSecureChannel(raw, { identity: this.identity, replayGuard: this.#replayGuard, timeoutMs: 10_000, maxMessageSize: PRE_WELCOME_MAX_MESSAGE })
    } catch (error) {
      this.#emit({ type: 'session-error', error: eventError(error) })
      await raw.close().catch(() => {})
      return
    }
    const device = secure.remotePublicId
    let open = false
    // Before the welcome only the control lane is read; a sync message then is a protocol error.
    const [controlLane, syncLane] = createChannelMux(secure, SESSION_LANES, { highWaterBytes: LANE_HIGH_WATER_BYTES, admit: (lane) => lane === CONTROL_LANE || open }) as [MessageChannel, MessageChannel]
    const reader = controlLane[Symbol.asyncIterator]()
    const refuse = async (error: CloudBoxError) => {
      await controlLane.send(controlCodec.encode('refused', { code: error.code, message: error.message, ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }) })).catch(() => {})
      await secure.close().catch(() => {})
    }
    let role: Role
    let paired = false
    try {
      if (this.#sessions.size >= (this.init.maxSessions ?? 1024)) return await refuse(errors.sessionLimit())
      await controlLane.send(controlCodec.encode('serverHello', { name: this.#name, salt: pins.salt }))
      const hello = await withTimeout(reader.next(), 10_000)
      if (hello.done === true) return void (await secure.close())
      const message = controlCodec.decode(hello.value)
      if (message.kind !== 'hello') throw errors.protocol('expected hello')
      const known = state.data.devices.find((each) => each.id === device)
      if (known !== undefined) {
        if (known.state === 'blocked') return await refuse(errors.blocked())
        role = known.role
        known.lastSeen = this.#now()
      } else if (message.body.pair !== undefined) {
        try {
          const pin = await pins.verify(message.body.pair.proof, secure.handshakeHash, { device, address })
          role = pin.role
          const now = this.#now()
          state.data.devices.push({ id: device, label: message.body.name || 'device', role, state: 'enabled', firstSeen: now, lastSeen: now })
          paired = true
          this.#emit({ type: 'pairing', outcome: 'paired', device, label: message.body.name })
        } catch (error) {
          this.#emit({ type: 'pairing', outcome: 'refused', device, error: eventError(error) })
          if (isCloudBoxError(error)) return await refuse(error)
          throw error
        }
      } else {
        return await refuse(errors.notPaired())
      }
      await state.save()
      // Trusted from here: full-size messages and the sync lane.
      secure.setMaxMessageSize(SESSION_MAX_MESSAGE)
      open = true
      welcomed()
      await controlLane.send(controlCodec.encode('welcome', { role, paired, name: this.#name }))
    } catch (error) {
      this.#emit({ type: 'session-error', peer: device, error: eventError(error) })
      await secure.close(error as Error).catch(() => {})
      return
    }
    let finish!: () => void
    const session: ServerSession = {
      device,
      finished: new Promise<void>((resolve) => (finish = resolve)),
      secure,
      role,
      control: new ControlPeer(
        controlLane,
        reader,
        {
          onRequest: async (op, args) => {
            if (session.role !== 'owner' || state.data.devices.find((each) => each.id === device)?.role !== 'owner') throw errors.notOwner()
            return dispatchAdmin(this.admin, op, args)
          },
          onLatency: (milliseconds) => this.#emit({ type: 'latency', peer: device, milliseconds }),
        },
        this.init.keepAliveMs ?? 15_000,
      ),
    }
    if (this.#state !== 'running') {
      // stop() began while this session was being set up: it would not be closed.
      await secure.close().catch(() => {})
      finish()
      return
    }
    this.#sessions.add(session)
    this.#emit({ type: 'connection', state: 'connected', peer: device })
    // The engine names the peer by the key it proved, not by what it says.
    const sync = this.#engine?.connect(syncLane, { peer: device })
    const reason = await session.control.run()
    await sync?.close()
    this.#sessions.delete(session)
    const record = state.data.devices.find((each) => each.id === device)
    if (record !== undefined) {
      record.lastSeen = this.#now()
      if (this.#state === 'running') await state.save().catch(() => {})
    }
    finish()
    this.#emit({ type: 'connection', state: 'disconnected', peer: device, ...(reason === undefined ? {} : { error: eventError(reason) }) })
  }

  /** Closes a device's sessions, telling it why first. */
  async #dropDevice(device: string, error: CloudBoxError): Promise<void> {
    for (const session of [...this.#sessions]) {
      if (session.device !== device) continue
      await session.control.send('refused', { code: error.code, message: error.message }).catch(() => {})
      await session.secure.close(error).catch(() => {})
      await session.finished
    }
  }

  #localAdmin(): CloudAdmin {
    const requireDevice = (id: string): DeviceRecord => {
      const device = this.#requireRunning('Device administration').data.devices.find((each) => each.id === id)
      if (device === undefined) throw errors.unknownDevice(id)
      return device
    }
    const pins = () => {
      this.#requireRunning('PIN administration')
      return this.#pins as PinBook
    }
    const save = () => (this.#cloudState as CloudState).save()
    return {
      listDevices: async (): Promise<DeviceInfo[]> => {
        const online = new Set([...this.#sessions].map((session) => session.device))
        return this.#requireRunning('Listing devices').data.devices.map((device) => ({ ...device, online: online.has(device.id) }))
      },
      blockDevice: async (id) => {
        requireDevice(id).state = 'blocked'
        await save()
        this.#emit({ type: 'device', device: id, change: 'blocked' })
        await this.#dropDevice(id, errors.blocked())
      },
      unblockDevice: async (id) => {
        requireDevice(id).state = 'enabled'
        await save()
        this.#emit({ type: 'device', device: id, change: 'unblocked' })
      },
      revokeDevice: async (id) => {
        requireDevice(id)
        const state = this.#cloudState as CloudState
        state.data.devices = state.data.devices.filter((device) => device.id !== id)
        await save()
        this.#emit({ type: 'device', device: id, change: 'revoked' })
        await this.#dropDevice(id, errors.revoked())
      },
      listPins: async () => pins().list(),
      addPin: async (options) => pins().add(options),
      removePin: async (label) => pins().remove(label),
      storage: async () => {
        const state = this.#requireRunning('Storage information')
        const engine = this.#engine
        const quotaBytes = this.#quota()
        return {
          ...(quotaBytes === undefined ? {} : { quotaBytes }),
          usedBytes: engine?.usedBytes() ?? 0,
          files: engine?.usage.files ?? 0,
        }
      },
      setQuota: async (bytes) => {
        const state = this.#requireRunning('Setting the quota')
        state.data.quotaBytes = bytes
        await save()
        if (this.#engine !== undefined) this.#engine.quotaBytes = this.#quota()
      },
      createSubCloud: async ({ name, quotaBytes }) => {
        const state = this.#requireRunning('Creating a sub-cloud')
        const used = new Set(state.data.subClouds.map((each) => each.index))
        let index = 1
        while (used.has(index)) index++
        state.data.subClouds.push({ index, name, createdAt: this.#now(), ...(quotaBytes === undefined ? {} : { quotaBytes }) })
        await save()
        const sub = await this.#openSubCloud(index, name, quotaBytes)
        const { pin } = await sub.admin.addPin({ label: 'first-owner', role: 'owner' })
        return { ...this.#subCloudInfo(index), pin }
      },
      listSubClouds: async () => this.#requireRunning('Listing sub-clouds').data.subClouds.map((record) => this.#subCloudInfo(record.index)),
      destroySubCloud: async (index, options = {}) => {
        const state = this.#requireRunning('Destroying a sub-cloud')
        if (!state.data.subClouds.some((each) => each.index === index)) throw errors.unknownSubCloud(index)
        state.data.subClouds = state.data.subClouds.filter((each) => each.index !== index)
        await save()
        const sub = this.#subClouds.get(index)
        this.#subClouds.delete(index)
        await sub?.destroy({ wipe: options.wipe === true, wipeFolder: options.wipe === true })
      },
    }
  }

  #quota(): number | undefined {
    const set = this.#cloudState?.data.quotaBytes
    return set === undefined ? this.init.quotaBytes : (set ?? undefined)
  }

  /** A running sub-cloud instance (server only), by index. */
  subCloud(index: number): CloudBox | undefined {
    return this.#subClouds.get(index)
  }

  #subCloudInfo(index: number): SubCloudInfo {
    const record = (this.#cloudState as CloudState).data.subClouds.find((each) => each.index === index)
    const sub = this.#subClouds.get(index)
    if (record === undefined || sub === undefined) throw errors.unknownSubCloud(index)
    return { index, id: sub.id, name: record.name, createdAt: record.createdAt, uri: sub.pairingUri(), ...(record.quotaBytes === undefined ? {} : { quotaBytes: record.quotaBytes }) }
  }

  async #openSubCloud(index: number, name: string, quotaBytes: number | undefined): Promise<CloudBox> {
    const root = this.init.subCloudRoot ?? join(this.stateDir, 'subclouds')
    const sub = new CloudBox(
      {
        role: 'server',
        folder: join(root, String(index)),
        name,
        ...(quotaBytes === undefined ? {} : { quotaBytes }),
        ...(this.init.hub === undefined ? {} : { hub: this.init.hub }),
        ...(this.init.advertise === undefined ? {} : { advertise: this.init.advertise }),
        ...(this.init.keepAliveMs === undefined ? {} : { keepAliveMs: this.init.keepAliveMs }),
        ...(this.init.reconnect === undefined ? {} : { reconnect: this.init.reconnect }),
        ...(this.init.watch === undefined ? {} : { watch: this.init.watch }),
      },
      { identity: this.identity.subCloud(index), ...(this.#listener === undefined ? {} : { listener: this.#listener }), ...(this.#components.now === undefined ? {} : { now: this.#components.now }) },
    )
    await sub.start()
    this.#subClouds.set(index, sub)
    return sub
  }

  // ————— client side —————

  #requireClientSession(): { secure: SecureChannel; control: ControlPeer } {
    if (this.role !== 'client') throw errors.role('client', 'Remote administration')
    if (this.#clientSession === undefined) throw errors.unreachable('not connected to the cloud right now')
    return this.#clientSession
  }

  /**
   * Pairs this client with a server: connects with Noise IK to the key in the URI and
   * proves the PIN inside that channel. Then syncs (and keeps syncing) with it.
   * @throws ERR_INVALID_PAIRING_URI, ERR_WRONG_PIN, ERR_PIN_LOCKED, ERR_UNREACHABLE…
   */
  async pair(uri: string, pin: string, options: { hub?: string; signal?: AbortSignal } = {}): Promise<PairedCloud> {
    if (this.role !== 'client') throw errors.role('client', 'Pairing')
    const state = this.#requireRunning('Pairing')
    assertPinFormat(pin)
    const info = parsePairingUri(uri)
    const hub = options.hub ?? info.hub ?? this.init.hub
    const target = { ...info, ...(hub === undefined ? {} : { hub }) }
    const { secure, control, welcome } = await this.#open(target, pin, options.signal ?? this.#abort.signal)
    await secure.close()
    await control.run().catch(() => {})
    const paired: PairedCloud = { id: info.id, name: info.name || welcome.name, role: welcome.role, addresses: info.addresses, pairedAt: this.#now(), ...(hub === undefined ? {} : { hub }) }
    state.data.paired = paired
    await state.save()
    if (this.#engine !== undefined && this.#engine.options.folderId !== info.id) {
      this.#unsubscribeEngine?.()
      await this.#engine.stop()
      this.#engine = undefined
    }
    await this.#startEngine(info.id, () => (this.#clientLoop ??= this.#runClient()))
    this.#clientLoop ??= this.#runClient()
    return paired
  }

  /** Opens a session: direct addresses first, then the hub. */
  async #open(target: PairingInfo, pin: string | undefined, signal: AbortSignal): Promise<{ secure: SecureChannel; control: ControlPeer; syncLane: MessageChannel; welcome: { role: Role; name: string }; transport: TransportKind; url: string }> {
    const attempts: { transport: TransportKind; url: string; dial: () => Promise<MessageChannel> }[] = [
      ...target.addresses.map((url) => ({ transport: 'direct' as const, url, dial: () => dialDirect(url, target.id, { signal }) })),
      ...(target.hub === undefined ? [] : [{ transport: 'hub' as const, url: target.hub, dial: () => dialHub(target.hub as string, target.id, { signal }) }]),
    ]
    let lastError: Error = errors.unreachable('no address or hub to try')
    for (const attempt of attempts) {
      if (signal.aborted) throw errors.unreachable('cancelled')
      this.#emit({ type: 'connection', state: 'connecting', peer: target.id, transport: attempt.transport, url: attempt.url })
      let raw: MessageChannel
      try {
        raw = await attempt.dial()
      } catch (error) {
        lastError = error as Error
        continue
      }
      let secure: SecureChannel
      try {
        secure = await initiateSecureChannel(raw, { identity: this.identity, remotePublicKey: target.id, timeoutMs: 10_000, signal, maxMessageSize: PRE_WELCOME_MAX_MESSAGE })
      } catch (error) {
        // The transport's own reason (node offline at the hub…) says more than "handshake failed".
        const transportReason = await Promise.race([raw.closed, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 50))])
        await raw.close().catch(() => {})
        // Silence until the deadline proves nothing either way: unreachable, retried quietly.
        lastError = isCloudBoxError(transportReason) ? transportReason : error instanceof HandshakeTimeoutError ? errors.unreachable('the server did not answer the handshake', error) : errors.serverUnverified(attempt.url, error)
        continue
      }
      // The server speaks sync only after our hello (it welcomes first): nothing else before.
      let helloSent = false
      const [controlLane, syncLane] = createChannelMux(secure, SESSION_LANES, { highWaterBytes: LANE_HIGH_WATER_BYTES, admit: (lane) => lane === CONTROL_LANE || helloSent }) as [MessageChannel, MessageChannel]
      const reader = controlLane[Symbol.asyncIterator]()
      // A stop during the hello exchange ends it at once (the reads then see the close).
      const onAbort = () => void secure.close().catch(() => {})
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        const first = await withTimeout(reader.next(), 10_000)
        if (first.done === true) throw errors.unreachable('the server closed the session')
        const serverHello = controlCodec.decode(first.value)
        if (serverHello.kind !== 'serverHello') throw errors.protocol('expected serverHello')
        const proof = pin === undefined ? undefined : pinProof(await pinKey(pin, serverHello.body.salt), secure.handshakeHash)
        // The server proved its key (IK): once it welcomes, its sync messages may be large.
        secure.setMaxMessageSize(SESSION_MAX_MESSAGE)
        helloSent = true
        await controlLane.send(controlCodec.encode('hello', { name: this.#name, ...(proof === undefined ? {} : { pair: { proof } }) }))
        const second = await withTimeout(reader.next(), 30_000)
        if (second.done === true) throw errors.unreachable('the server closed the session')
        const answer = controlCodec.decode(second.value)
        if (answer.kind === 'refused') throw refusalError(answer.body.code, answer.body.message, answer.body.retryAfterMs)
        if (answer.kind !== 'welcome') throw errors.protocol('expected welcome')
        const control = new ControlPeer(controlLane, reader, { onLatency: (milliseconds) => this.#emit({ type: 'latency', peer: target.id, milliseconds }) }, this.init.keepAliveMs ?? 15_000)
        this.#emit({ type: 'connection', state: 'connected', peer: target.id, transport: attempt.transport, url: attempt.url })
        return { secure, control, syncLane, welcome: { role: answer.body.role, name: answer.body.name }, transport: attempt.transport, url: attempt.url }
      } catch (error) {
        await secure.close(error as Error).catch(() => {})
        // A refusal is the server's answer: no point trying another path.
        if (isCloudBoxError(error) && error.code !== 'ERR_UNREACHABLE' && error.code !== 'ERR_TIMEOUT') throw error
        lastError = error as Error
      } finally {
        signal.removeEventListener('abort', onAbort)
      }
    }
    throw lastError
  }

  async #runClient(): Promise<void> {
    const signal = this.#abort.signal
    const backoff = new Backoff(this.init.reconnect)
    while (!signal.aborted) {
      const paired = this.#cloudState?.data.paired
      if (paired === undefined) return
      let reason: Error | undefined
      try {
        const { secure, control, syncLane } = await this.#open({ id: paired.id, name: paired.name, addresses: paired.addresses, ...(paired.hub === undefined ? {} : { hub: paired.hub }) }, undefined, signal)
        backoff.reset()
        // Stopping closes the session, even one that opened while stop() was under way.
        const onAbort = () => void secure.close().catch(() => {})
        signal.addEventListener('abort', onAbort, { once: true })
        if (signal.aborted) onAbort()
        this.#clientSession = { secure, control }
        const sync = this.#engine?.connect(syncLane, { peer: paired.id })
        try {
          reason = await control.run()
          await sync?.close()
        } finally {
          signal.removeEventListener('abort', onAbort)
          this.#clientSession = undefined
        }
        this.#emit({ type: 'connection', state: 'disconnected', peer: paired.id, ...(reason === undefined ? {} : { error: eventError(reason) }) })
      } catch (error) {
        reason = error as Error
      }
      if (signal.aborted) return
      if (isCloudBoxError(reason, 'ERR_DEVICE_REVOKED') || isCloudBoxError(reason, 'ERR_NOT_PAIRED')) {
        // The server forgot this device: retrying cannot help; pair again.
        this.#emit({ type: 'refused', error: eventError(reason) })
        return
      }
      if (isCloudBoxError(reason, 'ERR_DEVICE_BLOCKED')) this.#emit({ type: 'refused', error: eventError(reason) })
      const delayMs = isCloudBoxError(reason, 'ERR_DEVICE_BLOCKED') ? (this.init.reconnect?.maxDelayMs ?? 30_000) : backoff.next()
      this.#emit({ type: 'retry', target: 'server', attempt: backoff.attempt, delayMs, ...(reason === undefined ? {} : { error: eventError(reason) }) })
      await sleep(delayMs, signal)
    }
  }

  /**
   * Server: answers REST API calls that reach this cloud through its hub
   * (`<hub>/n/<id>/api/…`), so a home server needs no open port. cloudserver sets it;
   * undefined stops serving them.
   */
  /**
   * Server: answers plain HTTP requests on this server's own direct listener with
   * `handler` (the encrypted API on the same port as the sessions); a no-op without one.
   */
  serveApiDirect(handler: ((request: IncomingMessage, response: ServerResponse) => void) | undefined): void {
    if (this.role !== 'server') throw errors.role('server', 'Serving an API')
    if (this.#ownListener) this.#listener?.serveHttp(handler)
  }

  serveApiThroughHub(handler: ((request: Uint8Array) => Promise<HubApiReply>) | undefined): void {
    if (this.role !== 'server') throw errors.role('server', 'Serving an API')
    this.#apiHandler = handler
  }

  /** Client: waits until connected (or the signal aborts). */
  async waitConnected(signal?: AbortSignal): Promise<void> {
    if (this.connected) return
    for await (const event of this.status) {
      if (this.connected) return
      if (signal?.aborted) throw errors.unreachable('cancelled')
      if (event.type === 'refused') throw refusalError(event.error.code, event.error.message)
    }
    throw errors.state('Waiting for a connection', this.#state)
  }
}

function fresh(): CloudStateData {
  return { version: 1, pinSalt: randomBytes(PIN_SALT_LENGTH).toString('hex'), pins: [], lockout: { failures: 0, lockedUntil: 0 }, devices: [], subClouds: [] }
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(errors.timeout('The session set-up')), ms)))])
  } finally {
    clearTimeout(timer)
  }
}
