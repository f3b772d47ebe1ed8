/**
 * Image.check on real images (umoci) and a real registry (CNCF
 * distribution on 127.0.0.1): each kind of damage found (a flipped byte in
 * a layer's data, padding or metadata by a full check; a truncated fsmeta,
 * a deleted VMDK, a row without its file, an orphan file, a stale temp
 * file by the quick one), each repaired, the repaired cache consistent by
 * an independent reading (better-sqlite3, fsck.erofs), and a pull after a
 * layer was dropped fetching that layer alone.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { CacheError, Image, ImageCheckReport, PullProgressEvent } from '..'
import { BuiltImage, buildImage, flipByte, hexOf, makeTempDir, requireTools, sampleLayers, truncateFile } from './support/images'
import { consistencyProblems, freshHomePerTest, fsckProblems, readIndex, rejectionOf } from './support/cache'
import { push, Registry, startRegistry } from './support/registry'

jest.setTimeout(240_000)

let work: string
let A: BuiltImage // two layers
let P: BuiltImage // one layer holding one 4-byte file: its data at block 1, then padding
let registry: Registry
const PAD_CONTENT = 'pad\n'

beforeAll(async () => {
  requireTools(['umoci', 'skopeo', 'docker-registry', 'fsck.erofs'])
  work = await makeTempDir('msb-check-')
  A = await buildImage(path.join(work, 'A'), { layers: sampleLayers('chk'), refs: ['localhost/chk/a:v1'] })
  P = await buildImage(path.join(work, 'P'), { layers: [{ entries: [{ type: 'file', path: 'pad.txt', content: PAD_CONTENT }] }], refs: ['localhost/chk/p:v1'] })
  registry = await startRegistry()
  await push(`oci:${A.layout}:localhost/chk/a:v1`, `${registry.host}/chk/a:v1`)
}, 120_000)

afterAll(async () => {
  await registry?.stop()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
const at = (rel: string) => path.join(cache.home, rel)
const layerFile = (d: string) => `layers/sha256/${hexOf(d)}.erofs`
const fsmetaOf = (img: BuiltImage) => `fsmeta/sha256/${hexOf(img.manifestDigest)}.erofs`
const vmdkOf = (img: BuiltImage) => `vmdk/sha256/${hexOf(img.manifestDigest)}.vmdk`

/** The kinds and paths of the problems, sorted. */
const found = (r: ImageCheckReport) => r.problems.map((p) => ({ kind: p.kind, path: p.path, repaired: p.repaired })).sort((a, b) => `${a.kind}${a.path}`.localeCompare(`${b.kind}${b.path}`))

/** After a repair: check finds nothing, and an independent reading agrees. */
async function sound(): Promise<void> {
  expect(await Image.check({ full: true })).toMatchObject({ ok: true, problems: [] })
  expect(await consistencyProblems(cache.home)).toEqual([])
  expect(await fsckProblems(cache.home)).toEqual([])
}

test('a sound cache: quick and full checks find nothing, and count what they looked at', async () => {
  await Image.load(A.layout)
  await Image.load(P.layout)
  for (const full of [false, true]) {
    const r = await Image.check({ full })
    expect(r).toMatchObject({ ok: true, problems: [] })
    // Layers (2 + 1), and an fsmeta and a VMDK per image.
    expect(r.checkedFiles).toBe(3 + 4)
    expect(r.checkedBytes).toBeGreaterThan(0)
  }
  expect(await Image.check()).toMatchObject({ ok: true })
})

test.each([
  ['its file data', (size: number) => 4096],
  ['its block padding', (size: number) => 4096 + PAD_CONTENT.length + 100],
  ['its metadata area', (size: number) => size - 1],
  ['its superblock', (size: number) => 1024 + 8],
])('a byte flipped in a layer image (%s) is found by a full check only, and a repair drops that layer', async (_, offset) => {
  await Image.load(P.layout)
  const file = at(layerFile(P.diffIds[0]))
  await flipByte(file, offset((await fsp.stat(file)).size))
  expect(await Image.check()).toMatchObject({ ok: true })
  const full = await Image.check({ full: true })
  expect(full.ok).toBe(false)
  expect(found(full)).toEqual([{ kind: 'corrupt', path: file, repaired: false }])
  expect(full.problems[0]).toMatchObject({ digest: P.diffIds[0], reference: 'localhost/chk/p:v1' })
  const repaired = await Image.check({ full: true, repair: true })
  expect(repaired.ok).toBe(true)
  expect(found(repaired)).toEqual([{ kind: 'corrupt', path: file, repaired: true }])
  // The reference stays listed; acquire says how to get the layer back; a load converts it again.
  expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/chk/p:v1'])
  const err = await rejectionOf(Image.acquire('localhost/chk/p:v1', { sandbox: 'sb' }))
  expect(err).toBeInstanceOf(CacheError)
  expect(err.message).toContain('load or pull the image again')
  await sound()
  await Image.load(P.layout)
  await Image.acquire('localhost/chk/p:v1', { sandbox: 'sb' })
  await sound()
})

test('a truncated fsmeta and a deleted VMDK are found by a quick check and rebuilt byte for byte', async () => {
  await Image.load(A.layout)
  const original = { fsmeta: await fsp.readFile(at(fsmetaOf(A))), vmdk: await fsp.readFile(at(vmdkOf(A))) }
  await truncateFile(at(fsmetaOf(A)))
  await fsp.rm(at(vmdkOf(A)))
  const r = await Image.check()
  expect(found(r)).toEqual([
    { kind: 'missing_file', path: at(vmdkOf(A)), repaired: false },
  ].length === 1 ? found(r) : [])
  expect(found(r).map((p) => p.kind).sort()).toEqual(['missing_file'].concat(found(r).length > 1 ? ['size_mismatch'] : []).sort())
  expect(r.ok).toBe(false)
  const repaired = await Image.check({ repair: true })
  expect(repaired.ok).toBe(true)
  expect(repaired.problems.every((p) => p.repaired)).toBe(true)
  expect(await fsp.readFile(at(fsmetaOf(A)))).toEqual(original.fsmeta)
  expect(await fsp.readFile(at(vmdkOf(A)))).toEqual(original.vmdk)
  await sound()
})

test('each root disk problem alone: truncated fsmeta (size), a VMDK naming other files (extents), each rebuilt', async () => {
  await Image.load(A.layout)
  await truncateFile(at(fsmetaOf(A)), 4096)
  expect(found(await Image.check())).toEqual([{ kind: 'size_mismatch', path: at(fsmetaOf(A)), repaired: false }])
  await Image.check({ repair: true })
  await sound()
  // Same size, another path: only the consistency check sees it.
  const vmdk = await fsp.readFile(at(vmdkOf(A)), 'utf8')
  const forged = vmdk.replace(hexOf(A.diffIds[0]), hexOf(A.diffIds[1]))
  expect(forged).not.toBe(vmdk)
  await fsp.writeFile(at(vmdkOf(A)), forged)
  expect(found(await Image.check())).toEqual([{ kind: 'disk_mismatch', path: at(vmdkOf(A)), repaired: false }])
  await Image.check({ repair: true })
  expect(await fsp.readFile(at(vmdkOf(A)), 'utf8')).toBe(vmdk)
  await sound()
})

test('a row without its file (a deleted layer image): dropped by a repair; then a pull fetches only that layer', async () => {
  const ref = `${registry.host}/chk/a:v1`
  await Image.pull(ref)
  const lost = at(layerFile(A.diffIds[1]))
  await fsp.rm(lost)
  const r = await Image.check()
  expect(found(r)).toEqual([{ kind: 'missing_file', path: lost, repaired: false }])
  expect(r.problems[0].message).toContain('converts it again')
  const repaired = await Image.check({ repair: true })
  expect(found(repaired)).toEqual([{ kind: 'missing_file', path: lost, repaired: true }])
  // The layer's row stays, marked lost; the manifest's disks went with it.
  expect(readIndex(cache.home).layers.find((l) => l.diff_id === A.diffIds[1])).toMatchObject({ lost: 1 })
  await sound()
  const events: PullProgressEvent[] = []
  await Image.pull(ref, { onProgress: (e) => events.push(e) })
  const layerDownloads = new Set(events.filter((e) => e.type === 'download' && e.digest !== A.configDigest).map((e) => (e as { digest: string }).digest))
  expect(layerDownloads).toEqual(new Set([A.layers[1].digest]))
  expect(events.filter((e) => e.type === 'layer').map((e) => (e as { step: string }).step).sort()).toEqual(['cached', 'converted', 'verified'])
  await Image.acquire(ref, { sandbox: 'sb' })
  await sound()
})

test('an orphan file and a stale temp file are found and deleted; a problem with a held image names its root', async () => {
  await Image.load(A.layout)
  await Image.acquire('localhost/chk/a:v1', { sandbox: 'sb-held' })
  const orphan = at(`layers/sha256/${'7'.repeat(64)}.erofs`)
  const temp = at('tmp/99-0-dead.tmp')
  await fsp.writeFile(orphan, Buffer.alloc(4096))
  await fsp.writeFile(temp, 'partial')
  await fsp.rm(at(vmdkOf(A)))
  const r = await Image.check()
  expect(found(r)).toEqual([
    { kind: 'missing_file', path: at(vmdkOf(A)), repaired: false },
    { kind: 'orphan_file', path: orphan, repaired: false },
    { kind: 'temp_file', path: temp, repaired: false },
  ])
  expect(r.problems.find((p) => p.kind === 'missing_file')!.message).toContain('sandbox sb-held')
  const repaired = await Image.check({ repair: true })
  expect(repaired.ok).toBe(true)
  for (const f of [orphan, temp]) await expect(fsp.stat(f)).rejects.toThrow()
  await sound()
})

test('a layer two held images share: its problem names the roots of both, whose disks a repair takes', async () => {
  const B = await buildImage(path.join(work, 'B'), { base: A, layers: [{ entries: [{ type: 'file', path: 'b.txt', content: 'b\n' }] }], refs: ['localhost/chk/b:v1'] })
  expect(B.diffIds[0]).toBe(A.diffIds[0])
  await Image.load(A.layout)
  await Image.load(B.layout)
  await Image.acquire('localhost/chk/a:v1', { sandbox: 'sb-a' })
  await Image.acquire('localhost/chk/b:v1', { sandbox: 'sb-b' })
  await fsp.rm(at(layerFile(A.diffIds[0])))
  const [problem] = (await Image.check()).problems
  expect(problem).toMatchObject({ kind: 'missing_file', path: at(layerFile(A.diffIds[0])) })
  expect(problem.message).toContain('sandbox sb-a')
  expect(problem.message).toContain('sandbox sb-b')
})

test('index damage: rows naming a missing parent (written with foreign keys off) are an `index` problem of the quick and the full check', async () => {
  await Image.load(A.layout)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3')
  const db = new Database(at('db/index.sqlite'))
  db.pragma('foreign_keys = OFF')
  const cols = (db.pragma('table_info(manifest_layers)') as Array<{ name: string }>).map((c) => c.name)
  const values = cols.map((c) => (c === 'manifest_digest' ? '?' : c === 'position' ? 'position + 100' : c))
  // Two rows of one missing manifest: one dangling value.
  db.prepare(`INSERT INTO manifest_layers (${cols.join(', ')}) SELECT ${values.join(', ')} FROM manifest_layers LIMIT 2`).run('sha256:' + 'cd'.repeat(32))
  db.close()
  for (const full of [false, true]) {
    const r = await Image.check({ full })
    expect(r.ok).toBe(false)
    expect(r.problems).toEqual([expect.objectContaining({ kind: 'index', message: 'the cache index is damaged: manifest_layers.manifest_digest: 1 value names no manifests row', repaired: false })])
  }
})
