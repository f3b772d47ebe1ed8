/**
 * Every bad input the Image API must refuse, and how: the exported error
 * class (`instanceof`), `err.code`, the error's fields, and a cache left
 * exactly as it was — the index lists the same images, no file appears in
 * (or vanishes from) blobs/layers/fsmeta/vmdk, nothing stays in tmp/, every
 * artifact file is still named by the index, and the process lives on.
 *
 * Each test starts from a cache holding `base` (the two bottom layers of
 * `app`), so a failing load of `app` would have new layers to leave behind
 * and old ones to wrongly take away.
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'
import * as zlib from 'zlib'

import {
  DigestMismatchError,
  Image,
  ImageArchiveError,
  InvalidArgumentError,
  InvalidLayerError,
  InvalidReferenceError,
  MicrosandboxError,
  UnsupportedError,
} from '..'
import {
  BuiltImage,
  blobPath,
  buildImage,
  copyLayout,
  corruptLayerBlob,
  editImage,
  flipByte,
  gzipFile,
  makeTempDir,
  notAnArchive,
  readImage,
  requireTools,
  sampleLayers,
  sha256,
  toDockerArchive,
  toOciArchive,
  truncateFile,
  writeBlob,
  hexOf,
  dockerManifest,
  craftTar,
  blobSymlinkedOutside,
  configNotJson,
  corruptDiffId,
  corruptIndexSize,
  corruptLayerSize,
  indexNotJson,
  manifestNotJson,
  withExtraMembers,
  withMemberReplaced,
  withSymlinkRetargeted,
} from './support/images'
import {
  ChildResult,
  FileInfo,
  PACKAGE_ROOT,
  Rejection,
  artifactTree,
  childEnv,
  consistencyProblems,
  freshHome,
  readIndex,
  rejectionOf,
  runNodeScript,
  setEnv,
  tmpFiles,
  tree,
} from './support/cache'

let work: string
let app: BuiltImage
let base: BuiltImage
let appDocker: string
let baseDocker: string

beforeAll(async () => {
  requireTools()
  work = await makeTempDir('msb-errors-')
  app = await buildImage(path.join(work, 'app'), {
    layers: [
      ...sampleLayers('app'),
      { entries: [{ type: 'file', path: 'srv/new-in-app.bin', content: Buffer.alloc(200_000, 7) }] },
      { entries: [{ type: 'file', path: 'srv/top.txt', content: 'top layer\n' }] },
    ],
    config: { cmd: ['app'] },
    refs: ['localhost/test/app:v1'],
  })
  // base = the two bottom layers of app, as its own image.
  base = await copyLayout(app.layout, path.join(work, 'base')).then(() =>
    editImage(path.join(work, 'base'), 'localhost/test/app:v1', {
      config: (c) => ({ ...c, rootfs: { type: 'layers', diff_ids: c.rootfs.diff_ids.slice(0, 2) }, history: [] }),
      manifest: (m) => ({ ...m, layers: m.layers.slice(0, 2) }),
    }),
  )
  const baseIndex = path.join(work, 'base', 'index.json')
  await fsp.writeFile(baseIndex, (await fsp.readFile(baseIndex, 'utf8')).replace('localhost/test/app:v1', 'localhost/test/base:v1'))
  base = await readImage(path.join(work, 'base'))
  appDocker = await toDockerArchive(app, path.join(work, 'app.docker.tar'))
  baseDocker = await toDockerArchive(base, path.join(work, 'base.docker.tar'))
}, 120_000)

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

let home: string
let cleanup: () => Promise<void>
beforeEach(async () => {
  const h = await freshHome()
  home = h.home
  cleanup = h.cleanup
  await Image.load(baseDocker)
})
afterEach(async () => {
  setEnv('MSB_BACKEND', undefined)
  await cleanup()
})

let caseNo = 0
/** A fresh path in the work dir for one corrupt input. */
function scratch(name: string): string {
  return path.join(work, `case-${++caseNo}-${name}`)
}

/** A copy of app's OCI layout to corrupt. */
async function appCopy(): Promise<string> {
  return copyLayout(app.layout, scratch('layout'))
}

function sameTree(a: Map<string, FileInfo>, b: Map<string, FileInfo>): void {
  const show = (m: Map<string, FileInfo>) => [...m].map(([k, v]) => `${k} ${v.size} ${v.ino}`).sort()
  expect(show(b)).toEqual(show(a))
}

/**
 * Runs `call`, which must reject with `cls`/`code`, and checks the cache
 * is untouched: same references, same artifact files (same inodes), empty
 * tmp/, consistent index.
 */
async function expectCleanFailure(call: () => Promise<unknown>, cls: unknown, code: string): Promise<Rejection> {
  const refs = (await Image.list()).map((h) => `${h.reference} ${h.manifestDigest}`)
  const before = await artifactTree(home)
  const err = await rejectionOf(call())
  expect({ name: err.constructor.name, code: err.code, message: err.message }).toEqual({ name: (cls as { name: string }).name, code, message: expect.any(String) })
  expect(err).toBeInstanceOf(cls as new () => unknown)
  expect(err).toBeInstanceOf(MicrosandboxError)
  expect((await Image.list()).map((h) => `${h.reference} ${h.manifestDigest}`)).toEqual(refs)
  sameTree(before, await artifactTree(home))
  expect(await tmpFiles(home)).toEqual([])
  expect(await consistencyProblems(home)).toEqual([])
  return err
}

async function expectArchiveError(file: string, opts?: { tag?: string; platform?: string }): Promise<Rejection> {
  const err = await expectCleanFailure(() => Image.load(file, opts), ImageArchiveError, 'image_archive')
  expect(err.path).toBe(file)
  return err
}

async function expectDigestMismatch(file: string, expected?: string): Promise<Rejection> {
  const err = await expectCleanFailure(() => Image.load(file), DigestMismatchError, 'digest_mismatch')
  expect(typeof err.expected).toBe('string')
  expect(typeof err.actual).toBe('string')
  expect(err.expected).not.toBe(err.actual)
  if (expected) expect(err.expected).toContain(expected)
  return err
}

describe('malformed references → InvalidReferenceError', () => {
  const bad = [
    '',
    'UPPER/case:1',
    'a//b',
    'a/',
    ':tag',
    'a:',
    'a:ta g',
    'a b',
    '-lead',
    'a@sha256:abc',
    'a@md5:0123456789abcdef0123456789abcdef',
    'localhost:port/a',
    'f'.repeat(64),
    `a:${'t'.repeat(129)}`,
    'a'.repeat(300),
  ]
  test.each(bad.map((b) => [JSON.stringify(b), b]))('%s is refused by get, inspect, remove, acquire, pinSnapshot, save and load{tag}', async (_label, ref) => {
    const calls: Array<() => Promise<unknown>> = [
      () => Image.get(ref),
      () => Image.inspect(ref),
      () => Image.remove(ref),
      () => Image.remove(ref, { force: true }),
      () => Image.acquire(ref, { sandbox: 'sb' }),
      () => Image.pinSnapshot('snap', ref),
      () => Image.save(ref, { outputPath: path.join(home, '..', 'out.tar') }),
      () => Image.load(appDocker, { tag: ref }),
    ]
    for (const call of calls) {
      const err = await expectCleanFailure(call, InvalidReferenceError, 'invalid_reference')
      expect(err.reference).toBe(ref)
    }
    expect(fs.existsSync(path.join(home, '..', 'out.tar'))).toBe(false)
    expect(readIndex(home).sandboxes).toEqual([])
    expect(readIndex(home).snapshots).toEqual([])
  })
})

describe('unreadable or malformed archives → ImageArchiveError', () => {
  test('a path that does not exist', async () => {
    await expectArchiveError(path.join(work, 'no-such-archive.tar'))
  })

  test('a file that is not an archive', async () => {
    await expectArchiveError(await notAnArchive(scratch('text.txt')))
  })

  test('an empty file', async () => {
    const f = scratch('empty.tar')
    await fsp.writeFile(f, '')
    await expectArchiveError(f)
  })

  test('random bytes', async () => {
    const f = scratch('random.bin')
    await fsp.writeFile(f, Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7919 + 13) & 0xff)))
    await expectArchiveError(f)
  })

  test('an empty directory (not an OCI layout)', async () => {
    const d = scratch('emptydir')
    await fsp.mkdir(d)
    await expectArchiveError(d)
  })

  test('a truncated docker archive', async () => {
    const f = scratch('trunc.tar')
    await fsp.copyFile(appDocker, f)
    await expectArchiveError(await truncateFile(f))
  })

  test('a docker archive truncated inside a layer member', async () => {
    // Cut in the middle of the largest member's data, so the index of members still reads.
    const f = scratch('trunc-layer.tar')
    await fsp.copyFile(appDocker, f)
    const size = (await fsp.stat(f)).size
    await truncateFile(f, size - 150_000)
    const err = await rejectionOf(Image.load(f))
    expect(err).toBeInstanceOf(ImageArchiveError)
    expect(err.code).toBe('image_archive')
    expect(err.path).toBe(f)
    expect(await tmpFiles(home)).toEqual([])
    expect(await consistencyProblems(home)).toEqual([])
  })

  test('a truncated oci-archive', async () => {
    const f = await toOciArchive(app, scratch('oci.tar'))
    await expectArchiveError(await truncateFile(f))
  })

  test('a truncated gzip-compressed docker archive', async () => {
    const gz = await gzipFile(appDocker, scratch('app.tar.gz'))
    await expectArchiveError(await truncateFile(gz))
  })

  test('a gzip-compressed docker archive with a corrupt byte', async () => {
    const gz = await gzipFile(appDocker, scratch('app.tar.gz'))
    await flipByte(gz, Math.floor((await fsp.stat(gz)).size / 2))
    await expectArchiveError(gz)
  })

  test('docker archive whose manifest.json is not JSON', async () => {
    const f = await withMemberReplaced(appDocker, scratch('badmanifest.tar'), 'manifest.json', (m) => ({ name: m.name, content: '[{"Config": "x", "Layers": [' }))
    await expectArchiveError(f)
  })

  test('docker archive whose config is not JSON', async () => {
    const entry = (await dockerManifest(appDocker))[0]
    const renamed = await withMemberReplaced(appDocker, scratch('badconfig-1.tar'), 'manifest.json', (m) => ({ name: m.name, content: JSON.stringify([{ ...entry, Config: 'config.json' }]) }))
    const f = await withExtraMembers(renamed, scratch('badconfig.tar'), [{ name: 'config.json', content: 'this is { not json' }])
    await expectArchiveError(f)
  })

  test('docker archive naming a layer it does not contain', async () => {
    const entry = (await dockerManifest(appDocker))[0]
    const f = await withMemberReplaced(appDocker, scratch('missinglayer.tar'), 'manifest.json', (m) => ({
      name: m.name,
      content: JSON.stringify([{ ...entry, Layers: [...entry.Layers.slice(0, 3), `${'e'.repeat(64)}.tar`] }]),
    }))
    await expectArchiveError(f)
  })

  test('OCI layout whose index.json is not JSON', async () => {
    const d = await appCopy()
    await indexNotJson(d)
    await expectArchiveError(d)
  })

  test('OCI layout whose manifest is not JSON', async () => {
    const d = await appCopy()
    await manifestNotJson(d, 'localhost/test/app:v1')
    await expectArchiveError(d)
  })

  test('OCI layout whose config is not JSON', async () => {
    const d = await appCopy()
    await configNotJson(d, 'localhost/test/app:v1')
    await expectArchiveError(d)
  })

  test('OCI layout missing a layer blob', async () => {
    const d = await appCopy()
    await fsp.rm(blobPath(d, app.layers[3].digest))
    await expectArchiveError(d)
  })

  test('OCI layout missing its manifest blob', async () => {
    const d = await appCopy()
    await fsp.rm(blobPath(d, app.manifestDigest))
    await expectArchiveError(d)
  })

  test('OCI layout whose only image has no name, loaded without a tag', async () => {
    const d = await appCopy()
    const index = JSON.parse(await fsp.readFile(path.join(d, 'index.json'), 'utf8'))
    delete index.manifests[0].annotations
    await fsp.writeFile(path.join(d, 'index.json'), JSON.stringify(index))
    await expectArchiveError(d)
  })
})

describe('unsafe archive members → ImageArchiveError', () => {
  test('a member named with ..', async () => {
    const f = await withExtraMembers(appDocker, scratch('dotdot.tar'), [{ name: '../escaped.txt', content: 'x' }])
    await expectArchiveError(f)
  })

  test('a member named with .. in the middle', async () => {
    const f = await withExtraMembers(appDocker, scratch('dotdot-mid.tar'), [{ name: 'blobs/../../escaped.txt', content: 'x' }])
    await expectArchiveError(f)
  })

  test('a member with an absolute path', async () => {
    const f = await withExtraMembers(appDocker, scratch('absolute.tar'), [{ name: '/tmp/absolute.txt', content: 'x' }])
    await expectArchiveError(f)
  })

  test('a layer symlink member pointing outside the archive', async () => {
    // skopeo's docker archives carry `<id>/layer.tar -> ../<diff_id>.tar`; point one outside.
    const f = await withSymlinkRetargeted(appDocker, scratch('symlink-out.tar'), '../../../../../etc/passwd')
    await expectArchiveError(f)
  })

  test('a symlink member with an absolute target', async () => {
    const f = await withExtraMembers(appDocker, scratch('symlink-abs.tar'), [{ name: 'passwd', symlink: '/etc/passwd' }])
    await expectArchiveError(f)
  })

  test('a hard link member pointing outside the archive', async () => {
    const f = await withExtraMembers(appDocker, scratch('hardlink-out.tar'), [{ name: 'shadow', hardlink: '../etc/shadow' }])
    await expectArchiveError(f)
  })

  test('an oci-archive whose layer blob is a symlink to a host file', async () => {
    const oci = await toOciArchive(app, scratch('oci.tar'))
    const f = await withMemberReplaced(oci, scratch('oci-symlink.tar'), `blobs/sha256/${hexOf(app.layers[3].digest)}`, (m) => ({ name: m.name, symlink: '/etc/hostname' }))
    await expectArchiveError(f)
  })

  test('an OCI layout directory whose blob is a symlink leading outside it (even to the right bytes)', async () => {
    const d = await appCopy()
    await blobSymlinkedOutside(d, app.layers[3].digest, scratch('outside-blob'))
    await expectArchiveError(d)
  })
})

describe('content that does not match its digest → DigestMismatchError', () => {
  test('a layer blob with a flipped byte that still decompresses (gzip header MTIME)', async () => {
    const d = await appCopy()
    await corruptLayerBlob(await readImage(d), 3, 'gzip-header')
    await expectDigestMismatch(d, app.layers[3].digest)
  })

  test("a layer blob with a flipped byte in the compressed data (the gzip CRC breaks before the digest is checked)", async () => {
    const d = await appCopy()
    await corruptLayerBlob(await readImage(d), 2, 'middle')
    await expectDigestMismatch(d, app.layers[2].digest)
  })

  test('an uncompressed docker-archive layer with a flipped content byte', async () => {
    const entry = (await dockerManifest(appDocker))[0]
    const f = await withMemberReplaced(appDocker, scratch('flipped.tar'), entry.Layers[2], (m) => {
      const data = Buffer.from(m.content!)
      // 200 000 bytes of 0x07 follow the first header: flip one in the middle of the file data.
      data[100_000] ^= 0xff
      return { name: m.name, content: data }
    })
    await expectDigestMismatch(f, app.diffIds[2])
  })

  test('a layer descriptor with the wrong size', async () => {
    for (const delta of [1, -1]) {
      const d = await appCopy()
      await corruptLayerSize(d, 'localhost/test/app:v1', 3, delta)
      await expectDigestMismatch(d)
    }
  })

  test('a manifest descriptor in index.json with the wrong size', async () => {
    const d = await appCopy()
    await corruptIndexSize(d, 3)
    await expectDigestMismatch(d)
  })

  test('a manifest blob changed in place (digest no longer matches)', async () => {
    const d = await appCopy()
    const file = blobPath(d, app.manifestDigest)
    const text = await fsp.readFile(file, 'utf8')
    // Same size, still JSON, one key renamed: only the digest tells.
    expect(text).toContain('"mediaType"')
    await fsp.writeFile(file, text.replace('"mediaType"', '"mediaTypf"'))
    await expectDigestMismatch(d, app.manifestDigest)
  })

  test('a config blob changed in place', async () => {
    const d = await appCopy()
    const file = blobPath(d, app.configDigest)
    const cfg = await fsp.readFile(file, 'utf8')
    await fsp.writeFile(file, cfg.replace('"app"', '"ppa"'))
    await expectDigestMismatch(d, app.configDigest)
  })

  test('a config whose diff_id does not match the layer', async () => {
    const d = await appCopy()
    const wrong = sha256('some other layer')
    await corruptDiffId(d, 'localhost/test/app:v1', 3, wrong)
    const err = await expectDigestMismatch(d, wrong)
    expect(err.message).toContain(app.layers[3].digest)
  })

  test('a docker archive whose config member does not hash to its name', async () => {
    const entry = (await dockerManifest(appDocker))[0]
    const f = await withMemberReplaced(appDocker, scratch('config-renamed.tar'), entry.Config, (m) => ({ name: m.name, content: m.content!.toString().replace('"app"', '"ppa"') }))
    await expectDigestMismatch(f, app.configDigest)
  })
})

describe('layers that cannot become a filesystem → InvalidLayerError', () => {
  async function withTopLayer(tarBytes: Buffer): Promise<string> {
    const d = await appCopy()
    const blob = await writeBlob(d, zlib.gzipSync(tarBytes))
    await editImage(d, 'localhost/test/app:v1', {
      config: (c) => ({ ...c, rootfs: { ...c.rootfs, diff_ids: [...c.rootfs.diff_ids.slice(0, 3), sha256(tarBytes)] } }),
      manifest: (m) => ({ ...m, layers: [...m.layers.slice(0, 3), { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: blob.digest, size: blob.size }] }),
    })
    return d
  }

  test('a layer that is not a tar (digests all correct)', async () => {
    const d = await withTopLayer(Buffer.from('definitely not a tar stream\n'.repeat(100)))
    await expectCleanFailure(() => Image.load(d), InvalidLayerError, 'invalid_layer')
  })

  test('a layer whose tar has a member escaping with ..', async () => {
    const t = scratch('escape-layer.tar')
    await craftTar(t, [
      { name: 'ok.txt', content: 'fine' },
      { name: '../../etc/evil', content: 'escape' },
    ])
    const d = await withTopLayer(await fsp.readFile(t))
    await expectCleanFailure(() => Image.load(d), InvalidLayerError, 'invalid_layer')
  })
})

describe('wrong argument types → InvalidArgumentError (a rejection, never a synchronous throw)', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const I = Image as any
  const out = (): string => path.join(home, '..', 'out.tar')
  const cases: Array<[string, () => unknown]> = [
    ['get(123)', () => I.get(123)],
    ['get()', () => I.get()],
    ['get(null)', () => I.get(null)],
    ['inspect({})', () => I.inspect({})],
    ['inspect(undefined)', () => I.inspect(undefined)],
    ['remove(42)', () => I.remove(42)],
    ["remove(ref, { force: 'yes' })", () => I.remove('localhost/test/base:v1', { force: 'yes' })],
    ['remove(ref, 5)', () => I.remove('localhost/test/base:v1', 5)],
    ["remove(ref, 'force')", () => I.remove('localhost/test/base:v1', 'force')],
    ['load(42)', () => I.load(42)],
    ['load()', () => I.load()],
    ['load(path, { tag: 5 })', () => I.load(appDocker, { tag: 5 })],
    ["load(path, { platform: ['linux/amd64'] })", () => I.load(appDocker, { platform: ['linux/amd64'] })],
    ["load(path, 'opts')", () => I.load(appDocker, 'opts')],
    ['load(path, { tag }) of a two-image archive', () => I.load(twoImages, { tag: 'localhost/x:1' })],
    ['save(5, { outputPath })', () => I.save(5, { outputPath: out() })],
    ['save([ref, 5], { outputPath })', () => I.save(['localhost/test/base:v1', 5], { outputPath: out() })],
    ['save([], { outputPath })', () => I.save([], { outputPath: out() })],
    ['save(ref)', () => I.save('localhost/test/base:v1')],
    ['save(ref, {})', () => I.save('localhost/test/base:v1', {})],
    ['save(ref, { outputPath: 5 })', () => I.save('localhost/test/base:v1', { outputPath: 5 })],
    ["save(ref, { outputPath, format: 'zip' })", () => I.save('localhost/test/base:v1', { outputPath: out(), format: 'zip' })],
    ['acquire(ref)', () => I.acquire('localhost/test/base:v1')],
    ['acquire(ref, {})', () => I.acquire('localhost/test/base:v1', {})],
    ['acquire(ref, { sandbox: 1 })', () => I.acquire('localhost/test/base:v1', { sandbox: 1 })],
    ["acquire(ref, { sandbox: '' })", () => I.acquire('localhost/test/base:v1', { sandbox: '' })],
    ["acquire(ref, { sandbox: 'a\\nb' })", () => I.acquire('localhost/test/base:v1', { sandbox: 'a\nb' })],
    ['release(5)', () => I.release(5)],
    ["release('')", () => I.release('')],
    ["pinSnapshot(1, ref)", () => I.pinSnapshot(1, 'localhost/test/base:v1')],
    ["pinSnapshot('', ref)", () => I.pinSnapshot('', 'localhost/test/base:v1')],
    ["pinSnapshot('s', 7)", () => I.pinSnapshot('s', 7)],
    ['unpinSnapshot({})', () => I.unpinSnapshot({})],
  ]
  let twoImages: string
  beforeAll(async () => {
    const other = await buildImage(path.join(work, 'other'), { layers: sampleLayers('other'), refs: ['localhost/test/other:v1'] })
    const otherDocker = await toDockerArchive(other, path.join(work, 'other.docker.tar'))
    const { mergeDockerArchives } = await import('./support/images')
    twoImages = await mergeDockerArchives([appDocker, otherDocker], path.join(work, 'two.docker.tar'))
  })

  test.each(cases)('%s', async (_label, call) => {
    const wrapped = (): Promise<unknown> => {
      const p = call()
      expect(typeof (p as Promise<unknown>)?.then).toBe('function')
      return p as Promise<unknown>
    }
    await expectCleanFailure(wrapped, InvalidArgumentError, 'invalid_argument')
    expect(fs.existsSync(out())).toBe(false)
    expect(readIndex(home).sandboxes).toEqual([])
    expect(readIndex(home).snapshots).toEqual([])
  })
})

describe('cache directory that cannot be written → CacheError', () => {
  const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
  const script = (archive: string) => `
    const msb = require(${JSON.stringify(PACKAGE_ROOT)});
    (async () => {
      try {
        const r = await msb.Image.load(${JSON.stringify(archive)});
        console.log(JSON.stringify({ ok: r.map((h) => h.reference) }));
      } catch (e) {
        console.log(JSON.stringify({ name: e.constructor.name, code: e.code, path: e.path, cacheError: e instanceof msb.CacheError, base: e instanceof msb.MicrosandboxError, message: e.message }));
      }
    })();`

  async function readableArchive(): Promise<string> {
    // The child runs as nobody: give it a world-readable copy of the archive.
    const dir = await makeTempDir('msb-ro-archive-')
    await fsp.chmod(dir, 0o755)
    const f = path.join(dir, 'app.docker.tar')
    await fsp.copyFile(appDocker, f)
    await fsp.chmod(f, 0o644)
    return f
  }

  function parse(r: ChildResult): Record<string, unknown> {
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' })
    return JSON.parse(r.stdout.trim().split('\n').pop()!)
  }

  test('loading into a root-owned 0755 cache as another user', async () => {
    // The cache exists (root made it, holding base); open it up for reading only.
    for (const [p] of [[home], ...['db', 'blobs', 'blobs/sha256', 'layers', 'layers/sha256', 'fsmeta', 'fsmeta/sha256', 'vmdk', 'vmdk/sha256', 'tmp', 'locks'].map((d) => [path.join(home, d)])]) {
      await fsp.chmod(p, 0o755)
    }
    await fsp.chmod(path.join(home, '..'), 0o755)
    const archive = await readableArchive()
    try {
      const before = await tree(home)
      const r = await runNodeScript(script(archive), childEnv({ MSB_HOME: home, MSB_BACKEND: undefined }), { prefix: nobody, cwd: '/' })
      const out = parse(r)
      expect(out).toEqual({ name: 'CacheError', code: 'cache', path: expect.any(String), cacheError: true, base: true, message: expect.any(String) })
      expect((out.path as string).startsWith(home)).toBe(true)
      const after = await tree(home)
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort())
      for (const [k, v] of before) expect({ k, size: after.get(k)!.size, mtime: after.get(k)!.mtimeMs }).toEqual({ k, size: v.size, mtime: v.mtimeMs })
      expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/test/base:v1'])
    } finally {
      await fsp.rm(path.dirname(archive), { recursive: true, force: true })
    }
  })

  test('creating a cache under a root-owned 0755 directory as another user', async () => {
    const parent = await makeTempDir('msb-ro-parent-')
    await fsp.chmod(parent, 0o755)
    const archive = await readableArchive()
    try {
      const target = path.join(parent, 'cache')
      const r = await runNodeScript(script(archive), childEnv({ MSB_HOME: target, MSB_BACKEND: undefined }), { prefix: nobody, cwd: '/' })
      const out = parse(r)
      expect(out).toEqual({ name: 'CacheError', code: 'cache', path: expect.any(String), cacheError: true, base: true, message: expect.any(String) })
      expect((out.path as string).startsWith(parent)).toBe(true)
      expect(await fsp.readdir(parent)).toEqual([])
    } finally {
      await fsp.rm(parent, { recursive: true, force: true })
      await fsp.rm(path.dirname(archive), { recursive: true, force: true })
    }
  })
})

describe('cloud backend → UnsupportedError for every method, cache untouched', () => {
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['get', () => Image.get('localhost/test/base:v1')],
    ['list', () => Image.list()],
    ['inspect', () => Image.inspect('localhost/test/base:v1')],
    ['remove', () => Image.remove('localhost/test/base:v1')],
    ['remove force', () => Image.remove('localhost/test/base:v1', { force: true })],
    ['prune', () => Image.prune()],
    ['load', () => Image.load(appDocker)],
    ['save', () => Image.save('localhost/test/base:v1', { outputPath: path.join(home, '..', 'cloud.tar') })],
    ['acquire', () => Image.acquire('localhost/test/base:v1', { sandbox: 'sb' })],
    ['release', () => Image.release('sb')],
    ['pinSnapshot', () => Image.pinSnapshot('snap', 'localhost/test/base:v1')],
    ['unpinSnapshot', () => Image.unpinSnapshot('snap')],
  ]

  test('an existing cache is neither read nor modified', async () => {
    const before = await tree(home)
    setEnv('MSB_BACKEND', 'cloud')
    for (const [name, call] of calls) {
      const err = await rejectionOf(call())
      expect({ name, cls: err.constructor.name, code: err.code }).toEqual({ name, cls: 'UnsupportedError', code: 'unsupported' })
      expect(err).toBeInstanceOf(UnsupportedError)
      expect(err).toBeInstanceOf(MicrosandboxError)
    }
    const after = await tree(home)
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort())
    for (const [k, v] of before) expect({ k, size: after.get(k)!.size, mtime: after.get(k)!.mtimeMs }).toEqual({ k, size: v.size, mtime: v.mtimeMs })
    expect(fs.existsSync(path.join(home, '..', 'cloud.tar'))).toBe(false)
    setEnv('MSB_BACKEND', undefined)
    expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/test/base:v1'])
  })

  test('a cache directory that does not exist is not created', async () => {
    const parent = await makeTempDir('msb-cloud-')
    try {
      const target = path.join(parent, 'never')
      setEnv('MSB_HOME', target)
      setEnv('MSB_BACKEND', 'cloud')
      for (const [name, call] of calls) {
        const err = await rejectionOf(call())
        expect({ name, cls: err.constructor.name, code: err.code }).toEqual({ name, cls: 'UnsupportedError', code: 'unsupported' })
      }
      expect(fs.existsSync(target)).toBe(false)
      expect(await fsp.readdir(parent)).toEqual([])
    } finally {
      setEnv('MSB_HOME', home)
      await fsp.rm(parent, { recursive: true, force: true })
    }
  })

  test('an unknown backend is an InvalidArgumentError, also without touching the disk', async () => {
    const parent = await makeTempDir('msb-bogus-')
    try {
      const target = path.join(parent, 'never')
      setEnv('MSB_HOME', target)
      setEnv('MSB_BACKEND', 'remote-ish')
      const err = await rejectionOf(Image.list())
      expect(err).toBeInstanceOf(InvalidArgumentError)
      expect(err.code).toBe('invalid_argument')
      expect(fs.existsSync(target)).toBe(false)
    } finally {
      setEnv('MSB_HOME', home)
      await fsp.rm(parent, { recursive: true, force: true })
    }
  })
})

test('after every failure above the process is alive and the cache still works', async () => {
  const handles = await Image.load(appDocker)
  expect(handles.map((h) => h.reference)).toEqual(['localhost/test/app:v1'])
  expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/test/app:v1', 'localhost/test/base:v1'])
  expect(await consistencyProblems(home)).toEqual([])
})
