/**
 * Image.save writes archives other tools read: skopeo inspects and copies
 * them, and Image.load re-imports them into a fresh cache with the same
 * config and diff_ids.
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image, ImageNotFoundError, MicrosandboxError } from '..'
import { BuiltImage, buildImage, dockerManifest, makeTempDir, readImage, recompressImage, requireTools, run, sampleLayers, sha256 } from './support/images'
import { consistencyProblems, freshHome, freshHomePerTest, rejectionOf, setEnv, tmpFiles } from './support/cache'

let work: string
let app: BuiltImage
let other: BuiltImage
let zstdApp: BuiltImage

beforeAll(async () => {
  requireTools()
  work = await makeTempDir('msb-save-')
  app = await buildImage(path.join(work, 'app'), {
    layers: [...sampleLayers('app'), { entries: [{ type: 'file', path: 'big.bin', content: Buffer.alloc(300_000, 3) }] }],
    config: { env: ['A=1'], cmd: ['run'], workingDir: '/app', labels: { k: 'v' } },
    refs: ['localhost/save/app:v1', 'localhost/save/app:alias'],
  })
  other = await buildImage(path.join(work, 'other'), { layers: sampleLayers('other'), config: { cmd: ['other'] }, refs: ['localhost/save/other:v1'] })
  zstdApp = await recompressImage(app, path.join(work, 'app-zstd'), 'zstd')
}, 120_000)

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
beforeEach(async () => {
  await Image.load(app.layout)
  await Image.load(other.layout)
})

async function skopeoJson(args: string[]): Promise<Record<string, unknown>> {
  return JSON.parse((await run('skopeo', args)).stdout)
}

/** Loads `archive` into a brand-new cache and returns what inspect says of `ref` there. */
async function reimport(archive: string, ref: string, opts?: { tag?: string }) {
  const fresh = await freshHome('msb-reimport-')
  try {
    const handles = await Image.load(archive, opts)
    const detail = await Image.inspect(ref)
    expect(await consistencyProblems(fresh.home)).toEqual([])
    return { handles: handles.map((h) => h.reference).sort(), manifestDigest: detail.handle.manifestDigest, config: detail.config, diffIds: detail.layers.map((l) => l.diffId) }
  } finally {
    await fresh.cleanup()
    setEnv('MSB_HOME', cache.home)
  }
}

describe('docker format', () => {
  test('skopeo reads it back: config bytes, diff_ids, tags', async () => {
    const out = path.join(cache.root, 'app.docker.tar')
    await Image.save('localhost/save/app:v1', { outputPath: out, format: 'docker' })
    const config = (await run('skopeo', ['inspect', '--config', '--raw', `docker-archive:${out}`])).stdout
    expect(sha256(config)).toBe(app.configDigest)
    const info = await skopeoJson(['inspect', `docker-archive:${out}`])
    expect(info.Layers).toEqual(app.diffIds)
    expect(info.Architecture).toBe('amd64')
    expect(info.Env).toEqual(['A=1'])
    expect((await dockerManifest(out))[0].RepoTags).toEqual(['localhost/save/app:v1'])
    expect(await tmpFiles(cache.home)).toEqual([])
  })

  test('is the default format', async () => {
    const out = path.join(cache.root, 'default.tar')
    await Image.save('localhost/save/app:v1', { outputPath: out })
    expect(sha256((await run('skopeo', ['inspect', '--config', '--raw', `docker-archive:${out}`])).stdout)).toBe(app.configDigest)
  })

  test('Image.load re-imports it with the same config digest and diff_ids', async () => {
    const out = path.join(cache.root, 'app.docker.tar')
    await Image.save('localhost/save/app:v1', { outputPath: out, format: 'docker' })
    const back = await reimport(out, 'localhost/save/app:v1')
    expect(back.handles).toEqual(['localhost/save/app:v1'])
    expect(back.config).toEqual((await Image.inspect('localhost/save/app:v1')).config)
    expect(back.config!.digest).toBe(app.configDigest)
    expect(back.diffIds).toEqual(app.diffIds)
  })

  test('skopeo copies it to an OCI layout, which loads again', async () => {
    const out = path.join(cache.root, 'app.docker.tar')
    await Image.save('localhost/save/app:v1', { outputPath: out })
    const dir = path.join(cache.root, 'copied')
    await run('skopeo', ['copy', '--quiet', `docker-archive:${out}`, `oci:${dir}:localhost/save/app:copied`])
    const copied = await readImage(dir)
    // skopeo re-serializes a docker config when it converts to OCI (it does so
    // for its own docker archives too): the same JSON, other bytes.
    expect(copied.config).toEqual(app.config)
    expect(copied.diffIds).toEqual(app.diffIds)
    const back = await reimport(dir, 'localhost/save/app:copied')
    expect(back.manifestDigest).toBe(copied.manifestDigest)
    expect(back.diffIds).toEqual(app.diffIds)
  })

  test('several images, and two tags of one image, in one archive', async () => {
    const out = path.join(cache.root, 'many.tar')
    await Image.save(['localhost/save/app:v1', 'localhost/save/other:v1', 'localhost/save/app:alias'], { outputPath: out, format: 'docker' })
    const entries = await dockerManifest(out)
    expect(entries).toHaveLength(2)
    expect(entries.map((e) => [...(e.RepoTags ?? [])].sort())).toEqual([['localhost/save/app:alias', 'localhost/save/app:v1'], ['localhost/save/other:v1']])
    const second = (await run('skopeo', ['inspect', '--config', '--raw', `docker-archive:${out}:localhost/save/other:v1`])).stdout
    expect(sha256(second)).toBe(other.configDigest)
    const back = await reimport(out, 'localhost/save/other:v1')
    expect(back.handles).toEqual(['localhost/save/app:alias', 'localhost/save/app:v1', 'localhost/save/other:v1'])
    expect(back.diffIds).toEqual(other.diffIds)
  })

  test('zstd layers are written as plain tars with their diff_ids', async () => {
    await Image.load(zstdApp.layout, { tag: 'localhost/save/zstd:v1' })
    const out = path.join(cache.root, 'zstd.docker.tar')
    await Image.save('localhost/save/zstd:v1', { outputPath: out })
    const info = await skopeoJson(['inspect', `docker-archive:${out}`])
    expect(info.Layers).toEqual(app.diffIds)
    const back = await reimport(out, 'localhost/save/zstd:v1')
    expect(back.config!.digest).toBe(app.configDigest)
    expect(back.diffIds).toEqual(app.diffIds)
  })
})

describe('oci format', () => {
  test('skopeo reads it back: the cached config, the layers uncompressed (named by their diff_ids), a manifest of its own', async () => {
    const out = path.join(cache.root, 'app.oci.tar')
    await Image.save('localhost/save/app:v1', { outputPath: out, format: 'oci' })
    const raw = (await run('skopeo', ['inspect', '--raw', `oci-archive:${out}:localhost/save/app:v1`])).stdout
    const manifest = JSON.parse(raw)
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual(app.diffIds.map(() => 'application/vnd.oci.image.layer.v1.tar'))
    expect(sha256(raw)).not.toBe(app.manifestDigest)
    const config = (await run('skopeo', ['inspect', '--config', '--raw', `oci-archive:${out}:localhost/save/app:v1`])).stdout
    expect(sha256(config)).toBe(app.configDigest)
    const info = await skopeoJson(['inspect', `oci-archive:${out}:localhost/save/app:v1`])
    expect(info.Layers).toEqual(app.diffIds)
    expect(await tmpFiles(cache.home)).toEqual([])
  })

  test('Image.load re-imports it with the saved manifest, the same config digest and diff_ids', async () => {
    const out = path.join(cache.root, 'app.oci.tar')
    await Image.save(['localhost/save/app:v1', 'localhost/save/other:v1'], { outputPath: out, format: 'oci' })
    const raw = (await run('skopeo', ['inspect', '--raw', `oci-archive:${out}:localhost/save/app:v1`])).stdout
    const back = await reimport(out, 'localhost/save/app:v1')
    expect(back.handles).toEqual(['localhost/save/app:v1', 'localhost/save/other:v1'])
    expect(back.manifestDigest).toBe(sha256(raw))
    expect(back.config!.digest).toBe(app.configDigest)
    expect(back.diffIds).toEqual(app.diffIds)
  })

  test('skopeo copies it to an OCI layout directory, digests preserved', async () => {
    const out = path.join(cache.root, 'app.oci.tar')
    await Image.save('localhost/save/app:v1', { outputPath: out, format: 'oci' })
    const dir = path.join(cache.root, 'oci-copy')
    // Without --preserve-digests skopeo would gzip the uncompressed layers.
    await run('skopeo', ['copy', '--quiet', '--preserve-digests', `oci-archive:${out}:localhost/save/app:v1`, `oci:${dir}:copy`])
    const copied = await readImage(dir)
    const raw = (await run('skopeo', ['inspect', '--raw', `oci-archive:${out}:localhost/save/app:v1`])).stdout
    expect(copied.manifestDigest).toBe(sha256(raw))
    expect(copied.diffIds).toEqual(app.diffIds)
  })

  test('a docker-archive-loaded image saved as OCI keeps its config and diff_ids', async () => {
    const docker = path.join(cache.root, 'first.docker.tar')
    await Image.save('localhost/save/app:v1', { outputPath: docker, format: 'docker' })
    const fresh = await freshHome('msb-chain-')
    try {
      await Image.load(docker)
      const oci = path.join(cache.root, 'second.oci.tar')
      await Image.save('localhost/save/app:v1', { outputPath: oci, format: 'oci' })
      const info = await skopeoJson(['inspect', `oci-archive:${oci}:localhost/save/app:v1`])
      expect(info.Layers).toEqual(app.diffIds)
      const cfg = (await run('skopeo', ['inspect', '--config', '--raw', `oci-archive:${oci}:localhost/save/app:v1`])).stdout
      expect(sha256(cfg)).toBe(app.configDigest)
    } finally {
      await fresh.cleanup()
      setEnv('MSB_HOME', cache.home)
    }
  })
})

describe('failures write nothing', () => {
  test('an absent image: ImageNotFoundError, no output file', async () => {
    const out = path.join(cache.root, 'nothing.tar')
    const err = await rejectionOf(Image.save(['localhost/save/app:v1', 'localhost/save/none:v1'], { outputPath: out }))
    expect(err).toBeInstanceOf(ImageNotFoundError)
    expect(fs.existsSync(out)).toBe(false)
    expect((await fsp.readdir(cache.root)).filter((n) => n !== 'cache')).toEqual([])
  })

  test('an output directory that does not exist: rejected, nothing written', async () => {
    const out = path.join(cache.root, 'no', 'such', 'dir', 'x.tar')
    const err = await rejectionOf(Image.save('localhost/save/app:v1', { outputPath: out }))
    expect(err).toBeInstanceOf(MicrosandboxError)
    expect(fs.existsSync(path.join(cache.root, 'no'))).toBe(false)
    expect(await tmpFiles(cache.home)).toEqual([])
  })

  test('an existing output file is replaced whole', async () => {
    const out = path.join(cache.root, 'exists.tar')
    await fsp.writeFile(out, 'old contents')
    await Image.save('localhost/save/other:v1', { outputPath: out })
    expect(sha256((await run('skopeo', ['inspect', '--config', '--raw', `docker-archive:${out}`])).stdout)).toBe(other.configDigest)
    expect((await fsp.readdir(cache.root)).sort()).toEqual(['cache', 'exists.tar'])
  })
})
