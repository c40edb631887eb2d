import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import ignore from 'ignore'
import { afterAll, describe, expect, it } from 'vitest'
import { BUILT_IN_RULES, loadIgnoreRules } from '../src/ignore-rules.js'
import { foldName, namesStateFolder } from '../src/paths.js'

const folders: string[] = []
afterAll(() => folders.forEach((folder) => rmSync(folder, { recursive: true, force: true })))
const folder = (files: Record<string, string> = {}) => {
  const root = mkdtempSync(join(tmpdir(), 'cloudsync-ignore-'))
  folders.push(root)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(root, name), text)
  return root
}

// Names that touch every built-in rule, its edges and near misses, in several spellings.
const NAMES = [
  'a.txt', 'notes', '.cloudboxignore.local', '.CLOUDBOXIGNORE.LOCAL', '.cloudboxignore', '.cloudbox-tmp-123', '.CloudBox-Tmp-x', 'x.cloudbox-tmp-1',
  'f.sync-tmp', 'f.SYNC-TMP', '.sync-tmp', 'sync-tmp', '~$report.docx', '~report', '$~x', '.~lock.file.odt#', '.~lock.file.odt', '.~lockfile#',
  'a.swp', 'a.SWP', '.swp', 'swp', 'a.swx', 'a.swpx', '.DS_Store', '.ds_store', 'DS_Store', 'Thumbs.db', 'thumbs.DB', 'Thumbs.db2', 'desktop.ini',
  'Desktop.INI', 'desktop.ini.bak', '.Trash-1000', '.trash-', '.Trash', 'Trash-1', '.cloudbox', '.CloudBox', 'CLOUDB~1', 'cl1a2b~3', 'cloudbox', 'a*b', '[x]', 'été',
  'line\nbreak.swp', 'x.swp\n', '.cloud\u200bbox', '.ＣＬＯＵＤＢＯＸ', 'CLOUDB~12', 'CL1A2B~1', 'cl1a2g~1', '.cloudboxx', 'Ｔhumbs.db',
]

describe('the built-in ignore rules', () => {
  it('ignore exactly what the gitignore matcher and the state-folder check ignore, for every name at every depth', async () => {
    const rules = await loadIgnoreRules(folder())
    const reference = ignore().add([...BUILT_IN_RULES])
    const expected = (path: string, isDirectory: boolean) => path.split('/').some(namesStateFolder) || reference.ignores(isDirectory ? `${path}/` : path)
    let compared = 0
    for (const first of NAMES) {
      for (const shape of [[first], ['dir', first], [first, 'inner.txt'], ['a', first, 'b', 'c.txt']]) {
        const path = shape.join('/')
        for (const isDirectory of [false, true]) {
          expect(rules.ignores(path, isDirectory), `${JSON.stringify(path)} ${isDirectory ? 'folder' : 'file'}`).toBe(expected(path, isDirectory))
          compared++
        }
      }
    }
    expect(compared).toBe(NAMES.length * 8)
  })

  it('the state folder check of plain ASCII names agrees with the full Unicode fold', () => {
    const folded = (name: string) => {
      const fold = foldName(name)
      return fold === '.cloudbox' || /^cloudb~\d+$/.test(fold) || /^cl[0-9a-f]{4}~\d+$/.test(fold)
    }
    for (const name of [...NAMES, 'CloudB~7', 'cLoUdBoX', '.CLOUDBOX', 'clABCD~99', 'clabcd~', 'cloudb~', '12345678']) expect(namesStateFolder(name), name).toBe(folded(name))
  })

  it('keep the rules of .cloudboxignore and .cloudboxignore.local, which cannot bring a built-in one back', async () => {
    const rules = await loadIgnoreRules(folder({ '.cloudboxignore': 'build/\n*.log\n!keep.log\n!Thumbs.db\n', '.cloudboxignore.local': '/private\n' }))
    expect(rules.ignores('build', true)).toBe(true)
    expect(rules.ignores('src/build/out.js', false)).toBe(true)
    expect(rules.ignores('x/debug.log', false)).toBe(true)
    expect(rules.ignores('keep.log', false)).toBe(false)
    expect(rules.ignores('private/a.txt', false)).toBe(true)
    expect(rules.ignores('docs/private/a.txt', false)).toBe(false)
    expect(rules.ignores('Thumbs.db', false)).toBe(true)
    expect(rules.ignores('src/main.ts', false)).toBe(false)
  })
})
