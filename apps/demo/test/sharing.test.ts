/**
 * Sharing with the tools people already use, on real processes: `seal`/`open` in pipes
 * as age users write them, minisign public key files, and shares through a bucket with no
 * CloudBox server, against a real S3-compatible server (s3rver) on 127.0.0.1.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import S3rver from 's3rver'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const BUCKET = 'cloudbox-shares'
let dir: string
let s3: S3rver
let endpoint: string
let client: S3Client

// s3rver checks signatures made with its fixed test credentials; the program finds them where AWS tools do.
const env = (): NodeJS.ProcessEnv => ({ ...process.env, CLOUDBOX_HOME: '', NO_COLOR: '1', CLOUDBOX_PASSPHRASE: 'correct horse battery staple', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' })

function run(args: string[], input?: Buffer | string) {
  const result = spawnSync(process.execPath, [cli, ...args], { env: env(), input: input ?? '', maxBuffer: 64 * 1024 * 1024 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() }
}

function json(args: string[]): Record<string, unknown> {
  const result = run([...args, '--json'])
  expect(result.status, result.stderr).toBe(0)
  return JSON.parse(result.stdout.toString().trim().split('\n').at(-1) as string) as Record<string, unknown>
}

/** The program without blocking this process: the S3 server the test runs here must keep answering. */
function runAsync(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { ...env(), ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('close', (status) => resolve({ status, stdout, stderr }))
  })
}

async function jsonAsync(args: string[]): Promise<Record<string, unknown>> {
  const result = await runAsync([...args, '--json'])
  expect(result.status, result.stderr).toBe(0)
  return JSON.parse(result.stdout.trim().split('\n').at(-1) as string) as Record<string, unknown>
}

function tool(command: string, args: string[], input?: Buffer) {
  const result = spawnSync(command, args, { input: input ?? '', maxBuffer: 64 * 1024 * 1024 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cloudbox-sharing-'))
  mkdirSync(join(dir, 's3'))
  s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(dir, 's3'), configureBuckets: [{ name: BUCKET }] })
  const { port } = await s3.run()
  endpoint = `http://127.0.0.1:${port}`
  client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
  for (const name of ['alice', 'bob']) json(['init', '--home', join(dir, name), '--storage', 'vault'])
})

afterAll(async () => {
  client?.destroy()
  await s3?.close()
  rmSync(dir, { recursive: true, force: true })
})

const idOf = (name: string) => String(json(['id', '--home', join(dir, name)]).publicId)

describe('seal and open as age users write them', () => {
  it('reads standard input and writes standard output (-), takes recipients files (-R) and several identities (-i)', () => {
    const key = join(dir, 'age-key.txt')
    expect(tool('age-keygen', ['-o', key]).status).toBe(0)
    const ageRecipient = /public key: (age1[a-z0-9]+)/.exec(readFileSync(key, 'utf8'))![1]!
    const recipients = join(dir, 'team.txt')
    writeFileSync(recipients, `# the team\n${idOf('bob')}\n\n${ageRecipient}\n`)
    const plaintext = Buffer.from('piped through cloudbox seal\n'.repeat(5000))
    const sealed = run(['seal', '-', '-R', recipients], plaintext)
    expect(sealed.status, sealed.stderr).toBe(0)
    expect(sealed.stdout.subarray(0, 21).toString()).toBe('age-encryption.org/v1')
    // The age tool opens it with its own key, and cloudbox with Bob's home.
    expect(tool('age', ['-d', '-i', key], sealed.stdout).stdout.equals(plaintext)).toBe(true)
    const bobOpened = run(['open', '-', '--home', join(dir, 'bob')], sealed.stdout)
    expect(bobOpened.status, bobOpened.stderr).toBe(0)
    expect(bobOpened.stdout.equals(plaintext)).toBe(true)
    // Several identity files: the one that matches opens it.
    const other = join(dir, 'other-key.txt')
    tool('age-keygen', ['-o', other])
    const opened = run(['open', '-', '-i', other, '-i', key], sealed.stdout)
    expect(opened.status, opened.stderr).toBe(0)
    expect(opened.stdout.equals(plaintext)).toBe(true)
    // A file sealed by age, read from standard input, written to a file.
    const byAge = tool('age', ['-r', ageRecipient], plaintext).stdout
    const out = join(dir, 'from-age.txt')
    expect(run(['open', '-', '-i', key, '-o', out], byAge).status).toBe(0)
    expect(readFileSync(out).equals(plaintext)).toBe(true)
    // Armor to standard output, for a mail.
    const armored = run(['seal', '-', '--to', ageRecipient, '-a'], plaintext)
    expect(armored.stdout.toString()).toMatch(/^-----BEGIN AGE ENCRYPTED FILE-----/)
    expect(tool('age', ['-d', '-i', key], armored.stdout).stdout.equals(plaintext)).toBe(true)
    expect(run(['seal', '-'], plaintext).stderr).toContain('at least one recipient')
  })

  it('writes the minisign public key file that minisign -V reads', () => {
    const pub = join(dir, 'alice.pub')
    run(['id', '--home', join(dir, 'alice'), '--minisign-pub', pub])
    const doc = join(dir, 'contract.txt')
    writeFileSync(doc, 'I agree.\n')
    expect(run(['sign', doc, '--home', join(dir, 'alice')]).status).toBe(0)
    const verified = tool('minisign', ['-Vm', doc, '-p', pub])
    expect(verified.status, verified.stderr).toBe(0)
    expect(verified.stdout.toString()).toContain('Signature and comment signature verified')
    // A trusted comment of one's own, as minisign -t takes it.
    expect(run(['sign', doc, '-t', 'release 1.2.0', '-o', `${doc}.release.minisig`, '--home', join(dir, 'alice')]).status).toBe(0)
    const release = tool('minisign', ['-Vm', doc, '-p', pub, '-x', `${doc}.release.minisig`])
    expect(release.status, release.stderr).toBe(0)
    expect(release.stdout.toString()).toContain('Trusted comment: release 1.2.0')
    expect(run(['verify', doc, '--signer', idOf('alice'), '--sig', `${doc}.release.minisig`]).status).toBe(0)
    expect(run(['sign', doc, '-t', 'x', '--scope', 'accept', '--home', join(dir, 'alice')]).status).toBe(2)
  })
})

describe('shares through a bucket, with no server', () => {
  it('seals, signs and uploads to s3://BUCKET/PREFIX; the link names no key; fetch checks the sender and opens; age opens the object', async () => {
    const key = join(dir, 'carol-age.txt')
    tool('age-keygen', ['-o', key])
    const carol = /public key: (age1[a-z0-9]+)/.exec(readFileSync(key, 'utf8'))![1]!
    const file = join(dir, 'quarterly-report.pdf')
    const content = Buffer.concat([Buffer.from('%PDF-1.7 secret figures\n'), Buffer.alloc(300_000, 7)])
    writeFileSync(file, content)
    const shared = await jsonAsync(['share', file, '--to', idOf('bob'), carol, '--bucket', `s3://${BUCKET}/shares/2026`, '--endpoint', endpoint, '--home', join(dir, 'alice')])
    const link = String(shared.link)
    expect(link).toMatch(/^cloudbox:\/\/share\?/)
    expect(link).not.toContain('quarterly')
    expect(link).not.toMatch(/AGE-SECRET|age1/)
    expect(new URL(link.replace('cloudbox://share', 'http://x/')).searchParams.get('from')).toBe(idOf('alice'))
    // What the bucket holds: an age file and its signature, under a name that says nothing.
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'shares/2026/' }))
    const keys = (listed.Contents ?? []).map((object: { Key?: string }) => object.Key!).sort()
    expect(keys).toEqual([String(shared.key), `${String(shared.key)}.minisig.age`])
    // The signature is sealed too: the bucket sees neither the sender's ID nor its key ID.
    const sealedSignature = Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${String(shared.key)}.minisig.age` }))).Body!.transformToByteArray())
    expect(sealedSignature.includes(Buffer.from(idOf('alice')))).toBe(false)
    expect(sealedSignature.subarray(0, 21).toString()).toBe('age-encryption.org/v1')
    const signatureText = tool('age', ['-d', '-i', key], sealedSignature).stdout.toString()
    expect(signatureText).toContain(`signer:${idOf('alice')}`)
    expect(keys.join(' ')).not.toContain('quarterly')
    const object = Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: String(shared.key) }))).Body!.transformToByteArray())
    expect(object.includes(Buffer.from('quarterly'))).toBe(false)
    expect(tool('age', ['-d', '-i', key], object).stdout.equals(content)).toBe(true)

    // Bob fetches it with his home: checked against Alice's key, then opened.
    const out = join(dir, 'bob-report.pdf')
    const fetched = await jsonAsync(['fetch', link, '-o', out, '--home', join(dir, 'bob')])
    expect(readFileSync(out).equals(content)).toBe(true)
    expect(fetched.from).toBe(idOf('alice'))
    // Carol, with an age key file and no CloudBox home at all.
    const carolOut = join(dir, 'carol-report.pdf')
    expect((await runAsync(['fetch', link, '-o', carolOut, '-i', key])).status).toBe(0)
    expect(readFileSync(carolOut).equals(content)).toBe(true)

    // Someone who is not a recipient cannot open it; an existing output is not overwritten.
    const stranger = await runAsync(['fetch', link, '-o', join(dir, 'stranger.pdf'), '--home', join(dir, 'alice')])
    expect(stranger.status).toBe(1)
    expect(stranger.stderr).toContain('ERR_AGE_NO_MATCHING_IDENTITY')
    expect((await runAsync(['fetch', link, '-o', out, '--home', join(dir, 'bob')])).stderr).toContain('ERR_OUTPUT_EXISTS')

    // The bucket is not trusted: a replaced object, or a link naming another sender, is refused before opening.
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: String(shared.key), Body: tool('age', ['-r', carol], Buffer.from('forged')).stdout }))
    const forged = await runAsync(['fetch', link, '-o', join(dir, 'forged.pdf'), '--home', join(dir, 'bob')])
    expect(forged.status).toBe(1)
    expect(forged.stderr).toContain('ERR_SIGNATURE_INVALID')
    const otherSender = link.replace(/from=[^&]+/, `from=${idOf('bob')}`)
    expect((await runAsync(['fetch', otherSender, '-o', join(dir, 'other.pdf'), '--home', join(dir, 'bob')])).stderr).toContain('ERR_SIGNER_MISMATCH')

    // Mistakes say what to do.
    expect(run(['fetch', 'https://example.com/x', '-o', join(dir, 'x')]).stderr).toContain('ERR_BAD_SHARE_LINK')
    expect(run(['share', file, '--to', 'bob', '--bucket', `s3://${BUCKET}`, '--endpoint', endpoint, '--home', join(dir, 'alice')]).stderr).toContain('neither a public ID')
    expect((await runAsync(['share', file, '--to', carol, '--bucket', 's3://no-such-bucket-here', '--endpoint', endpoint, '--home', join(dir, 'alice')])).stderr).toContain('ERR_BUCKET_NOT_FOUND')
    // (s3rver takes any secret, so a refused one cannot be shown here; a service that is not there can.)
    const unreachable = await runAsync(['fetch', link, '-o', join(dir, 'y'), '-i', key, '--endpoint', 'http://127.0.0.1:9'])
    expect(unreachable.stderr).toContain('ERR_BUCKET_UNREACHABLE')
  })
})
