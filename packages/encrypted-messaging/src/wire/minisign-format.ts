/**
 * The minisign file formats, byte for byte (see PROTOCOL.md, "Document signatures"):
 *
 * public key file:  "untrusted comment: <text>\n" base64("Ed" ‖ keyId[8] ‖ publicKey[32]) "\n"
 * signature file:   "untrusted comment: <text>\n" base64(alg[2] ‖ keyId[8] ‖ signature[64]) "\n"
 *                   "trusted comment: <text>\n" base64(globalSignature[64]) "\n"
 *
 * alg "ED": signature = Ed25519(BLAKE2b-512(document)) (prehashed, minisign's default);
 * alg "Ed": signature = Ed25519(document) (legacy). globalSignature = Ed25519(signature ‖ trusted comment).
 */
import { InvalidKeyError, SignatureMalformedError } from '../errors.js'

export const MINISIGN_KEY_ALGORITHM = 'Ed'
export const MINISIGN_PREHASHED_ALGORITHM = 'ED'
export const MINISIGN_LEGACY_ALGORITHM = 'Ed'
export const MINISIGN_KEY_ID_LENGTH = 8
export const UNTRUSTED_COMMENT_PREFIX = 'untrusted comment: '
export const TRUSTED_COMMENT_PREFIX = 'trusted comment: '
/** Signature files are tiny; anything larger is not one (and is not read whole). */
export const MAX_SIGNATURE_FILE_LENGTH = 16 * 1024
const MAX_COMMENT_LENGTH = 1024

export interface MinisignPublicKey {
  keyId: Uint8Array
  publicKey: Uint8Array
  untrustedComment: string
}

export interface MinisignSignature {
  algorithm: 'ED' | 'Ed'
  keyId: Uint8Array
  signature: Uint8Array
  trustedComment: string
  globalSignature: Uint8Array
  untrustedComment: string
}

/** Key IDs print as minisign does: the 8 bytes as a little-endian integer in upper-case hex. */
export function formatKeyId(keyId: Uint8Array): string {
  return Buffer.from(keyId).reverse().toString('hex').toUpperCase()
}

function strictBase64(text: string, length: number): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined
  const bytes = Buffer.from(text, 'base64')
  // Refuse non-canonical encodings: re-encoding must give the same text.
  if (bytes.length !== length || bytes.toString('base64') !== text) return undefined
  return new Uint8Array(bytes)
}

function lines(text: string): string[] {
  const all = text.replace(/\r\n/g, '\n').split('\n')
  while (all.length > 0 && all[all.length - 1] === '') all.pop()
  return all
}

function checkComment(comment: string, what: string): void {
  if (comment.length > MAX_COMMENT_LENGTH || /[\r\n\0]/.test(comment)) {
    throw new RangeError(`The ${what} must be one line of at most ${MAX_COMMENT_LENGTH} characters`)
  }
}

export function encodePublicKeyFile(key: MinisignPublicKey): string {
  checkComment(key.untrustedComment, 'untrusted comment')
  const body = Buffer.concat([Buffer.from(MINISIGN_KEY_ALGORITHM, 'latin1'), key.keyId, key.publicKey])
  return `${UNTRUSTED_COMMENT_PREFIX}${key.untrustedComment}\n${body.toString('base64')}\n`
}

/**
 * Parses a minisign public key: a whole `.pub` file, or its base64 line alone (as `minisign -P` takes).
 * @throws {InvalidKeyError} when it is not a minisign Ed25519 public key.
 */
export function decodePublicKeyFile(text: string): MinisignPublicKey {
  const fail = () => new InvalidKeyError('This is not a minisign public key: expected a file from `minisign -G` (two lines) or its base64 line.')
  const content = lines(text.trim())
  let untrustedComment = ''
  let keyLine: string | undefined
  if (content.length === 1) keyLine = content[0]
  else if (content.length === 2 && content[0]!.startsWith(UNTRUSTED_COMMENT_PREFIX)) {
    untrustedComment = content[0]!.slice(UNTRUSTED_COMMENT_PREFIX.length)
    keyLine = content[1]
  }
  if (keyLine === undefined) throw fail()
  const body = strictBase64(keyLine.trim(), 2 + MINISIGN_KEY_ID_LENGTH + 32)
  if (body === undefined || Buffer.from(body.subarray(0, 2)).toString('latin1') !== MINISIGN_KEY_ALGORITHM) throw fail()
  return { keyId: body.slice(2, 10), publicKey: body.slice(10), untrustedComment }
}

export function encodeSignatureFile(signature: MinisignSignature): string {
  checkComment(signature.untrustedComment, 'untrusted comment')
  checkComment(signature.trustedComment, 'trusted comment')
  const body = Buffer.concat([Buffer.from(signature.algorithm, 'latin1'), signature.keyId, signature.signature])
  return (
    `${UNTRUSTED_COMMENT_PREFIX}${signature.untrustedComment}\n${body.toString('base64')}\n` +
    `${TRUSTED_COMMENT_PREFIX}${signature.trustedComment}\n${Buffer.from(signature.globalSignature).toString('base64')}\n`
  )
}

/**
 * Parses a minisign signature file strictly.
 * @throws {SignatureMalformedError} on any deviation from the format.
 */
export function decodeSignatureFile(text: string): MinisignSignature {
  if (typeof text !== 'string' || text.length > MAX_SIGNATURE_FILE_LENGTH) throw new SignatureMalformedError()
  const content = lines(text)
  if (content.length !== 4) throw new SignatureMalformedError()
  const [untrusted, signatureLine, trusted, globalLine] = content as [string, string, string, string]
  if (!untrusted.startsWith(UNTRUSTED_COMMENT_PREFIX) || !trusted.startsWith(TRUSTED_COMMENT_PREFIX)) {
    throw new SignatureMalformedError()
  }
  const body = strictBase64(signatureLine, 2 + MINISIGN_KEY_ID_LENGTH + 64)
  const globalSignature = strictBase64(globalLine, 64)
  if (body === undefined || globalSignature === undefined) throw new SignatureMalformedError()
  const algorithm = Buffer.from(body.subarray(0, 2)).toString('latin1')
  if (algorithm !== MINISIGN_PREHASHED_ALGORITHM && algorithm !== MINISIGN_LEGACY_ALGORITHM) {
    throw new SignatureMalformedError('The signature uses an algorithm minisign does not define; it may be damaged.')
  }
  return {
    algorithm,
    keyId: body.slice(2, 10),
    signature: body.slice(10),
    trustedComment: trusted.slice(TRUSTED_COMMENT_PREFIX.length),
    globalSignature,
    untrustedComment: untrusted.slice(UNTRUSTED_COMMENT_PREFIX.length),
  }
}
