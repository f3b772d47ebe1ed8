/**
 * The installed `microsandbox` command on a real terminal (tmux): `image
 * pull` of a multi-layer image through a throttling loopback proxy shows
 * one progress line per layer, redrawn in place, and ends in Docker's
 * summary; a second pull is up to date; Ctrl-C mid-download exits 130 and
 * leaves the cache as it was. Also colour (TTY only, never with NO_COLOR)
 * and prune's confirmation prompt.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { BuiltImage, buildImage, makeTempDir, noise, requireTools, sampleLayers, toDockerArchive } from './support/images'
import { artifactTree, consistencyProblems, freshHomePerTest, tmpFiles } from './support/cache'
import { push, Registry, startRegistry } from './support/registry'
import { InstalledCli, cliEnv, installCli } from './support/cli'
import { startTerminal, Terminal } from './support/cli-terminal'
import { startThrottle, Throttle } from './support/cli-throttle'

jest.setTimeout(240_000)

/** Per connection: the 10 MB layer takes about ten seconds, the others 1.5 and 2.5. */
const BYTES_PER_SECOND = 1_000_000

let cli: InstalledCli
let work: string
let layered: BuiltImage
let smallTar: string
let registry: Registry
let throttle: Throttle
const terminals: Terminal[] = []

beforeAll(async () => {
  requireTools(['docker-registry', 'skopeo', 'umoci', 'tmux', 'npm'])
  work = await makeTempDir('msb-cli-tty-')
  let small: BuiltImage
  ;[cli, layered, small] = await Promise.all([
    installCli(),
    buildImage(path.join(work, 'layered'), {
      layers: [1_500_000, 2_500_000, 10_000_000].map((n, i) => ({ entries: [{ type: 'file' as const, path: `data/layer-${i}.bin`, content: noise(n, i + 1) }] })),
      refs: ['localhost/tty/layered:v1'],
    }),
    buildImage(path.join(work, 'small'), { layers: sampleLayers('small'), refs: ['localhost/tty/small:v1'] }),
  ])
  smallTar = await toDockerArchive(small, path.join(work, 'small.tar'))
  registry = await startRegistry()
  await push(`oci:${layered.layout}:localhost/tty/layered:v1`, `${registry.host}/team/layered:v1`)
  throttle = await startThrottle(registry.host, BYTES_PER_SECOND)
}, 600_000)

afterEach(async () => {
  for (const t of terminals.splice(0)) await t.stop()
})

afterAll(async () => {
  await throttle?.stop()
  await registry?.stop()
  await cli?.cleanup()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
const ref = () => `${throttle.host}/team/layered:v1`
const ids = () => layered.layers.map((l) => l.digest.slice(7, 19))

async function terminal(args: string[], env: Record<string, string | undefined> = {}): Promise<Terminal> {
  const t = await startTerminal([cli.bin, ...args], { cwd: cli.consumer, env: cliEnv(cache.home, env) })
  terminals.push(t)
  return t
}

/** The screen's lines for layer `id`. */
const linesOf = (screen: string, id: string) => screen.split('\n').filter((l) => l.startsWith(`${id}: `))
/** The downloaded bytes a `Downloading` line shows, as printed (`1.23 MB`). */
const downloaded = (line: string | undefined) => (line ? /\] ([\d.]+ [kMG]?B) \//.exec(line)?.[1] : undefined)

test('pull: one line per layer, redrawn in place, then the summary; a second pull is up to date', async () => {
  const t = await terminal(['image', 'pull', ref()])
  const frames: string[] = []
  const final = await t.waitFor(
    (screen) => {
      frames.push(screen)
      return screen.includes('Status: ')
    },
    'the pull to finish',
    120_000,
  )
  expect(await t.exited()).toBe(0)
  const big = ids()[2]
  // While it ran: every layer had exactly one line in every frame, and the big layer's line moved forward.
  for (const frame of frames.filter((f) => f.includes(`${big}: `))) for (const id of ids()) expect(linesOf(frame, id).length).toBe(1)
  const shown = frames.map((f) => downloaded(linesOf(f, big)[0])).filter((d): d is string => d !== undefined)
  expect(new Set(shown).size).toBeGreaterThanOrEqual(3)
  expect(frames.some((f) => /Downloading \[[=> ]+\] [\d.]+ [kM]?B \/ [\d.]+ MB {2}[\d.]+ [kM]?B\/s/.test(linesOf(f, big)[0] ?? ''))).toBe(true)
  // The last frame: each layer once, verified and converted; the root disk; Docker's summary.
  const lines = final.trimEnd().split('\n')
  expect(lines[0]).toBe(`Pulling ${ref()}`)
  for (const id of ids()) expect(linesOf(final, id)).toEqual([expect.stringMatching(new RegExp(`^${id}: Verified, converted {2}[\\d.]+ MB$`))])
  expect(lines.slice(-4)).toEqual(['root disk   : Written', `Digest: ${layered.manifestDigest}`, `Status: Downloaded newer image for ${ref()}`, ref()])
  expect((await Image.get(ref())).manifestDigest).toBe(layered.manifestDigest)

  const again = await terminal(['image', 'pull', ref()])
  const screen = await again.waitFor((s) => s.includes('Status: '), 'the second pull', 60_000)
  expect(await again.exited()).toBe(0)
  expect(screen).not.toContain('Downloading')
  expect(screen.trimEnd().split('\n').slice(-2)).toEqual([`Status: Image is up to date for ${ref()}`, ref()])
})

test('Ctrl-C mid-download, after two layers were converted, exits 130 and leaves the cache as it was', async () => {
  await Image.load(smallTar)
  const list = async () => (await Image.list()).map((h) => h.toJSON())
  const before = { images: await list(), files: await artifactTree(cache.home) }
  const t = await terminal(['image', 'pull', ref()])
  const [first, second, big] = ids()
  const converted = (s: string, id: string) => linesOf(s, id)[0]?.includes('Verified, converted') === true
  const mid = await t.waitFor((s) => converted(s, first) && converted(s, second) && downloaded(linesOf(s, big)[0]) !== undefined, 'two layers converted while the big one downloads', 60_000)
  expect(mid).not.toContain('Status: ')
  await t.sendKeys('C-c')
  expect(await t.exited(30_000)).toBe(130)
  const screen = await t.capture()
  for (const id of ids()) expect(linesOf(screen, id).length).toBe(1)
  expect(linesOf(screen, big)[0]).toMatch(/: Interrupted /)
  expect(screen).toContain('root disk   : Interrupted\n')
  expect(screen.trimEnd().split('\n').pop()).toMatch(/^microsandbox: \S/)
  expect(screen).not.toContain('Status: ')
  expect(await list()).toEqual(before.images)
  expect(await artifactTree(cache.home)).toEqual(before.files)
  expect(await tmpFiles(cache.home)).toEqual([])
  expect(await consistencyProblems(cache.home)).toEqual([])
})

test('colour on a TTY only, and never with NO_COLOR', async () => {
  await Image.load(smallTar)
  const coloured = await terminal(['image', 'ls'])
  expect(await coloured.exited()).toBe(0)
  expect(await coloured.capture({ escapes: true })).toMatch(/\x1b\[1mREFERENCE +DIGEST/)
  const plain = await terminal(['image', 'ls'], { NO_COLOR: '1' })
  expect(await plain.exited()).toBe(0)
  const screen = await plain.capture({ escapes: true })
  expect(screen).toMatch(/^REFERENCE +DIGEST/)
  expect(screen).not.toContain('\x1b[')
})

test('prune asks on a terminal: no keeps everything, yes prunes', async () => {
  await Image.load(smallTar)
  const no = await terminal(['image', 'prune'])
  await no.waitFor((s) => s.includes('Are you sure you want to continue? [y/N]'), 'the prompt')
  await no.sendKeys('n', 'Enter')
  expect(await no.exited()).toBe(0)
  expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/tty/small:v1'])
  const yes = await terminal(['image', 'prune'])
  await yes.waitFor((s) => s.includes('[y/N]'), 'the prompt')
  await yes.sendKeys('y', 'Enter')
  expect(await yes.exited()).toBe(0)
  expect(await yes.capture()).toMatch(/Deleted Images:\nuntagged: localhost\/tty\/small:v1\n\nTotal reclaimed space: [\d.]+ kB/)
  expect(await Image.list()).toEqual([])
})
