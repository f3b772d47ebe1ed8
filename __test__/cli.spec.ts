/**
 * The `microsandbox` command from the packed package, installed offline
 * into an empty folder and spawned there (stdout a pipe, so never a TTY):
 * help and usage errors, `image ls/inspect/rm/load/save/prune`, error lines
 * and exit codes. Every answer is compared with what the `Image` API says
 * about the same cache, and every change with the files on disk.
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { BuiltImage, buildImage, makeTempDir, requireTools, run, sampleLayers, toDockerArchive } from './support/images'
import { PACKAGE_ROOT, artifactTree, consistencyProblems, freshHomePerTest, removedBetween } from './support/cache'
import { InstalledCli, cliEnv, controlChars, installCli, runCli, sizeStandsFor, tableRows } from './support/cli'

jest.setTimeout(180_000)

let cli: InstalledCli
let work: string
let app: BuiltImage
let tool: BuiltImage
let appTar: string
let toolTar: string
let spareTar: string

beforeAll(async () => {
  requireTools(['umoci', 'skopeo', 'tar', 'npm'])
  work = await makeTempDir('msb-cli-')
  ;[cli, app, tool] = await Promise.all([
    installCli(),
    buildImage(path.join(work, 'app'), { layers: sampleLayers('app'), config: { labels: { tier: 'web', 'org.example.team': 'core' } }, refs: ['localhost/cli/app:v1'] }),
    buildImage(path.join(work, 'tool'), { layers: sampleLayers('tool'), config: { labels: { tier: 'batch' } }, refs: ['localhost/cli/tool:v1'] }),
  ])
  appTar = await toDockerArchive(app, path.join(work, 'app.tar'))
  toolTar = await toDockerArchive(tool, path.join(work, 'tool.tar'))
  const spare = await buildImage(path.join(work, 'spare'), { layers: sampleLayers('spare'), refs: ['localhost/cli/spare:v1'] })
  spareTar = await toDockerArchive(spare, path.join(work, 'spare.tar'))
}, 600_000)

afterAll(async () => {
  await cli?.cleanup()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
const msb = (args: string[], opts: { env?: Record<string, string | undefined>; input?: string } = {}) => runCli(cli, args, { env: cliEnv(cache.home, opts.env), input: opts.input })

/** The cache holds app:v1 and localhost:5000/team/tool:1.0, loaded through the API. */
async function loadBoth(): Promise<void> {
  await Image.load(appTar, { tag: 'app:v1' })
  await Image.load(toolTar, { tag: 'localhost:5000/team/tool:1.0' })
}
const APP = 'docker.io/library/app:v1'
const TOOL = 'localhost:5000/team/tool:1.0'

/** A failure as the CLI must report it: exit code, nothing on stdout, one `microsandbox: …` line on stderr. */
function expectFailure(r: { code: number | null; stdout: string; stderr: string }, code: number, message: RegExp): void {
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code, stdout: '' })
  expect(r.stderr).toMatch(/^microsandbox: [^\n]+\n$/)
  expect(r.stderr).toMatch(message)
}

describe('help, version and usage errors', () => {
  test('--version prints the package version', async () => {
    const { version } = JSON.parse(await fsp.readFile(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'))
    for (const flag of ['--version', '-v']) expect(await msb([flag])).toMatchObject({ code: 0, stdout: `microsandbox version ${version}\n`, stderr: '' })
  })

  test.each([[[]], [['image']], [['image', 'ls']], [['images']], [['image', 'pull']], [['image', 'inspect']], [['image', 'rm']], [['rmi']], [['image', 'tag']], [['image', 'load']], [['image', 'save']], [['image', 'prune']], [['image', 'check']], [['system']], [['system', 'df']], [['login']], [['logout']]])(
    '%j --help shows usage and examples',
    async (command) => {
      const r = await msb([...command, '--help'])
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
      expect(r.stdout).toContain(`Usage: microsandbox${command.length ? ' ' + command.join(' ') : ''}`)
      expect(r.stdout).toMatch(/\nExamples:\n {2}\$ microsandbox /)
    },
  )

  test.each([
    [['image', 'ls', '--bogus'], /unknown option '--bogus'/],
    [['image', 'inspect'], /missing required argument 'reference'/],
    [['image', 'ls', '--format', 'yaml'], /--format "yaml"/],
    [['image', 'ls', '--filter', 'dangling=true'], /invalid filter 'dangling'/],
    [['image', 'ls', '--filter', 'reference'], /bad format of filter/],
    [['image', 'prune', '--filter', 'until=soon'], /invalid duration "soon"/],
    [['image', 'prune', '--max-size', 'lots'], /invalid size "lots"/],
    [['image', 'pull', 'app:v1', '--policy', 'sometimes'], /invalid --policy "sometimes"/],
    [['image', 'pull', 'app:v1', '--password-stdin'], /--password-stdin needs --username/],
    [['image', 'load'], /required option '-i, --input <file>' not specified/],
    [['image', 'save', 'app:v1', '-o', 'x.tar', '--format', 'zip'], /--format "zip"/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ])('%j is a usage error (exit 2)', async (args, message) => {
    const before = await artifactTree(cache.home)
    expectFailure(await msb(args), 2, message)
    expect(await artifactTree(cache.home)).toEqual(before)
  })

  test('no command: the help on stderr, exit 2', async () => {
    const r = await msb([])
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' })
    expect(r.stderr).toContain('Usage: microsandbox')
  })
})

describe('image ls', () => {
  test('an empty cache: the header alone, an empty JSON array, no references', async () => {
    expect(await msb(['image', 'ls'])).toEqual({ code: 0, signal: null, stderr: '', stdout: 'REFERENCE   DIGEST   PLATFORM   LAYERS   SIZE   CREATED   LAST USED\n' })
    expect(await msb(['image', 'ls', '--format', 'json'])).toMatchObject({ code: 0, stderr: '', stdout: '[]\n' })
    expect(await msb(['images', '-q'])).toMatchObject({ code: 0, stderr: '', stdout: '' })
  })

  test('the table says what Image.list says: short digests, platform, layers, human sizes, ages', async () => {
    await loadBoth()
    await Image.acquire(APP, { sandbox: 'sb1' })
    const handles = await Image.list()
    const r = await msb(['image', 'ls'])
    expect({ code: r.code, stderr: r.stderr, control: controlChars(r.stdout) }).toEqual({ code: 0, stderr: '', control: [] })
    const [header, ...rows] = tableRows(r.stdout)
    expect(header).toEqual(['REFERENCE', 'DIGEST', 'PLATFORM', 'LAYERS', 'SIZE', 'CREATED', 'LAST USED'])
    expect(rows.map((row) => row[0])).toEqual(handles.map((h) => h.reference))
    for (const [row, h] of rows.map((row, i) => [row, handles[i]] as const)) {
      expect(row.slice(1, 4)).toEqual([h.manifestDigest!.slice(7, 19), `${h.os}/${h.architecture}`, String(h.layerCount)])
      expect(sizeStandsFor(row[4], h.sizeBytes!)).toBe(true)
      expect(row[5]).toMatch(/^(Less than a second|\d+ seconds?) ago$/)
      expect(row[6]).toMatch(h.reference === APP ? /^(Less than a second|\d+ seconds?) ago$/ : /^never$/)
    }
    // The same table under its aliases; full digests with --no-trunc.
    for (const alias of [['images'], ['image', 'list'], ['image', 'images']]) expect(tableRows((await msb(alias)).stdout).map((row) => row.slice(0, 5))).toEqual([header, ...rows].map((row) => row.slice(0, 5)))
    const full = tableRows((await msb(['images', '--no-trunc'])).stdout).slice(1)
    expect(full.map((row) => row[1])).toEqual(handles.map((h) => h.manifestDigest))
  })

  test('-q prints the references; --format json every handle field, as the API gives them', async () => {
    await loadBoth()
    await Image.acquire(TOOL, { sandbox: 'sb1' })
    expect(await msb(['image', 'ls', '-q'])).toMatchObject({ code: 0, stdout: `${APP}\n${TOOL}\n` })
    const r = await msb(['image', 'ls', '--format', 'json'])
    expect(r).toMatchObject({ code: 0, stderr: '' })
    const printed = JSON.parse(r.stdout)
    const api = (await Image.list()).map((h) => h.toJSON())
    expect(printed).toEqual(JSON.parse(JSON.stringify(api)))
    expect(Object.keys(printed[0]).sort()).toEqual(['architecture', 'createdAt', 'lastUsedAt', 'layerCount', 'manifestDigest', 'os', 'reference', 'sizeBytes'])
    expect(printed[1].lastUsedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
    expect(typeof printed[0].sizeBytes).toBe('number')
  })

  test('--filter reference=GLOB (any) and label=KEY[=VALUE] (all)', async () => {
    await loadBoth()
    const refs = async (...filters: string[]) => {
      const r = await msb(['image', 'ls', '-q', ...filters.flatMap((f) => ['--filter', f])])
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
      return r.stdout.split('\n').filter(Boolean)
    }
    expect(await refs('reference=app')).toEqual([APP])
    expect(await refs('reference=app:*')).toEqual([APP])
    expect(await refs('reference=docker.io/library/*')).toEqual([APP])
    expect(await refs('reference=localhost:5000/team/*')).toEqual([TOOL])
    expect(await refs('reference=*')).toEqual([APP])
    expect(await refs('reference=app:v1', 'reference=localhost:5000/*/tool')).toEqual([APP, TOOL])
    expect(await refs('reference=nothing*')).toEqual([])
    expect(await refs('label=tier')).toEqual([APP, TOOL])
    expect(await refs('label=tier=batch')).toEqual([TOOL])
    expect(await refs('label=tier=web', 'label=org.example.team=core')).toEqual([APP])
    expect(await refs('label=tier=web', 'label=org.example.team=other')).toEqual([])
    expect(await refs('label=tier', 'reference=localhost:5000/team/tool')).toEqual([TOOL])
  })
})

describe('image inspect', () => {
  test('one JSON array of the API answers, in the order asked', async () => {
    await loadBoth()
    const r = await msb(['image', 'inspect', 'localhost:5000/team/tool:1.0', 'app:v1'])
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    const api = [await Image.inspect(TOOL), await Image.inspect(APP)]
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(JSON.stringify(api)))
    expect(JSON.parse(r.stdout)[1].config.labels).toEqual({ tier: 'web', 'org.example.team': 'core' })
  })

  test('a reference not in the cache: exit 1, an error line, nothing on stdout', async () => {
    await loadBoth()
    expectFailure(await msb(['image', 'inspect', 'app:v1', 'missing:tag']), 1, /missing:tag/)
  })
})

describe('image rm', () => {
  test('removes each reference, reports each failure, exits 1 if any failed', async () => {
    await loadBoth()
    const r = await msb(['image', 'rm', 'missing:tag', 'app:v1'])
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: `Untagged: ${APP}\n` })
    expect(r.stderr).toMatch(/^microsandbox: [^\n]*missing:tag[^\n]*\n$/)
    expect((await Image.list()).map((h) => h.reference)).toEqual([TOOL])
    expect(await consistencyProblems(cache.home)).toEqual([])
  })

  test('an image a sandbox uses stays unless -f; rmi is the same command', async () => {
    await loadBoth()
    await Image.acquire(TOOL, { sandbox: 'busy' })
    const refused = await msb(['rmi', TOOL])
    expectFailure(refused, 1, /busy/)
    expect((await Image.list()).map((h) => h.reference)).toEqual([APP, TOOL])
    expect(await msb(['rmi', '-f', TOOL, 'app:v1'])).toMatchObject({ code: 0, stderr: '', stdout: `Untagged: ${TOOL}\nUntagged: ${APP}\n` })
    expect(await Image.list()).toEqual([])
  })
})

describe('image load and save', () => {
  test('load prints what it loaded; a bad archive changes nothing', async () => {
    const r = await msb(['image', 'load', '-i', appTar, '-t', 'app:v1'])
    expect(r).toMatchObject({ code: 0, stderr: '', stdout: `Loaded image: ${APP}\n` })
    expect((await Image.get(APP)).manifestDigest).toBe((await Image.list())[0].manifestDigest)
    expect(await msb(['image', 'load', '--input', toolTar])).toMatchObject({ code: 0, stdout: 'Loaded image: localhost/cli/tool:v1\n' })
    const before = await artifactTree(cache.home)
    const junk = path.join(work, 'junk.tar')
    await fsp.writeFile(junk, 'not an archive at all')
    expectFailure(await msb(['image', 'load', '-i', junk]), 1, /junk\.tar/)
    expectFailure(await msb(['image', 'load', '-i', path.join(work, 'absent.tar')]), 1, /absent\.tar/)
    expect(await artifactTree(cache.home)).toEqual(before)
    expect((await Image.list()).length).toBe(2)
  })

  test('save writes docker and OCI archives that skopeo reads back', async () => {
    await loadBoth()
    const docker = path.join(work, 'saved-docker.tar')
    const oci = path.join(work, 'saved-oci.tar')
    expect(await msb(['image', 'save', '-o', docker, 'app:v1'])).toEqual({ code: 0, signal: null, stdout: '', stderr: '' })
    expect(await msb(['image', 'save', '--format', 'oci', '--output', oci, TOOL])).toMatchObject({ code: 0, stdout: '', stderr: '' })
    const config = async (ref: string) => JSON.parse((await run('skopeo', ['inspect', '--config', ref])).stdout)
    expect((await config(`docker-archive:${docker}`)).rootfs.diff_ids).toEqual(app.diffIds)
    expect((await config(`oci-archive:${oci}`)).rootfs.diff_ids).toEqual(tool.diffIds)
    expectFailure(await msb(['image', 'save', '-o', path.join(work, 'none.tar'), 'missing:tag']), 1, /missing:tag/)
    expect(fs.existsSync(path.join(work, 'none.tar'))).toBe(false)
  })
})

describe('image prune', () => {
  test('removes what no sandbox or snapshot uses and says what went and the space reclaimed', async () => {
    await loadBoth()
    await Image.load(spareTar, { tag: 'spare:1' })
    await Image.acquire(TOOL, { sandbox: 'sb' })
    await Image.pinSnapshot('snap', 'spare:1')
    const before = await artifactTree(cache.home)
    const r = await msb(['image', 'prune'])
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    const reclaimed = removedBetween(before, await artifactTree(cache.home)).bytes
    const m = /^Deleted Images:\nuntagged: docker\.io\/library\/app:v1\n\nTotal reclaimed space: ([^\n]+)\n$/.exec(r.stdout)
    expect(m).not.toBeNull()
    expect(sizeStandsFor(m![1], reclaimed)).toBe(true)
    expect((await Image.list()).map((h) => h.reference)).toEqual(['docker.io/library/spare:1', TOOL])
    expect(await consistencyProblems(cache.home)).toEqual([])
    // Nothing left to prune.
    expect(await msb(['image', 'prune', '-a', '-f'])).toMatchObject({ code: 0, stdout: 'Total reclaimed space: 0 B\n' })
  })

  test('--format json prints the report and the references removed', async () => {
    await loadBoth()
    const before = await artifactTree(cache.home)
    const r = await msb(['image', 'prune', '--all', '--force', '--format', 'json'])
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    const report = JSON.parse(r.stdout)
    const removed = removedBetween(before, await artifactTree(cache.home))
    expect(report).toEqual({
      imageRefsRemoved: 2,
      manifestsRemoved: 2,
      layersRemoved: app.diffIds.length + tool.diffIds.length,
      fsmetaRemoved: 2,
      vmdkRemoved: 2,
      bytesReclaimed: expect.any(Number),
      references: [APP, TOOL],
      dryRun: false,
      budgetBytes: null,
      remainingBytes: null,
      budgetMet: null,
    })
    expect(report.bytesReclaimed).toBeGreaterThanOrEqual(removed.bytes)
    expect(await Image.list()).toEqual([])
  })
})

describe('errors, exit codes and the environment', () => {
  test('MSB_BACKEND=cloud: exit 1, one line; --debug adds the code and the stack', async () => {
    const cloud = { MSB_BACKEND: 'cloud' }
    expectFailure(await msb(['image', 'ls', '--format', 'json'], { env: cloud }), 1, /./)
    const debug = await msb(['--debug', 'image', 'ls'], { env: cloud })
    expect({ code: debug.code, stdout: debug.stdout }).toEqual({ code: 1, stdout: '' })
    expect(debug.stderr).toMatch(/^microsandbox: [^\n]+ \[code: unsupported\]\n.*\n\s+at /s)
    // --debug after the command works too.
    expect((await msb(['image', 'ls', '--debug'], { env: cloud })).stderr).toContain('[code: unsupported]')
  })

  test('a cache that cannot be opened is a cache failure: exit 125', async () => {
    const file = path.join(work, 'not-a-directory')
    await fsp.writeFile(file, 'x')
    const r = await runCli(cli, ['image', 'ls', '--format', 'json'], { env: cliEnv(path.join(file, 'cache')) })
    expectFailure(r, 125, /./)
  })

  test('MSB_HOME picks the cache', async () => {
    await loadBoth()
    const other = await makeTempDir('msb-cli-other-')
    try {
      expect(await runCli(cli, ['images', '-q'], { env: cliEnv(path.join(other, 'cache')) })).toMatchObject({ code: 0, stdout: '' })
      expect((await msb(['images', '-q'])).stdout).toBe(`${APP}\n${TOOL}\n`)
    } finally {
      await fsp.rm(other, { recursive: true, force: true })
    }
  })
})
