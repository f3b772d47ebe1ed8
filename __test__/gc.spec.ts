/**
 * Garbage collection and the roots that stop it: Image.remove (with and
 * without force), Image.prune and its report, sandboxes (acquire/release),
 * snapshots (pinSnapshot/unpinSnapshot), timestamps, and acquire's
 * rebuilding of lost artifacts from the cache alone.
 *
 * Expected counters are computed from the fixtures (which diff_ids and
 * manifests each image has), never read back from the engine; reclaimed
 * bytes are measured on disk before and after.
 */
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { CacheError, Image, ImageHandle, ImageInUseError, ImageNotFoundError, ImagePruneReport, MicrosandboxError } from '..'
import { BuiltImage, buildImage, copyLayout, hexOf, makeTempDir, requireTools, run, sampleLayers, toDockerArchive } from './support/images'
import { artifactTree, consistencyProblems, freshHomePerTest, fsckProblems, isDate, readIndex, rejectionOf, removedBetween, tmpFiles } from './support/cache'

let work: string
let A: BuiltImage // two layers
let B: BuiltImage // A's two layers + one more
let C: BuiltImage // unrelated, two layers

beforeAll(async () => {
  requireTools()
  work = await makeTempDir('msb-gc-')
  A = await buildImage(path.join(work, 'A'), { layers: sampleLayers('a'), config: { cmd: ['a'] }, refs: ['localhost/gc/a:v1', 'localhost/gc/a:alias'] })
  B = await buildImage(path.join(work, 'B'), {
    base: A,
    layers: [{ entries: [{ type: 'file', path: 'b/only-in-b.txt', content: 'b\n'.repeat(5000) }] }],
    config: { cmd: ['b'] },
    refs: ['localhost/gc/b:v1'],
  })
  C = await buildImage(path.join(work, 'C'), { layers: sampleLayers('c'), config: { cmd: ['c'] }, refs: ['localhost/gc/c:v1'] })
  if (B.diffIds.slice(0, 2).join() !== A.diffIds.join() || B.diffIds.length !== 3) throw new Error('fixture: B must extend A')
  if (C.diffIds.some((d) => A.diffIds.includes(d))) throw new Error('fixture: C must share nothing with A')
}, 120_000)

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()

/** The report fields a plain prune adds to the page's (which references went is checked where it matters). */
const PLAIN = { references: expect.any(Array), dryRun: false, budgetBytes: null, remainingBytes: null, budgetMet: null }

const fsmetaOf = (img: BuiltImage): string => `fsmeta/sha256/${hexOf(img.manifestDigest)}.erofs`
const vmdkOf = (img: BuiltImage): string => `vmdk/sha256/${hexOf(img.manifestDigest)}.vmdk`
const layerFile = (diffId: string): string => `layers/sha256/${hexOf(diffId)}.erofs`

/** Every artifact path an image owns in the cache. */
function filesOf(img: BuiltImage): string[] {
  return [fsmetaOf(img), vmdkOf(img), ...img.diffIds.map(layerFile)]
}

/** Files of `gone` images that no image in `kept` also owns. */
function exclusiveFiles(gone: BuiltImage[], kept: BuiltImage[]): string[] {
  const keep = new Set(kept.flatMap(filesOf))
  return [...new Set(gone.flatMap(filesOf))].filter((f) => !keep.has(f)).sort()
}

const exists = (rel: string): boolean => fs.existsSync(path.join(cache.home, rel))
const refs = async (): Promise<string[]> => (await Image.list()).map((h) => h.reference)

/** Prunes and checks the report against what disappeared from disk. */
async function pruneMeasured(): Promise<{ report: ImagePruneReport; removed: string[] }> {
  const before = await artifactTree(cache.home)
  const report = await Image.prune()
  const after = await artifactTree(cache.home)
  const { paths, bytes } = removedBetween(before, after)
  expect(report.bytesReclaimed).toBe(bytes)
  expect(await consistencyProblems(cache.home)).toEqual([])
  return { report, removed: paths }
}

async function sha(rel: string): Promise<string> {
  return createHash('sha256')
    .update(await fsp.readFile(path.join(cache.home, rel)))
    .digest('hex')
}

describe('Image.remove', () => {
  test('an image used by sandboxes is refused with ImageInUseError naming them', async () => {
    await Image.load(B.layout)
    await Image.acquire('localhost/gc/b:v1', { sandbox: 'sb-zeta' })
    await Image.acquire('localhost/gc/b:v1', { sandbox: 'sb-alpha' })
    const before = await artifactTree(cache.home)
    for (const opts of [undefined, { force: false }, {}]) {
      const err = await rejectionOf(Image.remove('localhost/gc/b:v1', opts))
      expect(err).toBeInstanceOf(ImageInUseError)
      expect(err).toBeInstanceOf(MicrosandboxError)
      expect(err.code).toBe('image_in_use')
      expect(err.sandboxes).toEqual(['sb-alpha', 'sb-zeta'])
      expect(err.message).toContain('sb-alpha')
    }
    expect(await refs()).toEqual(['localhost/gc/b:v1'])
    expect([...(await artifactTree(cache.home)).keys()].sort()).toEqual([...before.keys()].sort())
  })

  test('force removes the reference; the sandbox files stay until release and prune', async () => {
    await Image.load(B.layout)
    const boot = await Image.acquire('localhost/gc/b:v1', { sandbox: 'sb-1' })
    await Image.remove('localhost/gc/b:v1', { force: true })
    // The name is gone...
    expect(await refs()).toEqual([])
    const err = await rejectionOf(Image.get('localhost/gc/b:v1'))
    expect(err).toBeInstanceOf(ImageNotFoundError)
    // ...the files the sandbox boots from are not.
    for (const f of [boot.fsmetaPath, boot.vmdkPath, ...boot.layers]) expect(fs.existsSync(f)).toBe(true)
    for (const f of filesOf(B)) expect(exists(f)).toBe(true)
    // A prune while the sandbox still runs keeps them too.
    const held = await pruneMeasured()
    expect(held.report).toEqual({ imageRefsRemoved: 0, manifestsRemoved: 0, layersRemoved: 0, fsmetaRemoved: 0, vmdkRemoved: 0, bytesReclaimed: 0, ...PLAIN })
    for (const f of filesOf(B)) expect(exists(f)).toBe(true)
    // Released, the next prune takes everything.
    expect(await Image.release('sb-1')).toBe(true)
    const { report, removed } = await pruneMeasured()
    expect(report).toEqual({ imageRefsRemoved: 0, manifestsRemoved: 1, layersRemoved: B.diffIds.length, fsmetaRemoved: 1, vmdkRemoved: 1, bytesReclaimed: expect.any(Number), ...PLAIN })
    expect(removed).toEqual(filesOf(B).sort())
    expect(await artifactTree(cache.home)).toEqual(new Map())
  })

  test('an unused image goes at once with whatever only it used; shared layers stay', async () => {
    await Image.load(A.layout)
    await Image.load(B.layout)
    const before = await artifactTree(cache.home)
    await Image.remove('localhost/gc/b:v1')
    const { paths } = removedBetween(before, await artifactTree(cache.home))
    expect(paths).toEqual(exclusiveFiles([B], [A]))
    for (const f of filesOf(A)) expect(exists(f)).toBe(true)
    expect(await refs()).toEqual(['localhost/gc/a:alias', 'localhost/gc/a:v1'])
    expect(await consistencyProblems(cache.home)).toEqual([])
  })

  test('removing one of two tags keeps the image for the other', async () => {
    await Image.load(A.layout)
    await Image.remove('localhost/gc/a:alias')
    expect(await refs()).toEqual(['localhost/gc/a:v1'])
    for (const f of filesOf(A)) expect(exists(f)).toBe(true)
    await Image.remove('localhost/gc/a:v1')
    expect(await refs()).toEqual([])
    expect(await artifactTree(cache.home)).toEqual(new Map())
  })

  test('a digest reference removes every tag of that repository resolving to it', async () => {
    await Image.load(A.layout)
    await Image.load(C.layout)
    await Image.remove(`localhost/gc/a@${A.manifestDigest}`)
    expect(await refs()).toEqual(['localhost/gc/c:v1'])
    for (const f of exclusiveFiles([A], [C])) expect(exists(f)).toBe(false)
  })

  test('removing an absent image rejects with ImageNotFoundError', async () => {
    await Image.load(A.layout)
    for (const ref of ['localhost/gc/nope:v1', `localhost/gc/a@sha256:${'0'.repeat(64)}`]) {
      const err = await rejectionOf(Image.remove(ref))
      expect(err).toBeInstanceOf(ImageNotFoundError)
      expect(err.code).toBe('image_not_found')
    }
    expect(await refs()).toEqual(['localhost/gc/a:alias', 'localhost/gc/a:v1'])
  })
})

describe('Image.prune', () => {
  test('removes references no sandbox or snapshot uses, then unreachable manifests, layers and artifacts, with exact counters', async () => {
    await Image.load(A.layout) // 2 refs
    await Image.load(B.layout)
    await Image.load(C.layout)
    await Image.acquire('localhost/gc/b:v1', { sandbox: 'sb-b' })
    await Image.pinSnapshot('snap-c', 'localhost/gc/c:v1')

    // Round 1: only A is unrooted. Its layers are B's too, so no layer goes.
    const onlyA = A.diffIds.filter((d) => !B.diffIds.includes(d) && !C.diffIds.includes(d))
    expect(onlyA).toEqual([])
    const r1 = await pruneMeasured()
    expect(r1.report).toEqual({ imageRefsRemoved: A.refs.length, manifestsRemoved: 1, layersRemoved: onlyA.length, fsmetaRemoved: 1, vmdkRemoved: 1, bytesReclaimed: expect.any(Number), ...PLAIN })
    expect(r1.removed).toEqual(exclusiveFiles([A], [B, C]))
    expect(await refs()).toEqual(['localhost/gc/b:v1', 'localhost/gc/c:v1'])

    // Nothing more to do while the roots hold.
    const r2 = await pruneMeasured()
    expect(r2.report).toEqual({ imageRefsRemoved: 0, manifestsRemoved: 0, layersRemoved: 0, fsmetaRemoved: 0, vmdkRemoved: 0, bytesReclaimed: 0, ...PLAIN })

    // Round 3: unpin C; B still runs.
    expect(await Image.unpinSnapshot('snap-c')).toBe(true)
    expect(await Image.unpinSnapshot('snap-c')).toBe(false)
    const r3 = await pruneMeasured()
    expect(r3.report).toEqual({ imageRefsRemoved: C.refs.length, manifestsRemoved: 1, layersRemoved: C.diffIds.filter((d) => !B.diffIds.includes(d)).length, fsmetaRemoved: 1, vmdkRemoved: 1, bytesReclaimed: expect.any(Number), ...PLAIN })
    expect(r3.removed).toEqual(exclusiveFiles([C], [B]))

    // Round 4: release B; everything goes.
    expect(await Image.release('sb-b')).toBe(true)
    expect(await Image.release('sb-b')).toBe(false)
    const r4 = await pruneMeasured()
    expect(r4.report).toEqual({ imageRefsRemoved: B.refs.length, manifestsRemoved: 1, layersRemoved: new Set(B.diffIds).size, fsmetaRemoved: 1, vmdkRemoved: 1, bytesReclaimed: expect.any(Number), ...PLAIN })
    expect(r4.removed).toEqual(filesOf(B).sort())
    expect(await refs()).toEqual([])
    expect(await artifactTree(cache.home)).toEqual(new Map())
    const index = readIndex(cache.home)
    expect([index.blobs, index.blobContent, index.layerFraming]).toEqual([[], [], []])
  })

  test('a snapshot keeps its image and all its references', async () => {
    await Image.load(A.layout)
    await Image.pinSnapshot('snap', 'localhost/gc/a:v1')
    const r = await pruneMeasured()
    expect(r.report).toEqual({ imageRefsRemoved: 0, manifestsRemoved: 0, layersRemoved: 0, fsmetaRemoved: 0, vmdkRemoved: 0, bytesReclaimed: 0, ...PLAIN })
    expect(await refs()).toEqual(['localhost/gc/a:alias', 'localhost/gc/a:v1'])
    const err = await rejectionOf(Image.pinSnapshot('other', 'localhost/gc/none:v1'))
    expect(err).toBeInstanceOf(ImageNotFoundError)
  })

  test('deletes stray files in layers/, fsmeta/, vmdk/ and tmp/ and counts them', async () => {
    await Image.load(A.layout)
    await Image.acquire('localhost/gc/a:v1', { sandbox: 'keep' })
    const live = await artifactTree(cache.home)
    const strays: Array<[string, number]> = [
      [`layers/sha256/${'2'.repeat(64)}.erofs`, 8192],
      ['layers/sha256/partial.erofs.tmp', 77],
      [`fsmeta/sha256/${'3'.repeat(64)}.erofs`, 4096],
      [`vmdk/sha256/${'4'.repeat(64)}.vmdk`, 300],
      ['tmp/12345-0-abc.tmp', 5000],
      ['tmp/leftover-dir/nested/file', 42],
    ]
    for (const [rel, size] of strays) {
      await fsp.mkdir(path.dirname(path.join(cache.home, rel)), { recursive: true })
      await fsp.writeFile(path.join(cache.home, rel), Buffer.alloc(size, 1))
    }
    const before = await artifactTree(cache.home)
    const report = await Image.prune()
    const after = await artifactTree(cache.home)
    expect(report).toEqual({
      imageRefsRemoved: 0,
      manifestsRemoved: 0,
      layersRemoved: 0,
      fsmetaRemoved: 1,
      vmdkRemoved: 1,
      bytesReclaimed: strays.reduce((n, [, s]) => n + s, 0),
      ...PLAIN,
      references: [],
    })
    for (const [rel] of strays) expect({ rel, exists: after.has(rel) }).toEqual({ rel, exists: false })
    expect(fs.existsSync(path.join(cache.home, 'tmp', 'leftover-dir'))).toBe(false)
    // Every live file is untouched.
    for (const [rel, info] of live) expect(after.get(rel)).toEqual(info)
    expect(removedBetween(before, after).paths.sort()).toEqual(strays.map(([r]) => r).sort())
    expect(await refs()).toEqual(['localhost/gc/a:alias', 'localhost/gc/a:v1'])
  })
})

describe('timestamps', () => {
  test('createdAt is the first load and survives re-loads (even re-pointing the tag); a removed tag starts over', async () => {
    const v1 = (hs: ImageHandle[]): ImageHandle => hs.find((h) => h.reference === 'localhost/gc/a:v1')!
    const first = v1(await Image.load(A.layout))
    const created = first.createdAt!.getTime()
    await new Promise((r) => setTimeout(r, 30))
    await Image.load(A.layout)
    expect((await Image.get('localhost/gc/a:v1')).createdAt!.getTime()).toBe(created)
    // The docker-archive of A has another (synthesized) manifest: the tag moves, createdAt stays.
    const docker = await toDockerArchive(A, path.join(cache.home, '..', 'a.tar'))
    const moved = v1(await Image.load(docker))
    expect(moved.manifestDigest).not.toBe(A.manifestDigest)
    expect(moved.createdAt!.getTime()).toBe(created)
    await Image.remove('localhost/gc/a:v1')
    await new Promise((r) => setTimeout(r, 30))
    const again = await Image.load(A.layout)
    expect(v1(again).createdAt!.getTime()).toBeGreaterThan(created)
    // The tag that stayed keeps its own first-load time.
    expect(again.find((h) => h.reference === 'localhost/gc/a:alias')!.createdAt!.getTime()).toBe(created)
  })

  test('lastUsedAt is set by acquire only, and moves forward with each acquire', async () => {
    await Image.load(A.layout)
    expect((await Image.get('localhost/gc/a:v1')).lastUsedAt).toBeNull()
    await Image.pinSnapshot('s', 'localhost/gc/a:v1')
    await Image.save('localhost/gc/a:v1', { outputPath: path.join(cache.home, '..', 'out.tar') })
    expect((await Image.get('localhost/gc/a:v1')).lastUsedAt).toBeNull()
    await Image.acquire('localhost/gc/a:v1', { sandbox: 'one' })
    const t1 = (await Image.get('localhost/gc/a:v1')).lastUsedAt
    expect(isDate(t1)).toBe(true)
    // The image is used, whichever of its names the sandbox asked for.
    expect((await Image.get('localhost/gc/a:alias')).lastUsedAt!.getTime()).toBe(t1!.getTime())
    await new Promise((r) => setTimeout(r, 30))
    await Image.acquire('localhost/gc/a:alias', { sandbox: 'two' })
    const t2 = (await Image.get('localhost/gc/a:v1')).lastUsedAt!
    expect(t2.getTime()).toBeGreaterThan(t1!.getTime())
    await Image.release('one')
    expect((await Image.get('localhost/gc/a:v1')).lastUsedAt!.getTime()).toBe(t2.getTime())
  })
})

describe('Image.acquire', () => {
  test('returns the files a sandbox boots from, and they make one disk', async () => {
    await Image.load(B.layout)
    const boot = await Image.acquire('localhost/gc/b:v1', { sandbox: 'sb' })
    expect(boot.reference).toBe('localhost/gc/b:v1')
    expect(boot.manifestDigest).toBe(B.manifestDigest)
    expect(boot.config).toEqual((await Image.inspect('localhost/gc/b:v1')).config)
    expect(boot.layers).toEqual(B.diffIds.map((d) => path.join(cache.home, layerFile(d))))
    expect(boot.fsmetaPath).toBe(path.join(cache.home, fsmetaOf(B)))
    expect(boot.vmdkPath).toBe(path.join(cache.home, vmdkOf(B)))
    for (const f of [boot.fsmetaPath, boot.vmdkPath, ...boot.layers]) expect(fs.statSync(f).size).toBeGreaterThan(0)
    expect(await fsckProblems(cache.home)).toEqual([])
    // qemu reads the VMDK as fsmeta followed by the layers, byte for byte.
    const raw = path.join(cache.home, '..', 'disk.raw')
    await run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', boot.vmdkPath, raw])
    const parts = await Promise.all([boot.fsmetaPath, ...boot.layers].map((f) => fsp.readFile(f)))
    expect((await fsp.readFile(raw)).equals(Buffer.concat(parts))).toBe(true)
    expect(readIndex(cache.home).sandboxes).toEqual([expect.objectContaining({ name: 'sb', manifest_digest: B.manifestDigest })])
  })

  test('re-acquiring under the same sandbox name moves it to the new image', async () => {
    await Image.load(A.layout)
    await Image.load(C.layout)
    await Image.acquire('localhost/gc/a:v1', { sandbox: 'sb' })
    await Image.acquire('localhost/gc/c:v1', { sandbox: 'sb' })
    const r = await pruneMeasured()
    expect(r.report).toEqual({ imageRefsRemoved: A.refs.length, manifestsRemoved: 1, layersRemoved: A.diffIds.length, fsmetaRemoved: 1, vmdkRemoved: 1, bytesReclaimed: expect.any(Number), ...PLAIN })
    expect(await refs()).toEqual(['localhost/gc/c:v1'])
  })

  test('rebuilds deleted fsmeta and VMDK from the cache alone, byte for byte; a deleted layer image comes back with the next load', async () => {
    const source = await copyLayout(B.layout, path.join(cache.home, '..', 'B-copy'))
    await Image.load(source)
    const first = await Image.acquire('localhost/gc/b:v1', { sandbox: 'sb' })
    const files = [fsmetaOf(B), vmdkOf(B), ...B.diffIds.map(layerFile)]
    const original = new Map(await Promise.all(files.map(async (f) => [f, await sha(f)] as [string, string])))
    const size = (await Image.get('localhost/gc/b:v1')).sizeBytes
    const unchanged = async (doomed: string[]): Promise<void> => {
      for (const f of files) expect({ deleted: doomed, file: f, sha: await sha(f) }).toEqual({ deleted: doomed, file: f, sha: original.get(f) })
      expect(await tmpFiles(cache.home)).toEqual([])
      expect(await consistencyProblems(cache.home)).toEqual([])
      expect((await Image.get('localhost/gc/b:v1')).sizeBytes).toBe(size)
    }

    for (const doomed of [[fsmetaOf(B)], [vmdkOf(B)], [fsmetaOf(B), vmdkOf(B)]]) {
      for (const f of doomed) await fsp.rm(path.join(cache.home, f))
      expect(await Image.acquire('localhost/gc/b:v1', { sandbox: 'sb' })).toEqual(first)
      await unchanged(doomed)
    }

    // No compressed blob is kept to rebuild a layer image from: acquire says
    // so and roots nothing; loading the image again converts the layer again.
    const lost = layerFile(B.diffIds[1])
    await fsp.rm(path.join(cache.home, lost))
    const err = await rejectionOf(Image.acquire('localhost/gc/b:v1', { sandbox: 'sb-2' }))
    expect(err).toBeInstanceOf(CacheError)
    expect(err.code).toBe('cache')
    expect(err.message).toContain('load or pull the image again')
    expect(readIndex(cache.home).sandboxes.map((s) => s.name)).toEqual(['sb'])
    await Image.load(source)
    expect(await Image.acquire('localhost/gc/b:v1', { sandbox: 'sb' })).toEqual(first)
    await unchanged([lost])
    expect(await fsckProblems(cache.home)).toEqual([])
  })

  test('acquire of an absent image rejects with ImageNotFoundError and roots nothing', async () => {
    const err = await rejectionOf(Image.acquire('localhost/gc/none:v1', { sandbox: 'sb' }))
    expect(err).toBeInstanceOf(ImageNotFoundError)
    expect(readIndex(cache.home).sandboxes).toEqual([])
    expect(await Image.release('sb')).toBe(false)
  })
})
