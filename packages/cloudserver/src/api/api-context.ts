import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CloudBox } from '@cloudbox/cloudbox'
import type { StorageBackend } from '../storage/storage-backend.js'
import type { Thumbnails } from '../thumbnails.js'

/** What every endpoint plugin gets: the cloud it serves and where its files live. */
export interface ApiContext {
  box: CloudBox
  storage: StorageBackend
  /** Undefined when thumbnails are turned off. */
  thumbnails: Thumbnails | undefined
  /** Told of each file stored by upload (the status page lists them). */
  uploaded?: (path: string, bytes: number, device: string) => void
  /** How large answers (file contents) leave: see BulkAnswers. */
  bulk: BulkAnswers
}

/**
 * Large answers, around the injected reply: it copies every buffer written to it, megabytes
 * per download call. An endpoint reads into `buffer(length)` and answers with `send`; the
 * envelope handler seals those bytes as the body and gives the buffer back.
 */
export interface BulkAnswers {
  /** A reusable buffer of `length` bytes to read `request`'s answer into (taken back once the call is answered). */
  buffer(request: FastifyRequest, length: number): Buffer
  /** Answers `request` with `bytes` as an octet-stream body. */
  send(request: FastifyRequest, reply: FastifyReply, bytes: Uint8Array): FastifyReply
}

/** Set on each inner request by the envelope handler: the verified, authorized caller. */
export const CALLER_HEADER = 'x-cloudbox-caller'
export const ROLE_HEADER = 'x-cloudbox-role'
/** Names the call on each inner request, for the answer BulkAnswers.send sets aside. */
export const CALL_HEADER = 'x-cloudbox-call'

/** The verified caller's public ID (set by the envelope handler, never by a client). */
export const callerOf = (request: FastifyRequest): string => String(request.headers[CALLER_HEADER])

/** Upload IDs are scoped to their caller: no device can touch another's upload. */
export const scopedUpload = (request: FastifyRequest, upload: string): string => `${callerOf(request)}:${upload}`
