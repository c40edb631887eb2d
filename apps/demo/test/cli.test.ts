import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// The built program, exactly as users run it (`npm test` builds before testing).
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
let dir: string

beforeAll(() => {
  if (!existsSync(cli)) throw new Error('Build the workspace first (npm test does): apps/demo/dist/cli.js is missing')
  dir = mkdtempSync(join(tmpdir(), 'cloudbox-cli-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function run(args: string[], options: { passphrase?: string | null; input?: string } = {}) {
  const env: NodeJS.ProcessEnv = { ...process.env, CLOUDBOX_HOME: '', NO_COLOR: '1' }
  delete env.CLOUDBOX_PASSPHRASE
  if (options.passphrase !== null) env.CLOUDBOX_PASSPHRASE = options.passphrase ?? 'correct horse battery staple'
  const result = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', input: options.input ?? '' })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

function json(args: string[], options?: Parameters<typeof run>[1]) {
  const result = run([...args, '--json'], options)
  expect(result.status, result.stderr).toBe(0)
  return JSON.parse(result.stdout) as Record<string, unknown>
}

describe('cloudbox identity commands', () => {
  it('init creates an identity in a vault, shows the phrase once, and id shows it without unlocking', () => {
    const home = join(dir, 'a')
    const created = json(['init', '--home', home, '--storage', 'vault'])
    expect(created.publicId).toMatch(/^cb1/)
    expect(String(created.recoveryPhrase).split(' ')).toHaveLength(24)
    expect(statSync(join(home, 'vault.cbv')).mode & 0o777).toBe(0o600)
    expect(readFileSync(join(home, 'vault.cbv')).includes(Buffer.from(String(created.recoveryPhrase).split(' ')[0]!))).toBe(false)
    // `id` needs no passphrase: it reads public metadata only.
    const id = json(['id', '--home', home], { passphrase: null })
    expect(id.publicId).toBe(created.publicId)
    expect(id.ageRecipient).toMatch(/^age1/)
    expect(String(id.minisignPublicKey)).toMatch(/^untrusted comment: minisign public key [0-9A-F]{16}\n/)
    expect(String(id.publicKey)).toMatch(/^[0-9a-f]{64}$/)
    // The human form has every field too, and never the phrase.
    const human = run(['id', '--home', home])
    expect(human.stdout).toContain(String(created.publicId))
    expect(human.stdout).not.toContain(String(created.recoveryPhrase))
  })

  it('restores the same identity from a phrase file, and refuses to overwrite without --force', () => {
    const first = json(['init', '--home', join(dir, 'b'), '--storage', 'vault'])
    const phraseFile = join(dir, 'phrase.txt')
    writeFileSync(phraseFile, `${String(first.recoveryPhrase).toUpperCase()}\n`)
    const restored = json(['init', '--home', join(dir, 'b2'), '--mnemonic-file', phraseFile, '--storage', 'vault'])
    expect(restored.publicId).toBe(first.publicId)
    expect(restored.recoveryPhrase).toBeUndefined()
    const again = run(['init', '--home', join(dir, 'b2'), '--storage', 'vault'])
    expect(again.status).toBe(1)
    expect(again.stderr).toContain('ERR_IDENTITY_EXISTS')
    writeFileSync(phraseFile, 'abandon abandon abandon\n')
    const bad = run(['init', '--home', join(dir, 'b3'), '--mnemonic-file', phraseFile, '--storage', 'vault'])
    expect(bad.status).toBe(1)
    expect(bad.stderr).toContain('ERR_INVALID_MNEMONIC')
  })

  it('refuses a wrong vault passphrase and a missing one with codes', () => {
    const home = join(dir, 'c')
    json(['init', '--home', home, '--storage', 'vault'])
    const wrong = run(['id', 'export-age', '--home', home], { passphrase: 'wrong' })
    expect(wrong.status).toBe(1)
    expect(wrong.stderr).toContain('ERR_VAULT_WRONG_PASSPHRASE')
    const missing = run(['id', 'export-age', '--home', home], { passphrase: null })
    expect(missing.status).toBe(1)
    expect(missing.stderr).toMatch(/CLOUDBOX_PASSPHRASE/)
  })

  it('reports a home without identity and usage errors with exit code 2', () => {
    const none = run(['id', '--home', join(dir, 'nothing')])
    expect(none.status).toBe(1)
    expect(none.stderr).toContain('ERR_NO_IDENTITY')
    expect(run(['frobnicate']).status).toBe(2)
    expect(run(['init', '--home', join(dir, 'x'), '--storage', 'floppy']).status).toBe(2)
    const help = run(['sign', '--help'])
    expect(help.status).toBe(0)
    expect(help.stdout).toContain('Examples:')
  })

  it('has help with examples for every command', { timeout: 180_000 }, async () => {
    const help = (path: string[]) =>
      new Promise<string>((resolve) => execFile(process.execPath, [cli, ...path, '--help'], { env: { ...process.env, NO_COLOR: '1' } }, (_error, stdout) => resolve(stdout)))
    // Every command the root help lists, and their subcommands.
    const commandsOf = (text: string) => [...text.matchAll(/^  ([a-z][\w-]*)(?: |$)/gm)].map((match) => match[1]!).filter((name) => name !== 'help')
    const top = commandsOf(await help([]))
    const children = await Promise.all(top.map(async (name) => commandsOf(await help([name]))))
    const all = top.flatMap((name, i) => (children[i]!.length === 0 ? [[name]] : [...children[i]!.map((child) => [name, child]), ...(['id', 'inbox'].includes(name) ? [[name]] : [])]))
    expect(all.length).toBeGreaterThan(25)
    const texts = await Promise.all(all.map((path) => help(path)))
    expect(all.filter((_path, i) => !texts[i]!.includes('Examples:')).map((path) => path.join(' '))).toEqual([])
  })
})

describe('cloudbox sign / verify', () => {
  it('signs FILE.minisig that cloudbox and minisign verify; tampering is refused', () => {
    const home = join(dir, 'signer')
    const signer = json(['init', '--home', home, '--storage', 'vault'])
    const file = join(dir, 'contract.txt')
    writeFileSync(file, 'terms\n')
    json(['sign', file, '--scope', 'accept', '--home', home])
    expect(existsSync(`${file}.minisig`)).toBe(true)
    const verified = json(['verify', file, '--signer', String(signer.publicId)])
    expect(verified).toMatchObject({ valid: true, scope: 'accept', signerId: signer.publicId })
    // With the minisign public key file, and by the real minisign.
    const pub = join(dir, 'signer.pub')
    writeFileSync(pub, String(json(['id', '--home', home]).minisignPublicKey))
    expect(json(['verify', file, '--signer', pub]).valid).toBe(true)
    expect(execFileSync('minisign', ['-V', '-p', pub, '-m', file], { encoding: 'utf8' })).toContain('scope:accept')

    writeFileSync(file, 'terms, changed\n')
    const refused = run(['verify', file, '--signer', String(signer.publicId)])
    expect(refused.status).toBe(1)
    expect(refused.stderr).toContain('ERR_SIGNATURE_INVALID')
    const other = json(['init', '--home', join(dir, 'other'), '--storage', 'vault'])
    expect(run(['verify', file, '--signer', String(other.publicId)]).stderr).toContain('ERR_SIGNER_MISMATCH')
    expect(run(['verify', join(dir, 'missing.txt'), '--signer', String(other.publicId)]).stderr).toContain('ERR_FILE_NOT_FOUND')
    expect(run(['verify', file, '--signer', 'cb1notanid']).stderr).toContain('ERR_INVALID_PUBLIC_ID')
    expect(run(['sign', file, '--scope', 'approve', '--home', home]).status).toBe(2)
  })
})

describe('cloudbox seal / open', () => {
  it('seals for a public ID and an age recipient; each opens it, the age tool too; others cannot', () => {
    const alice = join(dir, 'alice')
    const bob = join(dir, 'bob')
    const carol = join(dir, 'carol')
    json(['init', '--home', alice, '--storage', 'vault'])
    const bobId = json(['init', '--home', bob, '--storage', 'vault'])
    json(['init', '--home', carol, '--storage', 'vault'])
    const ageKey = join(dir, 'age.key')
    execFileSync('age-keygen', ['-o', ageKey], { stdio: 'pipe' })
    const ageRecipient = readFileSync(ageKey, 'utf8').match(/public key: (age1\S+)/)![1]!

    const file = join(dir, 'secret.txt')
    writeFileSync(file, 'the plans\n'.repeat(10000))
    const sealed = json(['seal', file, '--to', String(bobId.publicId), ageRecipient, '--home', alice])
    expect(sealed.output).toBe(`${file}.age`)

    const opened = json(['open', `${file}.age`, '-o', join(dir, 'by-bob.txt'), '--home', bob])
    expect(readFileSync(String(opened.output), 'utf8')).toBe(readFileSync(file, 'utf8'))
    json(['open', `${file}.age`, '-o', join(dir, 'by-age-key.txt'), '--identity', ageKey])
    expect(readFileSync(join(dir, 'by-age-key.txt'), 'utf8')).toBe(readFileSync(file, 'utf8'))
    expect(execFileSync('age', ['-d', '-i', ageKey, `${file}.age`], { encoding: 'utf8' })).toBe(readFileSync(file, 'utf8'))

    const denied = run(['open', `${file}.age`, '-o', join(dir, 'by-carol.txt'), '--home', carol])
    expect(denied.status).toBe(1)
    expect(denied.stderr).toContain('ERR_AGE_NO_MATCHING_IDENTITY')
    expect(existsSync(join(dir, 'by-carol.txt'))).toBe(false)

    // Tampered file: refused, and no partial plaintext is left behind.
    const tampered = readFileSync(`${file}.age`)
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 100) ^ 1, tampered.length - 100)
    writeFileSync(join(dir, 'tampered.age'), tampered)
    const broken = run(['open', join(dir, 'tampered.age'), '--home', bob])
    expect(broken.status).toBe(1)
    expect(broken.stderr).toContain('ERR_AGE_PAYLOAD_CORRUPTED')
    expect(existsSync(join(dir, 'tampered'))).toBe(false)

    // Outputs are not overwritten silently.
    expect(run(['open', `${file}.age`, '-o', join(dir, 'by-bob.txt'), '--home', bob]).stderr).toContain('ERR_OUTPUT_EXISTS')
    expect(run(['seal', file, '--to', 'bob', '--home', alice]).stderr).toContain('ERR_INVALID_KEY')
    expect(run(['seal', join(dir, 'nope'), '--to', ageRecipient]).stderr).toContain('ERR_FILE_NOT_FOUND')
  })

  it('seals for the age tool\'s recipient made from an exported CloudBox key (age opens it with export-age)', () => {
    const home = join(dir, 'dave')
    const dave = json(['init', '--home', home, '--storage', 'vault'])
    const exported = json(['id', 'export-age', '--home', home])
    expect(exported.ageRecipient).toBe(dave.ageRecipient ?? exported.ageRecipient)
    const keyFile = join(dir, 'dave.key')
    writeFileSync(keyFile, `${String(exported.ageIdentity)}\n`, { mode: 0o600 })
    const file = join(dir, 'for-dave.txt')
    writeFileSync(file, 'hello dave\n')
    execFileSync('age', ['-r', String(exported.ageRecipient), '-o', `${file}.age`, file])
    json(['open', `${file}.age`, '-o', join(dir, 'dave-opened.txt'), '--home', home])
    expect(readFileSync(join(dir, 'dave-opened.txt'), 'utf8')).toBe('hello dave\n')
  })
})

describe('cloudbox demo', () => {
  it('runs the tour end to end and says what it did', () => {
    const result = run(['demo', '--exit'], { passphrase: null })
    expect(result.status, result.stderr).toBe(0)
    expect(result.stdout).toMatch(/Alice's identity: cb1/)
    expect(result.stdout).toContain('minisign -V agrees: yes')
    expect(result.stdout).toContain('content intact: yes')
    expect(result.stdout).toContain('The age tool opens it with Bob\'s exported key too: yes')
    // The cloud part: hub, server and devices on 127.0.0.1.
    expect(result.stdout).toMatch(/Pairing URI: cloudbox:\/\/pair\?id=cb1\S+&hub=ws/)
    expect(result.stdout).toMatch(/then received 5 files, 32\.\d MiB, through the hub/)
    // Content-defined chunks (64 KiB average) of random data: the changed MiB costs itself
    // plus the chunks cut across its ends until the cut points meet the old ones again.
    // Over 400 simulated edits: median 1.15 MiB, 99th percentile 1.82, worst 2.14; the
    // whole file is 32 MiB, so 3 MiB still proves the rest was reused.
    const delta = /the server fetched (\d+\.\d) MiB\s+and reused (\d+\.\d) MiB/.exec(result.stdout)
    expect(Number(delta?.[1])).toBeGreaterThanOrEqual(1)
    expect(Number(delta?.[1])).toBeLessThan(3)
    expect(Number(delta?.[1]) + Number(delta?.[2])).toBeCloseTo(32, 0)
    expect(result.stdout).toMatch(/the other as docs\/todo\.sync-conflict-\d{8}-\d{6}-\w+\.md on both sides/)
    expect(result.stdout).toContain("verified the laptop's signature (yes) and opened it: intact yes")
    expect(result.stdout).toContain('signer matches')
    expect(result.stdout).toMatch(/Status page \(open it to watch; the token in the URL is its password\): http:\/\/127\.0\.0\.1:\d+\/status\//)
  }, 120_000)

  it('without --exit keeps the hub, server and status page up until Ctrl-C', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CLOUDBOX_HOME: '', NO_COLOR: '1' }
    delete env.CLOUDBOX_PASSPHRASE
    const child = spawn(process.execPath, [cli, 'demo'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    const page = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (data: Buffer) => {
        stdout += data.toString()
        const match = /keep running: (http:\/\/127\.0\.0\.1:\d+\/status\/\S+\/)/.exec(stdout)
        if (match) resolve(match[1]!)
      })
      void exited.then(() => reject(new Error(`the demo ended early:\n${stdout}`)))
    })
    const state = (await (await fetch(`${page}state`)).json()) as { devices: { label: string }[]; transfers: unknown[]; storage: { files: number } }
    expect(state.devices.map((device) => device.label).sort()).toEqual(["Bob's phone", 'laptop'])
    expect(state.storage.files).toBeGreaterThanOrEqual(5)
    expect((await fetch(page)).status).toBe(200)
    child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(stdout).toContain('Done.')
    await expect(fetch(page)).rejects.toThrow()
  }, 120_000)
})
