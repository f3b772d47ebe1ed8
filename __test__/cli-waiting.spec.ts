/**
 * The CLI commands written against parts of the Image API that are still
 * being added to the engine (issue 12): `image tag`, `system df`, `image
 * check`, `login`/`logout`, prune's filters and budget, load progress and
 * Ctrl-C. Each test is real (installed bin, real registry, real files) and
 * runs as soon as the binding has what it needs; until then it is reported
 * as a todo, never as a pass.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { LANDED } from '../cli/src/api'
import { buildImage, makeTempDir, noise, requireTools, sampleLayers, toDockerArchive } from './support/images'
import { artifactTree, freshHomePerTest, removedBetween, tmpFiles } from './support/cache'
import { makeCerts, makeHtpasswd, push, Registry, startRegistry } from './support/registry'
import { InstalledCli, cliEnv, installCli, runCli, sizeStandsFor } from './support/cli'
import { startTerminal } from './support/cli-terminal'

jest.setTimeout(240_000)

const has = (method: string): boolean => typeof (Image as unknown as Record<string, unknown>)[method] === 'function'
const READY = {
  tag: has('tag'),
  diskUsage: has('diskUsage'),
  check: has('check'),
  login: has('login') && has('logout'),
  pruneOptions: LANDED.pruneOptions,
  loadProgress: LANDED.loadProgress,
}
/** A test that runs once `ready`, and is a todo naming what it waits for until then. */
const when = (ready: boolean, waitingFor: string) => (name: string, fn: () => Promise<void>) => (ready ? test(name, fn) : test.todo(`${name} (waiting for ${waitingFor})`))

let cli: InstalledCli
let work: string
let appTar: string
let toolTar: string
let bigTar: string
const APP = 'docker.io/library/app:v1'
const TOOL = 'docker.io/library/tool:v1'

beforeAll(async () => {
  if (!Object.values(READY).some(Boolean)) return
  requireTools(['umoci', 'skopeo', 'npm', 'tmux'])
  work = await makeTempDir('msb-cli-waiting-')
  cli = await installCli()
  const app = await buildImage(path.join(work, 'app'), { layers: sampleLayers('app'), config: { labels: { tier: 'web' } }, refs: ['localhost/w/app:v1'] })
  const tool = await buildImage(path.join(work, 'tool'), { layers: sampleLayers('tool'), config: { labels: { tier: 'batch' } }, refs: ['localhost/w/tool:v1'] })
  const big = await buildImage(path.join(work, 'big'), { layers: [{ entries: [{ type: 'file', path: 'big.bin', content: noise(200 << 20, 3) }] }], refs: ['localhost/w/big:v1'] })
  appTar = await toDockerArchive(app, path.join(work, 'app.tar'))
  toolTar = await toDockerArchive(tool, path.join(work, 'tool.tar'))
  bigTar = await toDockerArchive(big, path.join(work, 'big.tar'))
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

when(READY.tag, 'Image.tag')('image tag gives the image a second reference', async () => {
  await loadBoth()
  expect(await msb(['image', 'tag', 'app:v1', 'registry.example/app:copy'])).toEqual({ code: 0, signal: null, stdout: '', stderr: '' })
  expect((await Image.get('registry.example/app:copy')).manifestDigest).toBe((await Image.get(APP)).manifestDigest)
  expect(await msb(['image', 'tag', 'missing:tag', 'x:y'])).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^microsandbox: [^\n]+\n$/) })
})

when(READY.diskUsage, 'Image.diskUsage')('system df prints what Image.diskUsage says', async () => {
  await loadBoth()
  const usage = await (Image as unknown as { diskUsage(): Promise<unknown> }).diskUsage()
  const r = await msb(['system', 'df', '--format', 'json'])
  expect(r).toMatchObject({ code: 0, stderr: '' })
  expect(JSON.parse(r.stdout)).toEqual(JSON.parse(JSON.stringify(usage)))
  const table = await msb(['system', 'df', '-v'])
  expect(table.stdout).toMatch(/^TYPE +TOTAL +ACTIVE +SIZE +RECLAIMABLE\n/)
  expect(table.stdout).toContain(APP)
})

when(READY.check, 'Image.check')('image check: exit 0 on a sound cache, 1 while problems remain, 0 once repaired', async () => {
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

when(READY.login, 'Image.login and Image.logout')('login stores credentials where pulls find them; logout forgets them', async () => {
  const certs = await makeCerts(work)
  let secure: Registry | undefined
  try {
    secure = await startRegistry({ tls: { cert: certs.cert, key: certs.key }, htpasswd: await makeHtpasswd(work, 'alice', 's3cret-pass') })
    const layout = path.join(work, 'login-app')
    await buildImage(layout, { layers: sampleLayers('login'), refs: ['localhost/w/login:v1'] })
    const ref = `${secure.host}/private/login:v1`
    await push(`oci:${layout}:localhost/w/login:v1`, ref, { certDir: certs.caDir, creds: 'alice:s3cret-pass' })
    const env = { DOCKER_CONFIG: path.join(work, 'docker-config') }
    expect(await msb(['login', secure.host, '-u', 'alice', '--password-stdin'], { env, input: 's3cret-pass\n' })).toMatchObject({ code: 0, stdout: 'Login Succeeded\n' })
    expect(await msb(['image', 'pull', '-q', '--insecure', ref], { env })).toMatchObject({ code: 0, stdout: `${ref}\n` })
    expect(await msb(['logout', secure.host], { env })).toMatchObject({ code: 0, stdout: `Removing login credentials for ${secure.host}\n` })
    expect(await msb(['image', 'pull', '-q', '--insecure', '--policy', 'always', ref], { env })).toMatchObject({ code: 1 })
  } finally {
    await secure?.stop()
  }
})

describe('prune with the options of the prune API', () => {
  const pruneTest = when(READY.pruneOptions, 'Image.prune options (LANDED.pruneOptions)')

  pruneTest('--dry-run lists what would go and changes nothing', async () => {
    await loadBoth()
    const before = await artifactTree(cache.home)
    const r = await msb(['image', 'prune', '--dry-run'])
    expect(r).toMatchObject({ code: 0, stderr: '' })
    expect(r.stdout).toMatch(new RegExp(`^Would delete:\nuntagged: ${APP}\nuntagged: ${TOOL}\n\nTotal reclaimable space: `))
    expect(await artifactTree(cache.home)).toEqual(before)
    expect(await refs()).toEqual([APP, TOOL])
  })

  pruneTest('--filter reference, label and --keep pick what goes', async () => {
    await loadBoth()
    expect((await msb(['image', 'prune', '-f', '--filter', 'label=tier=batch'])).stdout).toContain(`untagged: ${TOOL}\n`)
    expect(await refs()).toEqual([APP])
    await Image.load(toolTar, { tag: 'tool:v1' })
    expect((await msb(['image', 'prune', '-f', '--filter', 'reference=app'])).stdout).toContain(`untagged: ${APP}\n`)
    await Image.load(appTar, { tag: 'app:v1' })
    await msb(['image', 'prune', '-f', '--keep', 'tool:v1'])
    expect(await refs()).toEqual([TOOL])
  })

  pruneTest('--filter until and unused-for: nothing just cached is old enough', async () => {
    await loadBoth()
    for (const f of ['until=24h', 'unused-for=7d']) expect((await msb(['image', 'prune', '-f', '--filter', f, '--format', 'json'])).code).toBe(0)
    expect(await refs()).toEqual([APP, TOOL])
    await Image.acquire(TOOL, { sandbox: 'sb' })
    await Image.release('sb')
    await new Promise((r) => setTimeout(r, 2100))
    await msb(['image', 'prune', '-f', '--filter', 'unused-for=2s'])
    expect(await refs()).toEqual([])
  })

  pruneTest('--max-size prunes least recently used images down to the budget and reports it', async () => {
    await loadBoth()
    await Image.acquire(APP, { sandbox: 'sb' })
    await Image.release('sb')
    const app = await Image.get(APP)
    const before = await artifactTree(cache.home)
    const r = await msb(['image', 'prune', '-f', '--max-size', `${app.sizeBytes! + 1}B`, '--format', 'json'])
    expect(r.code).toBe(0)
    const report = JSON.parse(r.stdout)
    expect(report).toMatchObject({ references: [TOOL], budgetBytes: app.sizeBytes! + 1, budgetMet: true })
    expect(sizeStandsFor(`${report.bytesReclaimed} B`, removedBetween(before, await artifactTree(cache.home)).bytes)).toBe(true)
    expect(await refs()).toEqual([APP])
  })
})

when(READY.loadProgress, 'Image.load onProgress and signal (LANDED.loadProgress)')('load shows a bar over the archive on a TTY; Ctrl-C exits 130 and changes nothing', async () => {
  const before = await artifactTree(cache.home)
  const t = await startTerminal([cli.bin, 'image', 'load', '-i', bigTar], { cwd: cli.consumer, env: cliEnv(cache.home) })
  try {
    await t.waitFor((s) => /Loading \[=* *\] [\d.]+ [kM]?B \/ [\d.]+ MB/.test(s), 'the load bar')
    await t.sendKeys('C-c')
    expect(await t.exited(30_000)).toBe(130)
  } finally {
    await t.stop()
  }
  expect(await Image.list()).toEqual([])
  expect(await artifactTree(cache.home)).toEqual(before)
  expect(await tmpFiles(cache.home)).toEqual([])
})
