/**
 * The CLI commands over the cache policies (issue 10): `image tag`,
 * `system df`, `image check`, and `image prune`'s filters, `--keep`,
 * `--max-size` and `--dry-run`, each run through the installed bin against
 * real images (umoci, skopeo) and checked against the API and the disk.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { buildImage, makeTempDir, requireTools, sampleLayers, toDockerArchive } from './support/images'
import { artifactTree, freshHomePerTest, removedBetween } from './support/cache'
import { InstalledCli, cliEnv, installCli, runCli } from './support/cli'

jest.setTimeout(240_000)

let cli: InstalledCli
let work: string
let appTar: string
let toolTar: string
const APP = 'docker.io/library/app:v1'
const TOOL = 'docker.io/library/tool:v1'

beforeAll(async () => {
  requireTools(['umoci', 'skopeo', 'npm'])
  work = await makeTempDir('msb-cli-policy-')
  cli = await installCli()
  const app = await buildImage(path.join(work, 'app'), { layers: sampleLayers('app'), config: { labels: { tier: 'web' } }, refs: ['localhost/w/app:v1'] })
  const tool = await buildImage(path.join(work, 'tool'), { layers: sampleLayers('tool'), config: { labels: { tier: 'batch' } }, refs: ['localhost/w/tool:v1'] })
  appTar = await toDockerArchive(app, path.join(work, 'app.tar'))
  toolTar = await toDockerArchive(tool, path.join(work, 'tool.tar'))
}, 600_000)

afterAll(async () => {
  await cli?.cleanup()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
const msb = (args: string[], opts: { env?: Record<string, string | undefined>; input?: string } = {}) => runCli(cli, args, { env: cliEnv(cache.home, opts.env), input: opts.input })
async function loadBoth(): Promise<void> {
  await Image.load(appTar, { tag: 'app:v1' })
  await Image.load(toolTar, { tag: 'tool:v1' })
}
const refs = async () => (await Image.list()).map((h) => h.reference)

test('image tag gives the image a second reference', async () => {
  await loadBoth()
  expect(await msb(['image', 'tag', 'app:v1', 'registry.example/app:copy'])).toEqual({ code: 0, signal: null, stdout: '', stderr: '' })
  expect((await Image.get('registry.example/app:copy')).manifestDigest).toBe((await Image.get(APP)).manifestDigest)
  expect(await msb(['image', 'tag', 'missing:tag', 'x:y'])).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^microsandbox: [^\n]+\n$/) })
})

test('system df prints what Image.diskUsage says', async () => {
  await loadBoth()
  const usage = await Image.diskUsage()
  const r = await msb(['system', 'df', '--format', 'json'])
  expect(r).toMatchObject({ code: 0, stderr: '' })
  expect(JSON.parse(r.stdout)).toEqual(JSON.parse(JSON.stringify(usage)))
  const table = await msb(['system', 'df', '-v'])
  expect(table.stdout).toMatch(/^TYPE +TOTAL +ACTIVE +SIZE +RECLAIMABLE\n/)
  expect(table.stdout).toContain(APP)
})

test('image check: exit 0 on a sound cache, 1 while problems remain, 0 once repaired', async () => {
  await loadBoth()
  expect(await msb(['image', 'check'])).toMatchObject({ code: 0, stdout: expect.stringContaining('no problems') })
  const vmdk = path.join(cache.home, 'vmdk', 'sha256')
  await fsp.rm(path.join(vmdk, (await fsp.readdir(vmdk))[0]))
  const broken = await msb(['image', 'check', '--format', 'json'])
  expect(broken.code).toBe(1)
  expect(JSON.parse(broken.stdout)).toMatchObject({ ok: false, problems: [expect.objectContaining({ repaired: false })] })
  const repaired = await msb(['image', 'check', '--repair'])
  expect(repaired).toMatchObject({ code: 0, stdout: expect.stringContaining('repaired') })
  expect(await msb(['image', 'check', '--full'])).toMatchObject({ code: 0 })
})


describe('prune with the options of the prune API', () => {
  test('--dry-run lists what would go and changes nothing', async () => {
    await loadBoth()
    const before = await artifactTree(cache.home)
    const r = await msb(['image', 'prune', '--dry-run'])
    expect(r).toMatchObject({ code: 0, stderr: '' })
    expect(r.stdout).toMatch(new RegExp(`^Would delete:\nuntagged: ${APP}\nuntagged: ${TOOL}\n\nTotal reclaimable space: `))
    expect(await artifactTree(cache.home)).toEqual(before)
    expect(await refs()).toEqual([APP, TOOL])
  })

  test('--filter reference, label and --keep pick what goes', async () => {
    await loadBoth()
    expect((await msb(['image', 'prune', '-f', '--filter', 'label=tier=batch'])).stdout).toContain(`untagged: ${TOOL}\n`)
    expect(await refs()).toEqual([APP])
    await Image.load(toolTar, { tag: 'tool:v1' })
    expect((await msb(['image', 'prune', '-f', '--filter', 'reference=app'])).stdout).toContain(`untagged: ${APP}\n`)
    await Image.load(appTar, { tag: 'app:v1' })
    await msb(['image', 'prune', '-f', '--keep', 'tool:v1'])
    expect(await refs()).toEqual([TOOL])
  })

  test('--filter until and unused-for: nothing just cached is old enough', async () => {
    await loadBoth()
    for (const f of ['until=24h', 'unused-for=7d']) expect((await msb(['image', 'prune', '-f', '--filter', f, '--format', 'json'])).code).toBe(0)
    expect(await refs()).toEqual([APP, TOOL])
    await Image.acquire(TOOL, { sandbox: 'sb' })
    await Image.release('sb')
    await new Promise((r) => setTimeout(r, 2100))
    await msb(['image', 'prune', '-f', '--filter', 'unused-for=2s'])
    expect(await refs()).toEqual([])
  })

  test('--max-size prunes least recently used images down to the budget and reports it', async () => {
    await loadBoth()
    await Image.acquire(APP, { sandbox: 'sb' })
    await Image.release('sb')
    // A dry budget prune settles the WAL, so diskUsage then measures what the next budget prune will.
    expect((await msb(['image', 'prune', '--dry-run', '--max-size', '0B'])).code).toBe(0)
    const usage = await Image.diskUsage()
    const tool = usage.images.find((i) => i.reference === TOOL)!
    const budget = usage.totalBytes - tool.uniqueBytes
    const before = await artifactTree(cache.home)
    const r = await msb(['image', 'prune', '-f', '--max-size', `${budget}B`, '--format', 'json'])
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout)
    expect(report).toMatchObject({ references: [TOOL], budgetBytes: budget, remainingBytes: budget, budgetMet: true, bytesReclaimed: tool.uniqueBytes })
    expect((await msb(['image', 'prune', '--dry-run', '--max-size', `${budget}B`])).stdout).toContain(`Cache size: `)
    expect(removedBetween(before, await artifactTree(cache.home)).bytes).toBe(report.bytesReclaimed)
    expect(await refs()).toEqual([APP])
  })
})
