/**
 * `Image.login` / `Image.logout` through the public API against a real
 * CNCF registry with htpasswd over TLS on 127.0.0.1: refused credentials
 * store nothing and never show up in a message; accepted ones land in
 * Docker's config.json (owner-only), where the next pull finds them, and
 * logout takes them out again. (Credential helpers, identity tokens and
 * mutual TLS are proven at the registry crate: crates/registry/tests.)
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image, AuthenticationError, InvalidArgumentError } from '..'
import { buildImage, makeTempDir, requireTools, sampleLayers } from './support/images'
import { freshHomePerTest, setEnv } from './support/cache'
import { makeCerts, makeHtpasswd, push, Registry, startRegistry } from './support/registry'
import { LOGIN_PASSWORD as PASSWORD } from './support/secrets'

jest.setTimeout(240_000)

let work: string
let registry: Registry
let ref: string

beforeAll(async () => {
  requireTools(['umoci', 'skopeo', 'docker-registry', 'htpasswd', 'openssl'])
  work = await makeTempDir('msb-login-')
  const certs = await makeCerts(work)
  registry = await startRegistry({ tls: { cert: certs.cert, key: certs.key }, htpasswd: await makeHtpasswd(work, 'alice', PASSWORD) })
  const layout = path.join(work, 'app')
  await buildImage(layout, { layers: sampleLayers('login-api'), refs: ['localhost/w/app:v1'] })
  ref = `${registry.host}/private/app:v1`
  await push(`oci:${layout}:localhost/w/app:v1`, ref, { certDir: certs.caDir, creds: `alice:${PASSWORD}` })
}, 600_000)

afterAll(async () => {
  await registry?.stop()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

freshHomePerTest()
let dockerDir: string
beforeEach(async () => {
  dockerDir = await fsp.mkdtemp(path.join(work, 'docker-'))
  setEnv('DOCKER_CONFIG', dockerDir)
})
const dockerConfig = async (): Promise<Record<string, unknown> | undefined> =>
  JSON.parse(await fsp.readFile(path.join(dockerDir, 'config.json'), 'utf8').catch(() => 'null')) ?? undefined

test('refused credentials reject with AuthenticationError, store nothing and name no secret', async () => {
  const err = await Image.login(registry.host, { username: 'alice', password: `${PASSWORD}-wrong`, insecure: true }).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(AuthenticationError)
  expect((err as AuthenticationError).code).toBe('authentication')
  expect(String((err as Error).message)).not.toContain(PASSWORD)
  expect(JSON.stringify(err)).not.toContain(PASSWORD)
  expect(await dockerConfig()).toBeUndefined()
})

test('login stores in config.json (0600), the next pull uses it, logout removes it', async () => {
  await expect(Image.pull(ref, { insecure: true })).rejects.toBeInstanceOf(AuthenticationError)
  await fsp.writeFile(path.join(dockerDir, 'config.json'), JSON.stringify({ auths: {}, psFormat: 'table {{.ID}}' }))
  await Image.login(registry.host, { username: 'alice', password: PASSWORD, insecure: true })
  const config = (await dockerConfig()) as { auths: Record<string, { auth: string }>; psFormat: string }
  expect(Buffer.from(config.auths[registry.host].auth, 'base64').toString()).toBe(`alice:${PASSWORD}`)
  expect(config.psFormat).toBe('table {{.ID}}')
  expect((await fsp.stat(path.join(dockerDir, 'config.json'))).mode & 0o777).toBe(0o600)
  expect((await Image.pull(ref, { insecure: true })).reference).toBe(ref)
  expect(await Image.logout(registry.host)).toBe(true)
  expect(((await dockerConfig()) as { auths: Record<string, unknown> }).auths[registry.host]).toBeUndefined()
  expect(await Image.logout(registry.host)).toBe(false)
  await expect(Image.pull(ref, { insecure: true, pullPolicy: 'always' })).rejects.toBeInstanceOf(AuthenticationError)
})

test('bad arguments are InvalidArgumentError', async () => {
  for (const call of [
    () => Image.login(registry.host, { username: 'alice' } as never),
    () => Image.login(registry.host, { username: '', password: 'x' }),
    () => Image.login(registry.host, { username: 'a', password: 'b', extra: 1 } as never),
    () => Image.logout(42 as never),
  ]) {
    await expect(call()).rejects.toBeInstanceOf(InvalidArgumentError)
  }
  expect(await dockerConfig()).toBeUndefined()
})
