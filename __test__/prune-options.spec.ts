/**
 * Cache policies on real images (umoci): Image.prune's filters, keep and
 * dry run, the LRU size budget, Image.diskUsage, Image.tag, and the
 * options every deleting method refuses. Expected references and bytes
 * come from the fixtures and from the files on disk, never from the
 * engine; a dry run is compared field by field with the real prune that
 * follows it, and must leave every file and row as it was.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image, ImagePruneReport, InvalidArgumentError, ImageNotFoundError } from '..'
import { BuiltImage, buildImage, hexOf, makeTempDir, requireTools, sampleLayers } from './support/images'
import { artifactTree, consistencyProblems, freshHomePerTest, readIndex, rejectionOf, removedBetween, tree } from './support/cache'

let work: string
let A: BuiltImage // two layers, two references, label tier=web
let B: BuiltImage // A's two layers + one more
let C: BuiltImage // unrelated, label tier=batch

beforeAll(async () => {
  requireTools()
  work = await makeTempDir('msb-policy-')
  A = await buildImage(path.join(work, 'A'), { layers: sampleLayers('a'), config: { labels: { tier: 'web' } }, refs: ['localhost/pol/a:v1', 'localhost/pol/a:alias'] })
  B = await buildImage(path.join(work, 'B'), {
    base: A,
    layers: [{ entries: [{ type: 'file', path: 'b/only-in-b.txt', content: 'b\n'.repeat(5000) }] }],
    config: { labels: { team: 'x' } },
    refs: ['localhost/pol/b:v1'],
  })
  C = await buildImage(path.join(work, 'C'), { layers: sampleLayers('c'), config: { labels: { tier: 'batch' } }, refs: ['localhost/other/c:v1'] })
  if (B.diffIds.slice(0, 2).join() !== A.diffIds.join()) throw new Error('fixture: B must extend A')
}, 120_000)

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
const refs = async (): Promise<string[]> => (await Image.list()).map((h) => h.reference)
const loadAll = async (): Promise<void> => {
  for (const img of [A, B, C]) await Image.load(img.layout)
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Files an image owns in the cache. */
const filesOf = (img: BuiltImage): string[] => [
  `fsmeta/sha256/${hexOf(img.manifestDigest)}.erofs`,
  `vmdk/sha256/${hexOf(img.manifestDigest)}.vmdk`,
  ...img.diffIds.map((d) => `layers/sha256/${hexOf(d)}.erofs`),
]

/** The cache's size as the API defines it: every file but locks/ and tmp/. */
async function cacheSize(): Promise<number> {
  let n = 0
  for (const [p, f] of await tree(cache.home)) if (!p.startsWith('locks/') && !p.startsWith('tmp/')) n += f.size
  return n
}

/** Bytes of the given cache files. */
async function bytesOf(files: string[]): Promise<number> {
  let n = 0
  for (const f of new Set(files)) n += (await fsp.stat(path.join(cache.home, f))).size
  return n
}

/** Everything a dry run must leave alone: artifacts, tmp/ and every index row. */
async function state(): Promise<unknown> {
  return { files: await artifactTree(cache.home), index: readIndex(cache.home) }
}

/**
 * A dry run, then the real prune with the same options: the dry run must
 * change nothing, and its report must be the real one, field by field;
 * the real one's bytes are what left the disk.
 */
async function dryThenReal(opts: Parameters<typeof Image.prune>[0] = {}): Promise<ImagePruneReport> {
  const before = await state()
  const dry = await Image.prune({ ...opts, dryRun: true })
  expect(dry.dryRun).toBe(true)
  expect(await state()).toEqual(before)
  const files = await artifactTree(cache.home)
  const real = await Image.prune(opts)
  expect({ ...dry, dryRun: false }).toEqual(real)
  expect(real.bytesReclaimed).toBe(removedBetween(files, await artifactTree(cache.home)).bytes)
  expect(await consistencyProblems(cache.home)).toEqual([])
  return real
}

describe('Image.prune({ dryRun })', () => {
  test('reports exactly what the real prune then does, strays and temp files included, and changes no file and no row', async () => {
    await loadAll()
    await Image.acquire('localhost/pol/b:v1', { sandbox: 'sb' })
    await fsp.writeFile(path.join(cache.home, 'layers/sha256', `${'5'.repeat(64)}.erofs`), Buffer.alloc(8192, 1))
    await fsp.writeFile(path.join(cache.home, 'tmp/1-0-x.tmp'), Buffer.alloc(300, 1))
    const real = await dryThenReal()
    expect(real).toEqual({
      imageRefsRemoved: 3,
      manifestsRemoved: 2,
      layersRemoved: C.diffIds.length,
      fsmetaRemoved: 2,
      vmdkRemoved: 2,
      bytesReclaimed: expect.any(Number),
      references: [...A.refs, ...C.refs].sort(),
      dryRun: false,
      budgetBytes: null,
      remainingBytes: null,
      budgetMet: null,
    })
    expect(await refs()).toEqual(['localhost/pol/b:v1'])
  })

  test('a dry run of an empty cache reports nothing', async () => {
    expect(await Image.prune({ dryRun: true })).toMatchObject({ imageRefsRemoved: 0, bytesReclaimed: 0, references: [], dryRun: true })
  })
})

describe('filters (an image goes only if every given filter selects it)', () => {
  test('references: globs on the normalized reference (* spans /), exact references normalized', async () => {
    await loadAll()
    expect((await Image.prune({ dryRun: true, references: 'localhost/*' })).references).toEqual([...A.refs, ...B.refs, ...C.refs].sort())
    expect((await Image.prune({ dryRun: true, references: '*/c:*' })).references).toEqual(C.refs)
    expect((await Image.prune({ dryRun: true, references: ['localhost/pol/a:v?'] })).references).toEqual(['localhost/pol/a:v1'])
    expect((await Image.prune({ dryRun: true, references: 'docker.io/library/*' })).references).toEqual([])
    // One of A's two references goes; its image stays for the other.
    const r = await dryThenReal({ references: ['localhost/pol/a:v1'] })
    expect(r).toMatchObject({ imageRefsRemoved: 1, manifestsRemoved: 0, layersRemoved: 0, bytesReclaimed: 0 })
    expect(await refs()).toEqual(['localhost/other/c:v1', 'localhost/pol/a:alias', 'localhost/pol/b:v1'])
  })

  test('labels: equal to a string, or present for true; several must all match', async () => {
    await loadAll()
    const dry = async (labels: Record<string, string | true>) => (await Image.prune({ dryRun: true, labels })).references
    expect(await dry({ tier: 'batch' })).toEqual(C.refs)
    // B's config has A's labels plus its own (umoci keeps the base's).
    expect(await dry({ tier: 'web' })).toEqual([...A.refs, ...B.refs].sort())
    expect(await dry({ tier: true })).toEqual([...A.refs, ...B.refs, ...C.refs].sort())
    expect(await dry({ tier: 'web', team: true })).toEqual(B.refs)
    expect(await dry({ tier: 'nope' })).toEqual([])
    await dryThenReal({ labels: { tier: 'batch' } })
    expect(await refs()).toEqual([...A.refs, ...B.refs].sort())
  })

  test('keep: references and globs never pruned; combined with the other filters', async () => {
    await loadAll()
    const r = await dryThenReal({ keep: ['*/pol/a:*'], references: 'localhost/*' })
    expect(r.references).toEqual([...B.refs, ...C.refs].sort())
    // B went but its first two layers are A's: only B's own layer went.
    expect(r.layersRemoved).toBe(1 + C.diffIds.length)
    expect(await refs()).toEqual([...A.refs].sort())
    expect((await Image.prune({ dryRun: true, keep: 'localhost/pol/a:v1' })).references).toEqual(['localhost/pol/a:alias'])
  })

  test('olderThan: only references cached longer ago; unusedFor: only images no sandbox acquired within the window', async () => {
    await Image.load(C.layout)
    await sleep(1500)
    await Image.load(A.layout)
    expect((await Image.prune({ dryRun: true, olderThan: '0.75s' })).references).toEqual(C.refs)
    expect((await Image.prune({ dryRun: true, olderThan: 3_600_000 })).references).toEqual([])
    // A acquired now: C (never acquired, cached 1.5 s ago) is the one unused for that long.
    await Image.acquire('localhost/pol/a:v1', { sandbox: 'sb' })
    await Image.release('sb')
    expect((await Image.prune({ dryRun: true, unusedFor: 750 })).references).toEqual(C.refs)
    await sleep(800)
    expect((await Image.prune({ dryRun: true, unusedFor: '0.75s' })).references).toEqual([...A.refs, ...C.refs].sort())
    expect((await Image.prune({ dryRun: true, unusedFor: '1.2s' })).references).toEqual(C.refs)
    // Both filters: C is old enough for each.
    await dryThenReal({ unusedFor: '1.2s', olderThan: '1s' })
    expect(await refs()).toEqual([...A.refs].sort())
  })
})

describe('Image.prune({ maxBytes }): least recently used first, roots never', () => {
  /** Acquires and releases, so images were last used in this order, at distinct times. */
  async function useInOrder(...references: string[]): Promise<void> {
    for (const r of references) {
      await Image.acquire(r, { sandbox: 'lru' })
      await Image.release('lru')
      await sleep(20)
    }
  }

  test('evicts in LRU order until the cache fits; shared layers free their bytes only with their last user', async () => {
    await loadAll()
    await useInOrder('localhost/other/c:v1', 'localhost/pol/a:v1', 'localhost/pol/b:v1')
    await Image.prune({ dryRun: true, maxBytes: 0 }) // settles the WAL, as every budget prune does first
    const total = await cacheSize()
    const cOnly = await bytesOf(filesOf(C))
    const aDisk = await bytesOf(filesOf(A).slice(0, 2))
    // Just C: the budget is met once C (least recently used) is gone.
    const justC = await Image.prune({ dryRun: true, maxBytes: total - cOnly })
    expect(justC).toMatchObject({ references: C.refs, budgetBytes: total - cOnly, remainingBytes: total - cOnly, budgetMet: true })
    // One byte less: A goes too, but its layers are B's, so only its fsmeta and VMDK are freed.
    const r = await dryThenReal({ maxBytes: total - cOnly - 1 })
    expect(r).toMatchObject({ references: [...A.refs, ...C.refs].sort(), manifestsRemoved: 2, layersRemoved: C.diffIds.length, bytesReclaimed: cOnly + aDisk, budgetMet: true })
    expect(r.remainingBytes).toBe(total - cOnly - aDisk)
    expect(await refs()).toEqual(B.refs)
    // What the budget counts, measured after the prune: every byte accounted for.
    expect(await cacheSize()).toBeLessThanOrEqual(r.remainingBytes! + 64 * 1024)
  })

  test('a budget the roots alone exceed: everything else goes, and the report says the budget is not met', async () => {
    await loadAll()
    await Image.acquire('localhost/pol/b:v1', { sandbox: 'held' })
    await Image.pinSnapshot('snap', 'localhost/other/c:v1')
    const r = await dryThenReal({ maxBytes: 1000 })
    expect(r).toMatchObject({ references: [...A.refs].sort(), budgetBytes: 1000, budgetMet: false })
    expect(await refs()).toEqual([...B.refs, ...C.refs].sort())
    for (const f of [...filesOf(B), ...filesOf(C)]) await fsp.stat(path.join(cache.home, f))
  })

  test('a budget the cache already meets evicts nothing but still collects garbage', async () => {
    await loadAll()
    await fsp.writeFile(path.join(cache.home, 'tmp/2-0-y.tmp'), 'x')
    const r = await dryThenReal({ maxBytes: 2 ** 40 })
    expect(r).toMatchObject({ references: [], budgetMet: true, bytesReclaimed: 1 })
  })
})

describe('Image.diskUsage', () => {
  test('totals are the files on disk; reclaimable is what a dry-run prune frees; unique bytes are what removing each alone frees', async () => {
    await loadAll()
    await Image.acquire('localhost/pol/b:v1', { sandbox: 'sb' })
    const usage = await Image.diskUsage()
    const files = await tree(cache.home)
    const sum = (prefix: string) => {
      const fs = [...files].filter(([p]) => p.startsWith(prefix))
      return { count: fs.length, bytes: fs.reduce((n, [, f]) => n + f.size, 0) }
    }
    expect(usage.totalBytes).toBe(await cacheSize())
    expect(usage.indexBytes).toBe(sum('db/').bytes)
    expect(usage.layers).toEqual(sum('layers/'))
    expect(usage.fsmeta).toEqual(sum('fsmeta/'))
    expect(usage.vmdk).toEqual(sum('vmdk/'))
    expect(usage.reclaimableBytes).toBe((await Image.prune({ dryRun: true })).bytesReclaimed)
    const byRef = new Map(usage.images.map((i) => [i.reference, i]))
    expect([...byRef.keys()]).toEqual([...A.refs, ...B.refs, ...C.refs].sort())
    expect(byRef.get('localhost/other/c:v1')).toMatchObject({ manifestDigest: C.manifestDigest, sizeBytes: await bytesOf(filesOf(C)), uniqueBytes: await bytesOf(filesOf(C)), sharedBytes: 0, inUse: false, lastUsedAt: null })
    // A has two references: removing one alone frees nothing.
    expect(byRef.get('localhost/pol/a:v1')).toMatchObject({ sizeBytes: await bytesOf(filesOf(A)), uniqueBytes: 0, inUse: false })
    // B is in use: removing it frees nothing while the sandbox holds it.
    expect(byRef.get('localhost/pol/b:v1')).toMatchObject({ sizeBytes: await bytesOf(filesOf(B)), uniqueBytes: 0, inUse: true })
    const before = await artifactTree(cache.home)
    await Image.remove('localhost/other/c:v1')
    expect(removedBetween(before, await artifactTree(cache.home)).bytes).toBe(byRef.get('localhost/other/c:v1')!.uniqueBytes)
  })

  test('an image whose layers another shares: unique bytes are its own layer and root disk', async () => {
    await Image.load(A.layout)
    await Image.load(B.layout)
    const b = (await Image.diskUsage()).images.find((i) => i.reference === 'localhost/pol/b:v1')!
    const own = await bytesOf([...filesOf(B).slice(0, 2), `layers/sha256/${hexOf(B.diffIds[2])}.erofs`])
    expect(b).toMatchObject({ uniqueBytes: own, sharedBytes: b.sizeBytes - own })
    expect(typeof b.lastUsedAt).toBe('object')
  })
})

describe('Image.tag', () => {
  test('a second reference to the same manifest; a target naming another image moves, as docker tag does', async () => {
    await Image.load(A.layout)
    await Image.load(C.layout)
    const h = await Image.tag('localhost/pol/a:v1', 'registry.example/copy:1')
    expect({ reference: h.reference, manifestDigest: h.manifestDigest }).toEqual({ reference: 'registry.example/copy:1', manifestDigest: A.manifestDigest })
    expect((await Image.tag('localhost/pol/a:v1', 'python:dev')).reference).toBe('docker.io/library/python:dev')
    // c:v1 moves to A; C's manifest is then named by nothing: even a prune selecting no reference takes it.
    await Image.tag('localhost/pol/a:alias', 'localhost/other/c:v1')
    expect((await Image.get('localhost/other/c:v1')).manifestDigest).toBe(A.manifestDigest)
    const r = await dryThenReal({ references: [] })
    expect(r).toMatchObject({ imageRefsRemoved: 0, manifestsRemoved: 1, layersRemoved: C.diffIds.length })
    expect(await refs()).toEqual(['docker.io/library/python:dev', 'localhost/other/c:v1', 'localhost/pol/a:alias', 'localhost/pol/a:v1', 'registry.example/copy:1'])
  })

  test('a missing source, a digest target and bad arguments reject', async () => {
    await Image.load(A.layout)
    expect(await rejectionOf(Image.tag('localhost/pol/none:v1', 'x:y'))).toBeInstanceOf(ImageNotFoundError)
    expect(await rejectionOf(Image.tag('localhost/pol/a:v1', `x@sha256:${'0'.repeat(64)}`))).toBeInstanceOf(InvalidArgumentError)
    expect(await rejectionOf((Image.tag as unknown as (a: unknown, b: unknown) => Promise<unknown>)('localhost/pol/a:v1', 3))).toBeInstanceOf(InvalidArgumentError)
    expect(await refs()).toEqual([...A.refs].sort())
  })
})

describe('bad options reject with InvalidArgumentError and change nothing', () => {
  const anyPrune = Image.prune as unknown as (opts: unknown) => Promise<unknown>
  const anyRemove = Image.remove as unknown as (ref: string, opts: unknown) => Promise<unknown>
  const anyCheck = Image.check as unknown as (opts: unknown) => Promise<unknown>

  test.each([
    ['an unknown option (a misspelt dryRun would otherwise prune for real)', { dryrun: true }],
    ['a negative budget', { maxBytes: -1 }],
    ['a fractional budget', { maxBytes: 1.5 }],
    ['a budget that is not a number', { maxBytes: '20GB' }],
    ['an unknown duration unit', { unusedFor: '7y' }],
    ['a duration without a unit', { olderThan: '7' }],
    ['a negative duration', { olderThan: -5 }],
    ['a non-string glob', { references: ['localhost/*', 7] }],
    ['a glob that is not a string or list', { keep: { a: 1 } }],
    ['an empty pattern', { references: '' }],
    ['a malformed reference', { keep: 'UPPER:case' }],
    ['a label value that is neither a string nor true', { labels: { tier: 1 } }],
    ['a label false', { labels: { tier: false } }],
    ['dryRun not a boolean', { dryRun: 'yes' }],
    ['options that are not an object', 'everything'],
  ])('prune: %s', async (_, opts) => {
    await loadAll()
    const before = await state()
    const err = await rejectionOf(anyPrune(opts))
    expect(err).toBeInstanceOf(InvalidArgumentError)
    expect(err.code).toBe('invalid_argument')
    expect(await state()).toEqual(before)
  })

  test('remove and check refuse options they do not know', async () => {
    await loadAll()
    const before = await state()
    expect(await rejectionOf(anyRemove('localhost/pol/a:v1', { forse: true }))).toBeInstanceOf(InvalidArgumentError)
    expect(await rejectionOf(anyCheck({ repiar: true }))).toBeInstanceOf(InvalidArgumentError)
    expect(await state()).toEqual(before)
  })
})
