/**
 * The installed CLI's `login`/`logout` against a real registry with
 * htpasswd (credentials in Docker's config.json, found by the next pull),
 * and `image load`'s bar and Ctrl-C on a real terminal (tmux).
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { buildImage, makeTempDir, noise, requireTools, sampleLayers, toDockerArchive } from './support/images'
import { artifactTree, freshHomePerTest, tmpFiles } from './support/cache'
import { makeCerts, makeHtpasswd, push, Registry, startRegistry } from './support/registry'
import { InstalledCli, cliEnv, installCli, runCli } from './support/cli'
import { startTerminal } from './support/cli-terminal'
import { PASSWORD } from './support/secrets'

jest.setTimeout(240_000)

let cli: InstalledCli
let work: string
let bigTar: string

beforeAll(async () => {
  requireTools(['umoci', 'skopeo', 'npm', 'tmux'])
  work = await makeTempDir('msb-cli-login-load-')
  cli = await installCli()
  const big = await buildImage(path.join(work, 'big'), { layers: [{ entries: [{ type: 'file', path: 'big.bin', content: noise(200 << 20, 3) }] }], refs: ['localhost/w/big:v1'] })
  bigTar = await toDockerArchive(big, path.join(work, 'big.tar'))
}, 600_000)

afterAll(async () => {
  await cli?.cleanup()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
const msb = (args: string[], opts: { env?: Record<string, string | undefined>; input?: string } = {}) => runCli(cli, args, { env: cliEnv(cache.home, opts.env), input: opts.input })

test('login stores credentials where pulls find them; logout forgets them', async () => {
  const certs = await makeCerts(work)
  let secure: Registry | undefined
  try {
    secure = await startRegistry({ tls: { cert: certs.cert, key: certs.key }, htpasswd: await makeHtpasswd(work, 'alice', PASSWORD) })
    const layout = path.join(work, 'login-app')
    await buildImage(layout, { layers: sampleLayers('login'), refs: ['localhost/w/login:v1'] })
    const ref = `${secure.host}/private/login:v1`
    await push(`oci:${layout}:localhost/w/login:v1`, ref, { certDir: certs.caDir, creds: `alice:${PASSWORD}` })
    const env = { DOCKER_CONFIG: path.join(work, 'docker-config') }
    expect(await msb(['login', '--insecure', secure.host, '-u', 'alice', '--password-stdin'], { env, input: `${PASSWORD}\n` })).toMatchObject({ code: 0, stdout: 'Login Succeeded\n' })
    expect(await msb(['image', 'pull', '-q', '--insecure', ref], { env })).toMatchObject({ code: 0, stdout: `${ref}\n` })
    expect(await msb(['logout', secure.host], { env })).toMatchObject({ code: 0, stdout: `Removing login credentials for ${secure.host}\n` })
    expect(await msb(['image', 'pull', '-q', '--insecure', '--policy', 'always', ref], { env })).toMatchObject({ code: 1 })
  } finally {
    await secure?.stop()
  }
})

test('load shows a bar over the archive on a TTY; Ctrl-C exits 130 and changes nothing', async () => {
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
