/**
 * `microsandbox image pull` from the installed package against real
 * registries (CNCF distribution on 127.0.0.1), with stdout a pipe: one
 * plain line per progress event and no control characters, Docker's
 * summary, pull policies, `-q`, and credentials (`-u` with
 * `--password-stdin`, `DOCKER_CONFIG`) over TLS with `--insecure`.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { BuiltImage, buildImage, makeTempDir, requireTools, sampleLayers } from './support/images'
import { consistencyProblems, freshHomePerTest } from './support/cache'
import { makeCerts, makeHtpasswd, push, Registry, startRegistry } from './support/registry'
import { InstalledCli, cliEnv, controlChars, installCli, runCli } from './support/cli'
import { PASSWORD, WRONG_PASSWORD } from './support/secrets'

jest.setTimeout(180_000)

let cli: InstalledCli
let work: string
let base: BuiltImage
let plain: Registry
let secure: Registry

beforeAll(async () => {
  requireTools(['docker-registry', 'skopeo', 'umoci', 'openssl', 'htpasswd', 'npm'])
  work = await makeTempDir('msb-cli-registry-')
  let certs: Awaited<ReturnType<typeof makeCerts>>
  ;[cli, base, certs] = await Promise.all([installCli(), buildImage(path.join(work, 'base'), { layers: sampleLayers('base'), refs: ['localhost/pull/base:v1'] }), makeCerts(work)])
  plain = await startRegistry()
  secure = await startRegistry({ tls: { cert: certs.cert, key: certs.key }, htpasswd: await makeHtpasswd(work, 'alice', PASSWORD) })
  await push(`oci:${base.layout}:localhost/pull/base:v1`, `${plain.host}/team/base:v1`)
  await push(`oci:${base.layout}:localhost/pull/base:v1`, `${secure.host}/private/base:v1`, { certDir: certs.caDir, creds: `alice:${PASSWORD}` })
}, 600_000)

afterAll(async () => {
  await plain?.stop()
  await secure?.stop()
  await cli?.cleanup()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
const msb = (args: string[], opts: { env?: Record<string, string | undefined>; input?: string } = {}) => runCli(cli, args, { env: cliEnv(cache.home, opts.env), input: opts.input })
const short = (digest: string) => digest.slice(7, 19)

test('a pull prints one plain line per event, then the digest, the status and the reference', async () => {
  const ref = `${plain.host}/team/base:v1`
  const r = await msb(['image', 'pull', ref])
  expect({ code: r.code, stderr: r.stderr, control: controlChars(r.stdout) }).toEqual({ code: 0, stderr: '', control: [] })
  const handle = await Image.get(ref)
  expect(handle.manifestDigest).toBe(base.manifestDigest)
  const lines = r.stdout.trimEnd().split('\n')
  expect(lines[0]).toMatch(new RegExp(`^${ref.replace(/[.]/g, '\\.')}: resolved ${base.manifestDigest} \\(2 layers, \\d+(\\.\\d+)? (B|kB|MB)\\)$`))
  for (const layer of base.layers) {
    const downloads = lines.filter((l) => l.startsWith(`${short(layer.digest)}: downloading `))
    expect(downloads.length).toBeGreaterThan(0)
    const verified = lines.indexOf(`${short(layer.digest)}: verified`)
    expect(verified).toBeGreaterThan(lines.indexOf(downloads[downloads.length - 1]))
    expect(lines.indexOf(`${short(layer.digest)}: converted`)).toBeGreaterThan(verified)
  }
  expect(lines.slice(-4)).toEqual(['root disk: written', `Digest: ${base.manifestDigest}`, `Status: Downloaded newer image for ${ref}`, ref])
  expect(await consistencyProblems(cache.home)).toEqual([])
})

test('a second pull is up to date and downloads nothing, whatever the policy', async () => {
  const ref = `${plain.host}/team/base:v1`
  await Image.pull(ref)
  for (const policy of [[], ['--policy', 'if-missing'], ['--policy', 'always'], ['--policy', 'never']]) {
    const r = await msb(['image', 'pull', ...policy, ref])
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' })
    expect(r.stdout).not.toContain('downloading')
    expect(r.stdout.trimEnd().split('\n').slice(-3)).toEqual([`Digest: ${base.manifestDigest}`, `Status: Image is up to date for ${ref}`, ref])
  }
})

test('-q prints the reference alone; --policy never and unknown tags fail with one line', async () => {
  const ref = `${plain.host}/team/base:v1`
  expect(await msb(['image', 'pull', '--policy', 'never', ref])).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^microsandbox: [^\n]+\n$/) })
  expect(await msb(['image', 'pull', '-q', ref])).toEqual({ code: 0, signal: null, stdout: `${ref}\n`, stderr: '' })
  const unknown = await msb(['image', 'pull', '-q', `${plain.host}/team/base:nope`])
  expect(unknown).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^microsandbox: [^\n]*base:nope[^\n]*\n$/) })
  expect((await Image.list()).map((h) => h.reference)).toEqual([ref])
})

describe('credentials, over TLS the CLI is told not to verify (--insecure)', () => {
  const ref = () => `${secure.host}/private/base:v1`

  test('-u with --password-stdin', async () => {
    const r = await msb(['image', 'pull', '-q', '--insecure', '-u', 'alice', '--password-stdin', ref()], { input: `${PASSWORD}\n` })
    expect(r).toEqual({ code: 0, signal: null, stdout: `${ref()}\n`, stderr: '' })
    expect((await Image.get(ref())).manifestDigest).toBe(base.manifestDigest)
  })

  test("Docker's config.json from DOCKER_CONFIG", async () => {
    const dockerDir = path.join(work, 'docker-config')
    await fsp.mkdir(dockerDir, { recursive: true })
    await fsp.writeFile(path.join(dockerDir, 'config.json'), JSON.stringify({ auths: { [secure.host]: { auth: Buffer.from(`alice:${PASSWORD}`).toString('base64') } } }))
    expect(await msb(['image', 'pull', '-q', '--insecure', ref()], { env: { DOCKER_CONFIG: dockerDir } })).toMatchObject({ code: 0, stdout: `${ref()}\n` })
  })

  test('no, wrong or unverified credentials fail with one line that names no secret', async () => {
    const anonymous = await msb(['image', 'pull', '-q', '--insecure', ref()], { env: { DOCKER_CONFIG: path.join(work, 'no-docker-config') } })
    expect(anonymous).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^microsandbox: [^\n]+\n$/) })
    const wrong = await msb(['image', 'pull', '-q', '--insecure', '-u', 'alice', '--password-stdin', ref()], { input: WRONG_PASSWORD })
    expect(wrong).toMatchObject({ code: 1, stdout: '', stderr: expect.stringMatching(/^microsandbox: [^\n]+\n$/) })
    expect(wrong.stderr).not.toContain(WRONG_PASSWORD)
    const untrusted = await msb(['image', 'pull', '-q', '-u', 'alice', '--password-stdin', ref()], { input: PASSWORD })
    expect(untrusted).toMatchObject({ code: 1, stderr: expect.stringMatching(/^microsandbox: [^\n]*certificate[^\n]*\n$/i) })
    expect(await Image.list()).toEqual([])
  })
})
