/**
 * A CloudBox home: the folder that holds one node's public metadata (`identity.json`)
 * and, when the OS keyring is not used, its encrypted vault (`vault.cbv`).
 * The secret (recovery phrase) lives only in the keyring or the vault.
 */
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { formatMinisignPublicKey, Identity } from '@cloudbox/encrypted-messaging'
import { openSecureStorage, type SecureStorage } from '@cloudbox/securestorage'
import { writeFileAtomically } from '@cloudbox/securestorage/durable-file'
import { CliError, noIdentityError } from './errors.js'
import type { Output } from './output.js'
import { readPassphrase } from './passphrase.js'

export const METADATA_FILE = 'identity.json'
export const VAULT_FILE = 'vault.cbv'
const IDENTITY_SECRET = 'identity'
const METADATA_VERSION = 1

export type StorageChoice = 'auto' | 'keyring' | 'vault'

/** Public facts about the home's identity, readable without unlocking anything. */
export interface HomeMetadata {
  version: number
  publicId: string
  publicKeyHex: string
  ageRecipient: string
  minisignPublicKey: string
  storage: 'keyring' | 'vault' | 'memory'
  keyringService: string
  createdAt: string
}

/** `--home`, else CLOUDBOX_HOME, else the user's config folder. */
export function resolveHome(option: string | undefined): string {
  if (option !== undefined && option !== '') return resolve(option)
  if (process.env.CLOUDBOX_HOME) return resolve(process.env.CLOUDBOX_HOME)
  const config = process.env.XDG_CONFIG_HOME || join(homedir(), '.config')
  return join(config, 'cloudbox')
}

export function readMetadata(home: string): HomeMetadata {
  const path = join(home, METADATA_FILE)
  if (!existsSync(path)) throw noIdentityError(home)
  let metadata: HomeMetadata
  try {
    metadata = JSON.parse(readFileSync(path, 'utf8')) as HomeMetadata
  } catch (error) {
    throw new CliError('ERR_HOME_CORRUPTED', `${path} is damaged; restore it from a backup or run \`cloudbox init --force --mnemonic-file F\` with your recovery phrase.`, { cause: error })
  }
  if (metadata.version !== METADATA_VERSION || typeof metadata.publicId !== 'string') {
    throw new CliError('ERR_HOME_CORRUPTED', `${path} is not a CloudBox ${METADATA_VERSION} home; use a matching cloudbox version.`)
  }
  return metadata
}

export function hasIdentity(home: string): boolean {
  return existsSync(join(home, METADATA_FILE))
}

// One keyring service per home, fixed at init so a moved home keeps finding its key.
function keyringServiceFor(home: string): string {
  return `cloudbox:${createHash('sha256').update(home).digest('hex').slice(0, 16)}`
}

async function openStorage(home: string, service: string, prefer: StorageChoice, creating: boolean, output: Output): Promise<SecureStorage> {
  const storage = await openSecureStorage({
    service,
    vaultPath: join(home, VAULT_FILE),
    passphrase: () => readPassphrase({ confirm: creating }),
    ...(prefer === 'auto' ? {} : { prefer }),
    onNotice: (notice) => output.note(notice.message),
  })
  return storage
}

/** Stores a new identity's secret and writes the home's metadata. */
export async function saveIdentity(home: string, identity: Identity, choice: StorageChoice, output: Output): Promise<HomeMetadata> {
  mkdirSync(home, { recursive: true, mode: 0o700 })
  const service = keyringServiceFor(home)
  // A leftover vault of an identity being replaced must not block or confuse the new one.
  rmSync(join(home, VAULT_FILE), { force: true })
  const storage = await openStorage(home, service, choice, true, output)
  try {
    const secret = JSON.stringify({ recoveryPhrase: identity.exportRecoveryPhrase(), passphrase: identity.exportPassphrase() })
    await storage.set(IDENTITY_SECRET, new TextEncoder().encode(secret))
    const metadata: HomeMetadata = {
      version: METADATA_VERSION,
      publicId: identity.publicId,
      publicKeyHex: Buffer.from(identity.publicKey).toString('hex'),
      ageRecipient: identity.ageRecipient,
      minisignPublicKey: formatMinisignPublicKey(identity.publicKey),
      storage: storage.kind,
      keyringService: service,
      createdAt: new Date().toISOString(),
    }
    await writeFileAtomically(join(home, METADATA_FILE), `${JSON.stringify(metadata, null, 2)}\n`)
    return metadata
  } finally {
    await storage.stop()
  }
}

/** Unlocks the home's secret storage and loads its identity. */
export async function loadIdentity(home: string, output: Output): Promise<Identity> {
  const metadata = readMetadata(home)
  const prefer: StorageChoice = metadata.storage === 'keyring' ? 'keyring' : 'vault'
  const storage = await openStorage(home, metadata.keyringService, prefer, false, output)
  try {
    const secret = await storage.get(IDENTITY_SECRET)
    if (secret === undefined) {
      throw new CliError('ERR_SECRET_MISSING', `The ${storage.kind} holds no key for ${metadata.publicId}; restore it with \`cloudbox init --force --mnemonic-file F --home ${home}\`.`)
    }
    const { recoveryPhrase, passphrase } = JSON.parse(new TextDecoder().decode(secret)) as { recoveryPhrase: string; passphrase: string }
    secret.fill(0)
    const identity = Identity.fromRecoveryPhrase(recoveryPhrase, { passphrase })
    if (identity.publicId !== metadata.publicId) {
      throw new CliError('ERR_HOME_CORRUPTED', `The stored key (${identity.publicId}) does not match ${METADATA_FILE} (${metadata.publicId}); the home was tampered with or mixed up.`)
    }
    return identity
  } finally {
    await storage.stop()
  }
}
