// Image.pull against a real registry (CNCF distribution 2.8) on 127.0.0.1:
// progress, policies, platforms, TLS and Basic auth, Docker's config.json,
// mirrors, abort, concurrent pulls, and failures that leave nothing behind.
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image, ImageHandle, PullProgressEvent } from '../index'
import { artifactTree, childEnv, consistencyProblems, freshHome, realEnv, rejectionOf, runNodeScript, setEnv, PACKAGE_ROOT } from './support/cache'
import { buildImage, BuiltImage, copyLayout, makeTempDir, multiPlatformLayout, noise, readImage, requireTools, run, sampleLayers } from './support/images'
import { makeCerts, makeHtpasswd, push, Registry, startRegistry } from './support/registry'
import { PASSWORD, WRONG_PASSWORD } from './support/secrets'

jest.setTimeout(300_000)

let work: string
let plain: Registry
let base: BuiltImage
let derived: BuiltImage
let big: BuiltImage

beforeAll(async () => {
  requireTools(['docker-registry', 'skopeo', 'umoci', 'openssl', 'htpasswd'])
  work = await makeTempDir('msb-pull-')
  base = await buildImage(path.join(work, 'base'), { layers: sampleLayers('base'), refs: ['localhost/pull/base:v1'] })
  // The base image plus one layer: shares the base layers byte for byte.
  const derivedLayout = await copyLayout(base.layout, path.join(work, 'derived'))
  const bundle = path.join(work, 'derived-bundle')
  await run('umoci', ['unpack', '--image', `${derivedLayout}:localhost/pull/base:v1`, bundle])
  await fsp.writeFile(path.join(bundle, 'rootfs', 'extra.txt'), 'derived')
  await run('umoci', ['repack', '--image', `${derivedLayout}:localhost/pull/derived:v1`, bundle])
  derived = await readImage(derivedLayout, 'localhost/pull/derived:v1')
  expect(derived.layers.slice(0, base.layers.length)).toEqual(base.layers)
  big = await buildImage(path.join(work, 'big'), { layers: [{ entries: [{ type: 'file', path: 'blob.bin', content: noise(96 << 20, 7) }] }], refs: ['localhost/pull/big:v1'] })
  plain = await startRegistry()
  await push(`oci:${base.layout}:localhost/pull/base:v1`, `${plain.host}/team/base:v1`)
  await push(`oci:${derived.layout}:localhost/pull/derived:v1`, `${plain.host}/team/derived:v1`)
  await push(`oci:${big.layout}:localhost/pull/big:v1`, `${plain.host}/team/big:v1`)
})

afterAll(async () => {
  await plain?.stop()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

let home: { home: string; cleanup: () => Promise<void> }
beforeEach(async () => {
  home = await freshHome()
})
afterEach(async () => home.cleanup())

test('pulls, verifies and materializes, reporting progress in order', async () => {
  const events: PullProgressEvent[] = []
  const ref = `${plain.host}/team/base:v1`
  const handle = await Image.pull(ref, { onProgress: (e) => events.push(e) })
  expect(handle).toBeInstanceOf(ImageHandle)
  expect(handle.reference).toBe(ref)
  expect(handle.manifestDigest).toBe(base.manifestDigest)
  expect(handle.layerCount).toBe(base.layers.length)
  const types = events.map((e) => e.type)
  expect(types[0]).toBe('resolved')
  expect(types[types.length - 1]).toBe('complete')
  expect(types.indexOf('disk')).toBe(types.length - 2)
  expect(events[0]).toMatchObject({ type: 'resolved', layers: base.layers.map((l) => ({ digest: l.digest, size: l.size })) })
  for (const layer of base.layers) {
    const downloads = events.filter((e) => e.type === 'download' && e.digest === layer.digest)
    expect(downloads[downloads.length - 1]).toMatchObject({ downloaded: layer.size, total: layer.size })
    const ready = events.findIndex((e) => e.type === 'layer' && e.digest === layer.digest)
    expect(ready).toBeGreaterThan(events.indexOf(downloads[downloads.length - 1]))
  }
  const detail = await Image.inspect(ref)
  expect(detail.layers.map((l) => l.diffId)).toEqual(base.diffIds)
  const boot = await Image.acquire(ref, { sandbox: 'pulled' })
  await expect(fsp.stat(boot.vmdkPath)).resolves.toBeTruthy()
  expect(await consistencyProblems(home.home)).toEqual([])
})

test('a tag whose manifest is cached downloads nothing; shared layers download once', async () => {
  const ref = `${plain.host}/team/base:v1`
  await Image.pull(ref)
  // Same manifest under another name (by digest): no blob downloads at all.
  const events: PullProgressEvent[] = []
  await Image.pull(`${plain.host}/team/base@${base.manifestDigest}`, { onProgress: (e) => events.push(e) })
  expect(events.filter((e) => e.type === 'download')).toEqual([])
  // The derived image shares the base layers: only its own layer and config arrive.
  const derivedEvents: PullProgressEvent[] = []
  await Image.pull(`${plain.host}/team/derived:v1`, { onProgress: (e) => derivedEvents.push(e) })
  const downloaded = new Set(derivedEvents.filter((e) => e.type === 'download').map((e) => e.digest))
  expect(downloaded).toEqual(new Set([derived.layers[derived.layers.length - 1].digest, derived.configDigest]))
})

test('a layer image lost from the cache: acquire says so, the next pull fetches only that layer again', async () => {
  const ref = `${plain.host}/team/base:v1`
  await Image.pull(ref)
  const lost = path.join(home.home, 'layers', 'sha256', `${base.diffIds[1].slice(7)}.erofs`)
  const bytes = await fsp.readFile(lost)
  await fsp.rm(lost)
  expect(await rejectionOf(Image.acquire(ref, { sandbox: 'sb' }))).toMatchObject({ code: 'cache', name: 'CacheError' })
  const events: PullProgressEvent[] = []
  await Image.pull(ref, { onProgress: (e) => events.push(e) })
  const downloaded = new Set(events.filter((e) => e.type === 'download').map((e) => e.digest))
  expect(downloaded).toEqual(new Set([base.layers[1].digest, base.configDigest]))
  expect(await fsp.readFile(lost)).toEqual(bytes)
  await Image.acquire(ref, { sandbox: 'sb' })
  expect(await consistencyProblems(home.home)).toEqual([])
})

test('pull policies: if-missing and never answer from the cache offline; always re-resolves', async () => {
  const own = await startRegistry()
  const ref = `${own.host}/team/base:v1`
  try {
    await push(`oci:${base.layout}:localhost/pull/base:v1`, ref)
    await expect(rejectionOf(Image.pull(ref, { pullPolicy: 'never' }))).resolves.toMatchObject({ code: 'image_not_found', name: 'ImageNotFoundError' })
    await Image.pull(ref)
  } finally {
    await own.stop()
  }
  // The registry is gone: the cache answers.
  expect((await Image.pull(ref)).manifestDigest).toBe(base.manifestDigest)
  expect((await Image.pull(ref, { pullPolicy: 'never' })).manifestDigest).toBe(base.manifestDigest)
  expect((await rejectionOf(Image.pull(ref, { pullPolicy: 'always' }))).code).toBe('registry')

  // The tag moves to another image: always follows it, if-missing does not.
  const moving = `${plain.host}/team/moving:v1`
  await push(`oci:${derived.layout}:localhost/pull/derived:v1`, moving)
  expect((await Image.pull(moving)).manifestDigest).toBe(derived.manifestDigest)
  await push(`oci:${base.layout}:localhost/pull/base:v1`, moving)
  expect((await Image.pull(moving)).manifestDigest).toBe(derived.manifestDigest)
  const events: PullProgressEvent[] = []
  expect((await Image.pull(moving, { pullPolicy: 'always', onProgress: (e) => events.push(e) })).manifestDigest).toBe(base.manifestDigest)
  // The base manifest is cached (pulled above under another name): nothing travels but the manifest.
  expect(events.filter((e) => e.type === 'download')).toEqual([])
})

test('picks the host platform from a multi-platform index, or the one asked for', async () => {
  const arm = await buildImage(path.join(work, 'arm'), { layers: sampleLayers('arm'), config: { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }, refs: ['localhost/pull/multi:arm'] })
  const amd = await buildImage(path.join(work, 'amd'), { layers: sampleLayers('amd'), config: { platform: { os: 'linux', architecture: 'amd64' } }, refs: ['localhost/pull/multi:amd'] })
  const layout = path.join(work, 'multi')
  await multiPlatformLayout(layout, [{ image: arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }, { image: amd, platform: { os: 'linux', architecture: 'amd64' } }], 'localhost/pull/multi:v1', { nested: true })
  await push(`oci:${layout}:localhost/pull/multi:v1`, `${plain.host}/team/multi:v1`, { all: true })
  const host = await Image.pull(`${plain.host}/team/multi:v1`)
  expect(host.manifestDigest).toBe(process.arch === 'arm64' ? arm.manifestDigest : amd.manifestDigest)
  // The cached image is the host's: asking for another platform pulls it, even if-missing.
  const other = process.arch === 'arm64' ? { platform: 'linux/amd64', image: amd } : { platform: 'linux/arm64', image: arm }
  await expect(rejectionOf(Image.pull(`${plain.host}/team/multi:v1`, { platform: other.platform, pullPolicy: 'never' }))).resolves.toMatchObject({
    name: 'ImageNotFoundError',
  })
  const chosen = await Image.pull(`${plain.host}/team/multi:v1`, { platform: other.platform })
  expect(chosen.manifestDigest).toBe(other.image.manifestDigest)
  expect(chosen.architecture).toBe(other.platform.split('/')[1])
  await expect(rejectionOf(Image.pull(`${plain.host}/team/multi:v1`, { platform: 'linux/s390x', pullPolicy: 'always' }))).resolves.toMatchObject({ code: 'registry' })
})

describe('TLS with Basic auth', () => {
  let secure: Registry
  let certs: Awaited<ReturnType<typeof makeCerts>>
  const ref = () => `${secure.host}/private/base:v1`

  beforeAll(async () => {
    certs = await makeCerts(work)
    secure = await startRegistry({ tls: { cert: certs.cert, key: certs.key }, htpasswd: await makeHtpasswd(work, 'alice', PASSWORD) })
    await push(`oci:${base.layout}:localhost/pull/base:v1`, ref(), { certDir: certs.caDir, creds: `alice:${PASSWORD}` })
  })
  afterAll(async () => secure?.stop())

  test('credentials in the options, CA bundle trusted', async () => {
    const handle = await Image.pull(ref(), { auth: { username: 'alice', password: PASSWORD }, caBundles: [certs.ca] })
    expect(handle.manifestDigest).toBe(base.manifestDigest)
  })

  test("credentials from Docker's config.json and a CA from registries.json", async () => {
    const dockerDir = path.join(work, 'docker-config')
    await fsp.mkdir(dockerDir, { recursive: true })
    await fsp.writeFile(path.join(dockerDir, 'config.json'), JSON.stringify({ auths: { [secure.host]: { auth: Buffer.from(`alice:${PASSWORD}`).toString('base64') } } }))
    await fsp.mkdir(home.home, { recursive: true })
    await fsp.writeFile(path.join(home.home, 'registries.json'), JSON.stringify({ caBundles: [certs.ca] }))
    const previous = realEnv('DOCKER_CONFIG')
    setEnv('DOCKER_CONFIG', dockerDir)
    try {
      expect((await Image.pull(ref())).manifestDigest).toBe(base.manifestDigest)
    } finally {
      setEnv('DOCKER_CONFIG', previous)
    }
  })

  test('failures are typed, name no secret, and leave nothing behind', async () => {
    await Image.list()
    const before = await artifactTree(home.home)
    const noAuth = await rejectionOf(Image.pull(ref(), { caBundles: [certs.ca] }))
    expect(noAuth).toMatchObject({ name: 'AuthenticationError', code: 'authentication', registry: secure.host })
    const wrong = await rejectionOf(Image.pull(ref(), { caBundles: [certs.ca], auth: { username: 'alice', password: WRONG_PASSWORD } }))
    expect(wrong.code).toBe('authentication')
    expect(wrong.message).not.toContain(WRONG_PASSWORD)
    const untrusted = await rejectionOf(Image.pull(ref(), { auth: { username: 'alice', password: PASSWORD } }))
    expect(untrusted.code).toBe('registry')
    expect(untrusted.message).toMatch(/certificate/i)
    expect(await Image.list()).toEqual([])
    expect(await artifactTree(home.home)).toEqual(before)
    // insecure: skips verification for that registry only.
    expect((await Image.pull(ref(), { insecure: true, auth: { username: 'alice', password: PASSWORD } })).manifestDigest).toBe(base.manifestDigest)
  })
})

test('a pull-through mirror serves the pull, and a dead mirror falls back to the origin', async () => {
  const mirror = await startRegistry({ proxy: `http://${plain.host}` })
  try {
    const ref = `${plain.host}/team/base:v1`
    await Image.pull(ref, { mirrors: { [plain.host]: [`http://${mirror.host}`] } })
    // The mirror now holds the blobs it served.
    const stored = await fsp.readdir(path.join(mirror.dir, 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256')).catch(() => [])
    expect(stored.length).toBeGreaterThan(0)
    await Image.remove(ref)
    await Image.prune()
    const handle = await Image.pull(ref, { mirrors: { [plain.host]: ['http://127.0.0.1:9', `http://${mirror.host}`] } })
    expect(handle.manifestDigest).toBe(base.manifestDigest)
  } finally {
    await mirror.stop()
  }
})

test('an AbortSignal stops a pull mid-download; nothing is left and the next pull succeeds', async () => {
  const ref = `${plain.host}/team/big:v1`
  const controller = new AbortController()
  let seen = 0
  const err = await rejectionOf(
    Image.pull(ref, {
      signal: controller.signal,
      onProgress: (e) => {
        // The big layer's first event comes as its stream opens: abort then.
        if (e.type === 'download' && e.digest === big.layers[0].digest && e.downloaded < e.total) {
          seen++
          controller.abort()
        }
      },
    }),
  )
  expect(err).toMatchObject({ name: 'AbortError', code: 'aborted' })
  expect(seen).toBeGreaterThan(0)
  expect(await Image.list()).toEqual([])
  expect(await consistencyProblems(home.home)).toEqual([])
  // An already aborted signal refuses at once; a reused, never-aborted one is fine.
  await expect(rejectionOf(Image.pull(ref, { signal: AbortSignal.abort() }))).resolves.toMatchObject({ code: 'aborted' })
  const reusable = new AbortController()
  for (let i = 0; i < 3; i++) await Image.pull(`${plain.host}/team/base:v1`, { signal: reusable.signal, pullPolicy: 'always' })
  expect((await Image.pull(ref, { signal: reusable.signal })).layerCount).toBe(1)
})

test('unknown tags and repositories are ImageNotFoundError; bad options are InvalidArgumentError', async () => {
  await expect(rejectionOf(Image.pull(`${plain.host}/team/base:nope`))).resolves.toMatchObject({ name: 'ImageNotFoundError' })
  await expect(rejectionOf(Image.pull(`${plain.host}/team/none:v1`))).resolves.toMatchObject({ name: 'ImageNotFoundError' })
  await expect(rejectionOf(Image.pull(`${plain.host}/team/base:v1`, { pullPolicy: 'sometimes' as never }))).resolves.toMatchObject({ name: 'InvalidArgumentError' })
  await expect(rejectionOf(Image.pull(`${plain.host}/team/base:v1`, { auth: { username: 'x' } as never }))).resolves.toMatchObject({ name: 'InvalidArgumentError' })
  await expect(rejectionOf(Image.pull('Bad Reference'))).resolves.toMatchObject({ name: 'InvalidReferenceError' })
  expect(await Image.list()).toEqual([])
})

test('concurrent pulls in several processes share layers and all succeed', async () => {
  const script = `
    const { Image } = require(${JSON.stringify(PACKAGE_ROOT)});
    const refs = process.env.PULL_REFS.split(' ');
    Promise.all(refs.map((r) => Image.pull(r)))
      .then((hs) => console.log(hs.map((h) => h.manifestDigest).join(' ')))
      .catch((e) => { console.error(e); process.exit(1) });
  `
  const refs = [`${plain.host}/team/base:v1`, `${plain.host}/team/derived:v1`]
  const results = await Promise.all(
    [0, 1, 2].map((i) => runNodeScript(script, childEnv({ MSB_HOME: home.home, PULL_REFS: (i % 2 ? refs : [...refs].reverse()).join(' ') }))),
  )
  for (const r of results) expect(r).toMatchObject({ code: 0 })
  expect(await consistencyProblems(home.home)).toEqual([])
  const layers = await fsp.readdir(path.join(home.home, 'layers', 'sha256'))
  expect(layers.length).toBe(new Set([...base.diffIds, ...derived.diffIds]).size)
})
