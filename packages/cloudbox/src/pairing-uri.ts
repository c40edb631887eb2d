/**
 * The pairing URI a server shows as a QR code:
 * `cloudbox://pair?id=<cb1…>&hub=<ws(s) URL>&name=<label>&addr=<ws(s) URL>…`
 * `id` is the server's public key: a client that connects with Noise IK to it talks
 * to the genuine server or to nobody, whatever the hub or addresses say.
 */
import { encodePublicId, parsePublicId } from '@cloudbox/encrypted-messaging'
import { errors } from './errors.js'

export interface PairingInfo {
  /** The cloud's public ID (cb1…). */
  id: string
  name: string
  /** A router hub that relays to the server. */
  hub?: string
  /** Direct WebSocket addresses (ws://host:port), tried before the hub. */
  addresses: string[]
}

const MAX_URI_LENGTH = 2048

function wsUrl(text: string, what: string): string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw errors.invalidUri(`${what} is not a URL`)
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw errors.invalidUri(`${what} must be ws:// or wss://`)
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') throw errors.invalidUri(`${what} must be a plain ws:// or wss:// address`)
  return url.href.replace(/\/$/, '')
}

export function formatPairingUri(info: PairingInfo): string {
  const params = new URLSearchParams()
  params.set('id', info.id)
  if (info.hub !== undefined) params.set('hub', info.hub)
  params.set('name', info.name)
  for (const address of info.addresses) params.append('addr', address)
  return `cloudbox://pair?${params.toString()}`
}

/** @throws ERR_INVALID_PAIRING_URI */
export function parsePairingUri(uri: string): PairingInfo {
  if (typeof uri !== 'string' || uri.length > MAX_URI_LENGTH) throw errors.invalidUri('too long')
  const prefix = 'cloudbox://pair?'
  if (!uri.startsWith(prefix)) throw errors.invalidUri('it must start with cloudbox://pair?')
  const params = new URLSearchParams(uri.slice(prefix.length))
  const idText = params.get('id')
  if (idText === null) throw errors.invalidUri('no id')
  let id: string
  try {
    id = encodePublicId(parsePublicId(idText))
  } catch {
    throw errors.invalidUri('the id is not a CloudBox ID')
  }
  const name = params.get('name') ?? ''
  if (name.length > 64 || name.includes('\0')) throw errors.invalidUri('the name is too long')
  const hubText = params.get('hub')
  const addresses = params.getAll('addr').map((address) => wsUrl(address, 'addr'))
  if (addresses.length > 16) throw errors.invalidUri('too many addresses')
  if (hubText === null && addresses.length === 0) throw errors.invalidUri('neither a hub nor an address to reach the server')
  return { id, name, ...(hubText === null ? {} : { hub: wsUrl(hubText, 'hub') }), addresses }
}

/** The pairing URI as a QR code: text for a terminal, an SVG document, or PNG bytes. */
export async function pairingQr(uri: string, format: 'terminal' | 'text'): Promise<string>
export async function pairingQr(uri: string, format: 'svg'): Promise<string>
export async function pairingQr(uri: string, format: 'png'): Promise<Buffer>
export async function pairingQr(uri: string, format: 'terminal' | 'text' | 'svg' | 'png'): Promise<string | Buffer> {
  // Loaded when a code is drawn: a device that only syncs never needs it.
  const { default: QRCode } = await import('qrcode')
  if (format === 'png') return QRCode.toBuffer(uri, { type: 'png', errorCorrectionLevel: 'M', margin: 2, width: 320 })
  if (format === 'svg') return QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 })
  // Plain half blocks, no colour escapes: what a file or a log can hold.
  if (format === 'text') return QRCode.toString(uri, { type: 'utf8', errorCorrectionLevel: 'L', margin: 2 })
  return QRCode.toString(uri, { type: 'terminal', small: true, errorCorrectionLevel: 'L' })
}
