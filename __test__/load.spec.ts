/**
 * Image.load of every archive format users bring, and what get / list /
 * inspect then report about the image. Fixtures are built by umoci and
 * exported by skopeo in beforeAll; each test has its own MSB_HOME.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image, ImageHandle, ImageNotFoundError, ImageArchiveError, InvalidArgumentError } from '..'
import {
  BuiltImage,
  buildImage,
  gzipFile,
  makeTempDir,
  mergeDockerArchives,
  multiPlatformLayout,
  readImage,
  recompressImage,
  requireTools,
  run,
  sampleLayers,
  sha256,
  toDockerArchive,
  toOciArchive,
  toOciDir,
  unpackRootfs,
  zstdFile,
  hexOf,
  dockerManifest,
  untar,
  edgeLayers,
  dirToFileLayers,
} from './support/images'
import { bootAndManifest, ManifestEntry, manifestOfDir } from './support/vm'
import { artifactTree, isDate, fsckProblems, erofsMode, withoutSetid, consistencyProblems, describeTree, extractRootDisk, footprintOf, freshHomePerTest, readIndex, rejectionOf, storedContent, tmpFiles } from './support/cache'

const HOST_ARCH = process.arch === 'x64' ? 'amd64' : process.arch === 'arm64' ? 'arm64' : process.arch

const APP_CONFIG = {
  env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'LANG=C.UTF-8', 'APP_MODE=test'],
  cmd: ['python3', 'app.py'],
  entrypoint: ['/bin/tool', '--flag'],
  workingDir: '/app',
  user: '1000:1000',
  labels: { 'org.opencontainers.image.title': 'app', 'com.example.answer': '42' },
  stopSignal: 'SIGINT',
}

let work: string
let app: BuiltImage // OCI layout with gzip layers (umoci)
let bare: BuiltImage
let other: BuiltImage
let arm: BuiltImage
const files: Record<string, string> = {}

beforeAll(async () => {
  requireTools()
  work = await makeTempDir('msb-load-')
  app = await buildImage(path.join(work, 'app'), {
    layers: [
      ...sampleLayers('app'),
      { entries: [{ type: 'opaque', path: '/opt/data', mode: 0o755, entries: [{ type: 'file', path: 'new.txt', content: 'replaced\n', mtime: 1_700_000_000 }] }] },
    ],
    config: APP_CONFIG,
    refs: ['localhost/test/app:v1'],
  })
  bare = await buildImage(path.join(work, 'bare'), { layers: [{ entries: [{ type: 'file', path: 'only', content: 'x' }] }], refs: ['localhost/test/bare:v1'] })
  other = await buildImage(path.join(work, 'other'), { layers: sampleLayers('other'), config: { cmd: ['other'] }, refs: ['localhost/test/other:v2'] })
  arm = await buildImage(path.join(work, 'arm'), {
    layers: sampleLayers('arm'),
    config: { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, cmd: ['arm'] },
    refs: ['localhost/test/arm:v1'],
  })
  files.docker = await toDockerArchive(app, path.join(work, 'app.docker.tar'))
  files.dockerTwoTags = await toDockerArchive(app, path.join(work, 'app.twotags.tar'), ['localhost/test/app:v1', 'localhost/test/app:stable'])
  files.ociArchive = await toOciArchive(app, path.join(work, 'app.oci.tar'))
  files.ociDir = await toOciDir(app, path.join(work, 'app.ocidir'))
  files.dockerGz = await gzipFile(files.docker, path.join(work, 'app.docker.tar.gz'))
  files.dockerZst = await zstdFile(files.docker, path.join(work, 'app.docker.tar.zst'))
  files.otherDocker = await toDockerArchive(other, path.join(work, 'other.docker.tar'))
  files.multiDocker = await mergeDockerArchives([files.docker, files.otherDocker], path.join(work, 'multi.docker.tar'))
  files.bareDocker = await toDockerArchive(bare, path.join(work, 'bare.docker.tar'))
  const variants = [
    { image: app, platform: { os: 'linux', architecture: 'amd64' } },
    { image: arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ]
  files.flatIndex = await multiPlatformLayout(path.join(work, 'flat-index'), variants, 'localhost/test/multi:v1')
  files.nestedIndex = await multiPlatformLayout(path.join(work, 'nested-index'), variants, 'localhost/test/multi:v1', { nested: true })
}, 120_000)

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()

/** Checks a handle against the image it should describe. */
function expectHandle(h: ImageHandle, want: { reference: string; layerCount: number; architecture?: string; manifestDigest?: string }): void {
  expect(h).toBeInstanceOf(ImageHandle)
  expect(h.reference).toBe(want.reference)
  expect(h.layerCount).toBe(want.layerCount)
  expect(h.architecture).toBe(want.architecture ?? 'amd64')
  expect(h.os).toBe('linux')
  expect(h.manifestDigest).toMatch(/^sha256:[0-9a-f]{64}$/)
  if (want.manifestDigest) expect(h.manifestDigest).toBe(want.manifestDigest)
  expect(typeof h.sizeBytes).toBe('number')
  expect(h.sizeBytes).toBeGreaterThan(0)
  expect(isDate(h.createdAt)).toBe(true)
  expect(h.lastUsedAt).toBeNull()
}

/** The manifest the cache recorded for a handle: the index keeps its bytes, which hash to the digest. */
async function storedManifest(digest: string): Promise<{ config: { digest: string }; layers: Array<{ digest: string; size: number; mediaType: string }> }> {
  const bytes = storedContent(cache.home, digest)!
  expect(sha256(bytes)).toBe(digest)
  return JSON.parse(bytes.toString('utf8'))
}

async function expectConsistent(): Promise<void> {
  expect(await consistencyProblems(cache.home)).toEqual([])
  expect(await tmpFiles(cache.home)).toEqual([])
}

describe('Image.load formats', () => {
  test('docker-archive (docker save / skopeo docker-archive:)', async () => {
    const before = Date.now()
    const handles = await Image.load(files.docker)
    const after = Date.now()
    expect(handles).toHaveLength(1)
    expectHandle(handles[0], { reference: 'localhost/test/app:v1', layerCount: app.layers.length })
    expect(handles[0].createdAt!.getTime()).toBeGreaterThanOrEqual(before)
    expect(handles[0].createdAt!.getTime()).toBeLessThanOrEqual(after)

    const detail = await Image.inspect('localhost/test/app:v1')
    expect(detail.config!.digest).toBe(app.configDigest)
    expect(detail.layers.map((l) => l.diffId)).toEqual(app.diffIds)
    // docker archives hold uncompressed layer tars: the blob is the tar itself.
    const members = (await dockerManifest(files.docker))[0].Layers
    const unpacked = await untar(files.docker, path.join(cache.home, '..', 'unpacked'))
    for (const [i, layer] of detail.layers.entries()) {
      expect(layer.position).toBe(i)
      expect(layer.blobDigest).toBe(app.diffIds[i])
      expect(layer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar')
      expect(layer.compressedSizeBytes).toBe((await fsp.stat(path.join(unpacked, members[i]))).size)
      expect(layer.erofsSizeBytes).toBeGreaterThan(0)
    }
    // The synthesized manifest is stored, content-addressed, and names the config and layers.
    const manifest = await storedManifest(handles[0].manifestDigest!)
    expect(manifest.config.digest).toBe(app.configDigest)
    expect(manifest.layers.map((l) => l.digest)).toEqual(app.diffIds)
    await expectConsistent()
  })

  test('OCI image layout directory keeps the layout manifest digest', async () => {
    const handles = await Image.load(files.ociDir)
    expect(handles).toHaveLength(1)
    const ociDir = await readImage(files.ociDir)
    expectHandle(handles[0], { reference: 'localhost/test/app:v1', layerCount: 3, manifestDigest: ociDir.manifestDigest })
    const detail = await Image.inspect('localhost/test/app:v1')
    expect(detail.layers.map((l) => l.blobDigest)).toEqual(ociDir.layers.map((l) => l.digest))
    expect(detail.layers.map((l) => l.compressedSizeBytes)).toEqual(ociDir.layers.map((l) => l.size))
    expect(detail.layers.map((l) => l.mediaType)).toEqual(ociDir.layers.map((l) => l.mediaType))
    expect(detail.layers.map((l) => l.diffId)).toEqual(app.diffIds)
    await expectConsistent()
  })

  test('the umoci-built layout directory itself loads with its exact manifest', async () => {
    const handles = await Image.load(app.layout)
    expectHandle(handles[0], { reference: 'localhost/test/app:v1', layerCount: 3, manifestDigest: app.manifestDigest })
    expect((await storedManifest(app.manifestDigest)).config.digest).toBe(app.configDigest)
  })

  test('oci-archive (OCI layout in a tar)', async () => {
    const handles = await Image.load(files.ociArchive)
    expect(handles).toHaveLength(1)
    expectHandle(handles[0], { reference: 'localhost/test/app:v1', layerCount: 3, manifestDigest: app.manifestDigest })
    const detail = await Image.inspect('localhost/test/app:v1')
    expect(detail.layers.map((l) => l.blobDigest)).toEqual(app.layers.map((l) => l.digest))
    await expectConsistent()
  })

  test('gzip-compressed docker archive (docker save | gzip) loads like the plain one', async () => {
    const gz = await Image.load(files.dockerGz)
    expectHandle(gz[0], { reference: 'localhost/test/app:v1', layerCount: 3 })
    expect((await Image.inspect('localhost/test/app:v1')).layers.map((l) => l.diffId)).toEqual(app.diffIds)
    // The docker manifest is synthesized deterministically: the plain archive gives the same digest.
    const plain = await Image.load(files.docker)
    expect(plain[0].manifestDigest).toBe(gz[0].manifestDigest)
    expect(readIndex(cache.home).manifests).toHaveLength(1)
    await expectConsistent()
  })

  test('zstd-compressed docker archive', async () => {
    const handles = await Image.load(files.dockerZst)
    expectHandle(handles[0], { reference: 'localhost/test/app:v1', layerCount: 3 })
    expect((await Image.inspect('localhost/test/app:v1')).config!.digest).toBe(app.configDigest)
    await expectConsistent()
  })

  test('docker archive holding two images loads both', async () => {
    const handles = await Image.load(files.multiDocker)
    expect(handles.map((h) => h.reference).sort()).toEqual(['localhost/test/app:v1', 'localhost/test/other:v2'])
    const list = await Image.list()
    expect(list.map((h) => h.reference)).toEqual(['localhost/test/app:v1', 'localhost/test/other:v2'])
    expect((await Image.inspect('localhost/test/app:v1')).config!.digest).toBe(app.configDigest)
    expect((await Image.inspect('localhost/test/other:v2')).config!.digest).toBe(other.configDigest)
    expect((await Image.inspect('localhost/test/other:v2')).layers.map((l) => l.diffId)).toEqual(other.diffIds)
    expect(readIndex(cache.home).manifests).toHaveLength(2)
    await expectConsistent()
  })

  test('a layout naming its image by a bare tag (ref.name "latest") needs { tag }', async () => {
    const dir = await makeTempDir('msb-bare-tag-')
    try {
      await toOciDir(app, dir, 'latest')
      const err = await rejectionOf(Image.load(dir))
      expect(err).toBeInstanceOf(ImageArchiveError)
      expect(err.code).toBe('image_archive')
      expect(await Image.list()).toEqual([])
      const [h] = await Image.load(dir, { tag: 'localhost/test/app:tagged' })
      expect(h.reference).toBe('localhost/test/app:tagged')
      expect(h.manifestDigest).toBe(app.manifestDigest)
    } finally {
      await fsp.rm(dir, { recursive: true, force: true })
    }
  })

  test('a layout naming its image with io.containerd.image.name (as docker and containerd export) loads under that name', async () => {
    const dir = await makeTempDir('msb-containerd-name-')
    try {
      await toOciDir(app, dir, '3.12')
      const index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8'))
      index.manifests[0].annotations['io.containerd.image.name'] = 'docker.io/library/python:3.12'
      await fsp.writeFile(path.join(dir, 'index.json'), JSON.stringify(index))
      const handles = await Image.load(dir)
      expect(handles.map((h) => h.reference)).toEqual(['docker.io/library/python:3.12'])
      expect((await Image.get('python:3.12')).manifestDigest).toBe(app.manifestDigest)
    } finally {
      await fsp.rm(dir, { recursive: true, force: true })
    }
  })

  test('two tags of one image share one manifest', async () => {
    const handles = await Image.load(files.dockerTwoTags)
    expect(handles.map((h) => h.reference).sort()).toEqual(['localhost/test/app:stable', 'localhost/test/app:v1'])
    expect(handles[0].manifestDigest).toBe(handles[1].manifestDigest)
    const state = readIndex(cache.home)
    expect(state.manifests).toHaveLength(1)
    expect(state.refs).toHaveLength(2)
    expect(state.layers).toHaveLength(app.diffIds.length)
    // And a second layout name for the same manifest, loaded later, adds a ref only.
    const named = await makeTempDir('msb-named-')
    try {
      await toOciDir(app, named, 'localhost/test/app:v1')
      await toOciDir(app, named, 'localhost/test/app:rc')
      const more = await Image.load(named)
      expect(more.map((h) => h.reference).sort()).toEqual(['localhost/test/app:rc', 'localhost/test/app:v1'])
      expect(more[0].manifestDigest).toBe(more[1].manifestDigest)
      expect(more[0].manifestDigest).toBe(app.manifestDigest)
    } finally {
      await fsp.rm(named, { recursive: true, force: true })
    }
    await expectConsistent()
  })
})

describe('multi-platform OCI index', () => {
  const hostImage = (): BuiltImage => (HOST_ARCH === 'arm64' ? arm : app)
  for (const kind of ['flatIndex', 'nestedIndex'] as const) {
    test(`${kind}: picks the host platform by default`, async () => {
      const handles = await Image.load(files[kind])
      expect(handles).toHaveLength(1)
      expectHandle(handles[0], {
        reference: 'localhost/test/multi:v1',
        layerCount: hostImage().layers.length,
        architecture: HOST_ARCH,
        manifestDigest: hostImage().manifestDigest,
      })
      await expectConsistent()
    })

    test(`${kind}: platform option picks another platform`, async () => {
      const wantArm = HOST_ARCH !== 'arm64'
      const image = wantArm ? arm : app
      const handles = await Image.load(files[kind], { platform: wantArm ? 'linux/arm64' : 'linux/amd64' })
      expectHandle(handles[0], { reference: 'localhost/test/multi:v1', layerCount: image.layers.length, architecture: wantArm ? 'arm64' : 'amd64', manifestDigest: image.manifestDigest })
      expect((await Image.inspect('localhost/test/multi:v1')).config!.digest).toBe(image.configDigest)
      await expectConsistent()
    })
  }

  test('a platform the index lacks is refused and nothing is added', async () => {
    const err = await rejectionOf(Image.load(files.flatIndex, { platform: 'linux/s390x' }))
    expect(err).toBeInstanceOf(ImageArchiveError)
    expect(err.code).toBe('image_archive')
    expect(await Image.list()).toEqual([])
    expect(await artifactTree(cache.home)).toEqual(new Map())
  })

  test('a malformed platform is an InvalidArgumentError', async () => {
    for (const platform of ['linux', 'linux//v8', '', 'a/b/c/d']) {
      const err = await rejectionOf(Image.load(files.flatIndex, { platform }))
      expect(err).toBeInstanceOf(InvalidArgumentError)
      expect(err.code).toBe('invalid_argument')
    }
    expect(await Image.list()).toEqual([])
  })
})

describe('layer compression', () => {
  let layouts: Record<string, BuiltImage>
  beforeAll(async () => {
    layouts = {
      zstd: await recompressImage(app, path.join(work, 'app-zstd'), 'zstd'),
      none: await recompressImage(app, path.join(work, 'app-none'), 'none'),
      mixed: await recompressImage(app, path.join(work, 'app-mixed'), ['zstd', 'none', 'gzip']),
    }
  })

  for (const kind of ['zstd', 'none', 'mixed'] as const) {
    test(`${kind} layers load with their blobs and the config's diff_ids`, async () => {
      const img = layouts[kind]
      const [h] = await Image.load(img.layout)
      expectHandle(h, { reference: 'localhost/test/app:v1', layerCount: 3, manifestDigest: img.manifestDigest })
      const detail = await Image.inspect('localhost/test/app:v1')
      expect(detail.layers.map((l) => l.diffId)).toEqual(app.diffIds)
      expect(detail.layers.map((l) => l.blobDigest)).toEqual(img.layers.map((l) => l.digest))
      expect(detail.layers.map((l) => l.mediaType)).toEqual(img.layers.map((l) => l.mediaType))
      expect(detail.layers.map((l) => l.compressedSizeBytes)).toEqual(img.layers.map((l) => l.size))
      for (const l of detail.layers) expect(l.erofsSizeBytes).toBeGreaterThan(0)
      await expectConsistent()
    })
  }

  test('the same layers in gzip, zstd and plain tar share one EROFS image per diff_id', async () => {
    await Image.load(app.layout)
    const gzipLayers = new Map([...(await artifactTree(cache.home))].filter(([k]) => k.startsWith('layers/')))
    await Image.load(layouts.zstd.layout, { tag: 'localhost/test/app:zstd' })
    await Image.load(layouts.none.layout, { tag: 'localhost/test/app:none' })
    const state = readIndex(cache.home)
    expect(state.manifests).toHaveLength(3)
    expect(state.layers.map((l) => l.diff_id).sort()).toEqual([...app.diffIds].sort())
    const layerFiles = new Map([...(await artifactTree(cache.home))].filter(([k]) => k.startsWith('layers/')))
    // Still the very files the first load wrote: not rebuilt, not duplicated.
    expect([...layerFiles.keys()].sort()).toEqual([...gzipLayers.keys()].sort())
    for (const [k, v] of layerFiles) expect(v.ino).toBe(gzipLayers.get(k)!.ino)
    await expectConsistent()
  })

  test('the root disk of every variant holds the merged filesystem umoci unpacks', async () => {
    const expected = await describeTree(await unpackRootfs(app, path.join(cache.home, '..', 'unpack')))
    const variants: Array<[string, string, string | undefined]> = [
      ['docker', files.docker, undefined],
      ['gzip', app.layout, 'localhost/test/app:gzip'],
      ['zstd', layouts.zstd.layout, 'localhost/test/app:zstd'],
      ['mixed', layouts.mixed.layout, 'localhost/test/app:mixed'],
    ]
    for (const [name, source, tag] of variants) {
      const [h] = await Image.load(source, tag ? { tag } : undefined)
      const boot = await Image.acquire(h.reference, { sandbox: `sb-${name}` })
      const out = await extractRootDisk(boot.fsmetaPath, boot.layers, path.join(cache.home, '..', `extract-${name}`))
      expect({ variant: name, tree: await describeTree(out) }).toEqual({ variant: name, tree: expected })
    }
  })
})

describe('layer filesystem edge cases', () => {
  test('the root disk holds exactly what umoci unpacks, for a docker archive and an OCI layout', async () => {
    const edge = await buildImage(path.join(work, 'edge'), { layers: edgeLayers(), refs: ['localhost/test/edge:v1'] })
    const expected = await describeTree(await unpackRootfs(edge, path.join(cache.home, '..', 'edge-unpack')))
    // Sanity of the expectation itself: the type change and the deletions happened.
    const byPath = new Map(expected.map((e) => [e.path, e]))
    expect(byPath.get('file-to-dir')?.type).toBe('dir')
    expect(byPath.has('deleted-dir')).toBe(false)
    expect(byPath.has('many/f299')).toBe(false)
    expect(byPath.get('suid')?.mode).toBe(0o4755)
    expect(byPath.get('sticky')?.mode).toBe(0o1777)
    const docker = await toDockerArchive(edge, path.join(work, 'edge.docker.tar'))
    for (const [name, source] of [['oci', edge.layout], ['docker', docker]] as const) {
      const [h] = await Image.load(source, { tag: `localhost/test/edge:${name}` })
      const boot = await Image.acquire(h.reference, { sandbox: `edge-${name}` })
      const out = await extractRootDisk(boot.fsmetaPath, boot.layers, path.join(cache.home, '..', `edge-extract-${name}`))
      // fsck.erofs --extract cannot restore setuid/setgid: compare without, then read the inode itself.
      expect({ source: name, tree: withoutSetid(await describeTree(out)) }).toEqual({ source: name, tree: withoutSetid(expected) })
      expect((await erofsMode(boot.fsmetaPath, '/suid', boot.layers)).toString(8)).toBe((0o104755).toString(8))
      if (name === 'docker') {
        // The reader that matters: the kernel mounts the VMDK and sees the same tree, setuid included.
        // (Directory mtimes are left out: umoci keeps a lower layer's, Docker the topmost entry's.)
        const noDirMtime = (es: ManifestEntry[]) => es.map((e) => (e.type === 'dir' ? { ...e, mtime: 0 } : e))
        const guest = await bootAndManifest(boot.vmdkPath, { format: 'vmdk' })
        expect(noDirMtime(guest)).toEqual(noDirMtime(await manifestOfDir(path.join(cache.home, '..', 'edge-unpack', 'rootfs'))))
        expect(guest.find((e) => e.path === 'suid')).toMatchObject({ mode: 0o4755 })
      }
    }
    expect(await fsckProblems(cache.home)).toEqual([])
  })

  test('a directory replaced by a file in a later layer is that file (umoci writes `x` then `x/.wh.child`)', async () => {
    const img = await buildImage(path.join(work, 'dir-to-file'), { layers: dirToFileLayers(), refs: ['localhost/test/dir-to-file:v1'] })
    const unpacked = await describeTree(await unpackRootfs(img, path.join(cache.home, '..', 'd2f-unpack')))
    expect(unpacked.find((e) => e.path === 'dir-to-file')).toEqual(expect.objectContaining({ type: 'file', size: 11 }))
    const [h] = await Image.load(img.layout)
    const boot = await Image.acquire(h.reference, { sandbox: 'd2f' })
    // What the kernel sees when it mounts the root disk:
    const guest = await bootAndManifest(boot.vmdkPath, { format: 'vmdk' })
    expect(guest.find((e) => e.path === 'dir-to-file')).toEqual(expect.objectContaining({ type: 'file', size: 11 }))
    const out = await extractRootDisk(boot.fsmetaPath, boot.layers, path.join(cache.home, '..', 'd2f-extract'))
    expect(await describeTree(out)).toEqual(unpacked)
  })
})

describe('ImageHandle', () => {
  test('references are normalized: python:3.12 and docker.io/library/python:3.12 name one image', async () => {
    const [h] = await Image.load(files.bareDocker, { tag: 'python:3.12' })
    expect(h.reference).toBe('docker.io/library/python:3.12')
    const a = await Image.get('python:3.12')
    const b = await Image.get('docker.io/library/python:3.12')
    const c = await Image.get('index.docker.io/library/python:3.12')
    for (const x of [a, b, c]) {
      expect(x.reference).toBe('docker.io/library/python:3.12')
      expect(x.manifestDigest).toBe(h.manifestDigest)
    }
    expect((await Image.inspect('python:3.12')).handle.reference).toBe('docker.io/library/python:3.12')
    expect((await Image.list()).map((x) => x.reference)).toEqual(['docker.io/library/python:3.12'])
    // A bare name means :latest, which is not cached.
    const err = await rejectionOf(Image.get('python'))
    expect(err).toBeInstanceOf(ImageNotFoundError)
    expect(err.code).toBe('image_not_found')
    expect(err.reference).toBe('python')
  })

  test('a tag option renames the single image of the archive', async () => {
    const handles = await Image.load(files.docker, { tag: 'localhost/renamed:1' })
    expect(handles.map((h) => h.reference)).toEqual(['localhost/renamed:1'])
    expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/renamed:1'])
  })

  test('sizeBytes is what the image occupies in the cache', async () => {
    const [h] = await Image.load(app.layout)
    const expected = await footprintOf(cache.home, { manifest: app.manifestDigest, config: app.configDigest, diffIds: app.diffIds })
    expect(h.sizeBytes).toBe(expected)
    expect((await Image.get('localhost/test/app:v1')).sizeBytes).toBe(expected)
  })

  test('is a class instance with read-only properties', async () => {
    const [h] = await Image.load(app.layout)
    expect(typeof ImageHandle).toBe('function')
    expect(h).toBeInstanceOf(ImageHandle)
    const snapshot = h.toJSON()
    const props = ['reference', 'sizeBytes', 'manifestDigest', 'architecture', 'os', 'layerCount', 'lastUsedAt', 'createdAt'] as const
    for (const p of props) {
      try {
        ;(h as unknown as Record<string, unknown>)[p] = p === 'layerCount' ? 99 : 'changed'
      } catch {
        // Strict-mode assignment to a getter-only property throws: also read-only.
      }
    }
    expect(h.toJSON()).toEqual(snapshot)
    expect(h.reference).toBe('localhost/test/app:v1')
    expect(h.layerCount).toBe(3)
    // JSON and a plain copy show the properties.
    const json = JSON.parse(JSON.stringify(h))
    expect(json.reference).toBe('localhost/test/app:v1')
    expect(json.manifestDigest).toBe(app.manifestDigest)
    expect(json.layerCount).toBe(3)
  })

  test('lastUsedAt stays null through load/get/list/inspect and is set by acquire', async () => {
    await Image.load(app.layout)
    expect((await Image.get('localhost/test/app:v1')).lastUsedAt).toBeNull()
    expect((await Image.list())[0].lastUsedAt).toBeNull()
    expect((await Image.inspect('localhost/test/app:v1')).handle.lastUsedAt).toBeNull()
    await Image.load(app.layout)
    expect((await Image.get('localhost/test/app:v1')).lastUsedAt).toBeNull()
    const before = Date.now()
    await Image.acquire('localhost/test/app:v1', { sandbox: 'sb1' })
    const after = Date.now()
    const used = (await Image.get('localhost/test/app:v1')).lastUsedAt
    expect(isDate(used)).toBe(true)
    expect(used!.getTime()).toBeGreaterThanOrEqual(before)
    expect(used!.getTime()).toBeLessThanOrEqual(after)
  })

  test('digest references find the image', async () => {
    await Image.load(app.layout)
    const byDigest = await Image.get(`localhost/test/app@${app.manifestDigest}`)
    expect(byDigest.manifestDigest).toBe(app.manifestDigest)
    expect(byDigest.reference).toBe(`localhost/test/app@${app.manifestDigest}`)
    const tagged = await Image.get(`localhost/test/app:v1@${app.manifestDigest}`)
    expect(tagged.manifestDigest).toBe(app.manifestDigest)
    const detail = await Image.inspect(`localhost/test/app@${app.manifestDigest}`)
    expect(detail.config!.digest).toBe(app.configDigest)
    // Another digest, or the digest under another repository, is not found.
    for (const ref of [`localhost/test/app@${sha256('nope')}`, `localhost/test/elsewhere@${app.manifestDigest}`]) {
      const err = await rejectionOf(Image.get(ref))
      expect(err).toBeInstanceOf(ImageNotFoundError)
      expect(err.reference).toBe(ref)
    }
  })

  test('list is sorted by reference', async () => {
    await Image.load(files.multiDocker)
    await Image.load(files.bareDocker)
    await Image.load(files.bareDocker, { tag: 'aaa/first:1' })
    const refs = (await Image.list()).map((h) => h.reference)
    expect(refs).toEqual(['docker.io/aaa/first:1', 'localhost/test/app:v1', 'localhost/test/bare:v1', 'localhost/test/other:v2'])
  })
})

describe('Image.inspect', () => {
  test('reports every config field the image sets', async () => {
    await Image.load(files.docker)
    const detail = await Image.inspect('localhost/test/app:v1')
    expect(detail.config).toEqual({
      digest: app.configDigest,
      env: APP_CONFIG.env,
      cmd: APP_CONFIG.cmd,
      entrypoint: APP_CONFIG.entrypoint,
      workingDir: APP_CONFIG.workingDir,
      user: APP_CONFIG.user,
      labels: APP_CONFIG.labels,
      stopSignal: APP_CONFIG.stopSignal,
    })
    // And they are what the config blob says (umoci wrote it).
    const c = app.config.config as Record<string, unknown>
    expect(detail.config!.env).toEqual(c.Env)
    expect(detail.config!.cmd).toEqual(c.Cmd)
    expect(detail.config!.entrypoint).toEqual(c.Entrypoint)
    expect(detail.handle).toBeInstanceOf(ImageHandle)
    expect(detail.handle.reference).toBe('localhost/test/app:v1')
  })

  test('reports nulls (and an empty env) for fields the image leaves unset', async () => {
    await Image.load(files.bareDocker)
    const detail = await Image.inspect('localhost/test/bare:v1')
    expect(detail.config).toEqual({
      digest: bare.configDigest,
      env: [],
      cmd: null,
      entrypoint: null,
      workingDir: null,
      user: null,
      labels: null,
      stopSignal: null,
    })
  })

  test('layers run bottom to top, position 0 at the bottom, diffIds as in the config', async () => {
    await Image.load(app.layout)
    const detail = await Image.inspect('localhost/test/app:v1')
    expect(detail.layers.map((l) => l.position)).toEqual([0, 1, 2])
    expect(detail.layers.map((l) => l.diffId)).toEqual(app.config.rootfs.diff_ids)
    expect(detail.layers.map((l) => l.blobDigest)).toEqual(app.manifest.layers.map((l) => l.digest))
    for (const [i, l] of detail.layers.entries()) {
      expect(l.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip')
      expect(l.compressedSizeBytes).toBe(app.layers[i].size)
      const erofs = path.join(cache.home, 'layers', 'sha256', `${hexOf(l.diffId)}.erofs`)
      expect(l.erofsSizeBytes).toBe((await fsp.stat(erofs)).size)
      expect(l.erofsSizeBytes).toBeGreaterThan(0)
    }
    // The bottom layer is the one that creates etc/os-release; the top is the opaque /opt/data.
    const bottom = await run('sh', ['-c', 'gzip -dc "$0" | tar -t', path.join(app.layout, 'blobs', 'sha256', hexOf(detail.layers[0].blobDigest))])
    expect(bottom.stdout).toContain('etc/os-release')
    const top = await run('sh', ['-c', 'gzip -dc "$0" | tar -t', path.join(app.layout, 'blobs', 'sha256', hexOf(detail.layers[2].blobDigest))])
    expect(top.stdout).toContain('.wh..wh..opq')
  })

  test('inspect and get of an absent image reject with ImageNotFoundError', async () => {
    for (const call of [() => Image.inspect('localhost/none:1'), () => Image.get('localhost/none:1')]) {
      const err = await rejectionOf(call())
      expect(err).toBeInstanceOf(ImageNotFoundError)
      expect(err.code).toBe('image_not_found')
      expect(err.reference).toBe('localhost/none:1')
    }
  })
})
