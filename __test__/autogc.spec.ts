/**
 * Automatic collection against a real registry (CNCF distribution on
 * 127.0.0.1): `$MSB_HOME/config.json` states a budget smaller than three
 * images; pulling a fourth keeps the cache within it, keeps every rooted
 * image and the new one, evicts the least recently used, and reports it
 * through `onProgress`. A bad config.json refuses the pull before anything
 * is fetched. And two processes running check, prune and pull at once
 * leave a consistent cache.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image, InvalidArgumentError, PullProgressEvent } from '..'
import { BuiltImage, buildImage, makeTempDir, noise, requireTools } from './support/images'
import { childEnv, consistencyProblems, freshHomePerTest, PACKAGE_ROOT, rejectionOf, runNodeScript, tree } from './support/cache'
import { push, Registry, startRegistry } from './support/registry'

jest.setTimeout(300_000)

const IMAGES = 4
let work: string
let registry: Registry
const images: BuiltImage[] = []
const ref = (i: number) => `${registry.host}/gc/img${i}:v1`

beforeAll(async () => {
  requireTools(['umoci', 'skopeo', 'docker-registry'])
  work = await makeTempDir('msb-autogc-')
  registry = await startRegistry()
  for (let i = 0; i < IMAGES; i++) {
    // 1 MiB of noise each: the images, not the index, make the cache's size.
    const img = await buildImage(path.join(work, `img${i}`), { layers: [{ entries: [{ type: 'file', path: `data${i}.bin`, content: noise(1 << 20, i + 1) }] }], refs: [`localhost/gc/img${i}:v1`] })
    await push(`oci:${img.layout}:localhost/gc/img${i}:v1`, `${registry.host}/gc/img${i}:v1`)
    images.push(img)
  }
}, 240_000)

afterAll(async () => {
  await registry?.stop()
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function cacheSize(): Promise<number> {
  let n = 0
  for (const [p, f] of await tree(cache.home)) if (!p.startsWith('locks/') && !p.startsWith('tmp/')) n += f.size
  return n
}

async function writeConfig(gc: Record<string, unknown>): Promise<void> {
  await fsp.mkdir(cache.home, { recursive: true })
  await fsp.writeFile(path.join(cache.home, 'config.json'), JSON.stringify({ gc }))
}

test('pulling a fourth image over a budget smaller than three evicts the least recently used, never a root or the new image', async () => {
  for (let i = 0; i < 3; i++) await Image.pull(ref(i))
  await Image.acquire(ref(0), { sandbox: 'running' }) // a root, and the oldest: never evicted
  await sleep(20)
  await Image.acquire(ref(2), { sandbox: 'lru' }) // used before img1: the least recently used
  await Image.release('lru')
  await sleep(20)
  await Image.acquire(ref(1), { sandbox: 'lru' })
  await Image.release('lru')
  const three = await cacheSize()
  const one = (await Image.diskUsage()).images.find((i) => i.reference === ref(2))!.uniqueBytes
  // Four images do not fit; three do after the least recently used goes.
  const maxBytes = three + Math.floor(one / 2)
  const targetBytes = three + Math.floor(one / 4)
  await writeConfig({ maxBytes, targetBytes, minAge: 0 })
  const events: PullProgressEvent[] = []
  await Image.pull(ref(3), { onProgress: (e) => events.push(e) })
  expect((await Image.list()).map((h) => h.reference)).toEqual([ref(0), ref(1), ref(3)])
  const gc = events.filter((e) => e.type === 'gc')
  expect(gc).toEqual([{ type: 'gc', references: [ref(2)], bytesReclaimed: expect.any(Number), remainingBytes: expect.any(Number), budgetBytes: targetBytes }])
  expect(events.map((e) => e.type).slice(-2)).toEqual(['complete', 'gc'])
  const size = await cacheSize()
  expect(size).toBeLessThanOrEqual(maxBytes)
  expect(size).toBeLessThanOrEqual(targetBytes + 64 * 1024)
  expect(await consistencyProblems(cache.home)).toEqual([])
  // Under the budget, nothing is collected.
  const quiet: PullProgressEvent[] = []
  await Image.pull(ref(3), { onProgress: (e) => quiet.push(e) })
  expect(quiet.filter((e) => e.type === 'gc')).toEqual([])
})

test('minAge spares references that entered the cache recently; roots alone over the budget evict nothing they hold', async () => {
  for (let i = 0; i < 3; i++) await Image.pull(ref(i))
  await writeConfig({ maxBytes: 1, minAge: '1h' })
  const events: PullProgressEvent[] = []
  await Image.pull(ref(3), { onProgress: (e) => events.push(e) })
  expect((await Image.list()).length).toBe(4)
  expect(events.filter((e) => e.type === 'gc')).toEqual([{ type: 'gc', references: [], bytesReclaimed: 0, remainingBytes: expect.any(Number), budgetBytes: 0 }])
})

test('a bad config.json refuses the pull and the load before anything is fetched', async () => {
  for (const gc of [{ maxBytes: -1 }, { maxBytes: 10, minAge: '10y' }, { maxBytes: 10, targetBytes: 11 }, { maxbytes: 10 }]) {
    await writeConfig(gc)
    const err = await rejectionOf(Image.pull(ref(0)))
    expect(err).toBeInstanceOf(InvalidArgumentError)
    expect(err.message).toContain('config.json')
    expect(await rejectionOf(Image.load(images[0].layout))).toBeInstanceOf(InvalidArgumentError)
  }
  expect(await Image.list()).toEqual([])
})

test('two processes running check --repair, prune and pull at once leave a consistent cache', async () => {
  const script = (id: number) => `
const { Image } = require(${JSON.stringify(PACKAGE_ROOT)});
(async () => {
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < ${IMAGES}; i++) {
      await Image.pull(${JSON.stringify(registry.host)} + '/gc/img' + ((i + ${id}) % ${IMAGES}) + ':v1');
      const report = await Image.check({ repair: true });
      if (!report.ok) throw new Error('check: ' + JSON.stringify(report.problems));
      if ((round + i + ${id}) % 3 === 0) await Image.prune(round % 2 ? { dryRun: true } : { maxBytes: ${3 << 20} });
    }
  }
  console.log('done');
})().catch((e) => { console.error(e); process.exit(1); });
`
  const env = childEnv({ MSB_HOME: cache.home })
  const results = await Promise.all([0, 1].map((id) => runNodeScript(script(id), env, { timeoutMs: 240_000 })))
  for (const r of results) expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: 'done\n', stderr: '' })
  expect(await consistencyProblems(cache.home)).toEqual([])
  expect(await Image.check({ full: true })).toMatchObject({ ok: true, problems: [] })
})
