/**
 * Several processes sharing one cache: node children loading archives
 * whose images share layers, at the same time, and a prune racing with
 * loads. Every call must succeed, and the cache must end consistent: every
 * file the index names exists with its recorded size, every artifact file is
 * named, nothing is left in tmp/, no row is duplicated, and fsck.erofs
 * accepts every layer and fsmeta image.
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { BuiltImage, buildImage, gzipFile, makeTempDir, mergeDockerArchives, noise, requireTools, toDockerArchive, toOciArchive } from './support/images'
import { ChildResult, PACKAGE_ROOT, childEnv, spawnCollect, consistencyProblems, freshHomePerTest, fsckProblems, readIndex, runNodeScript, tmpFiles } from './support/cache'

const IMAGES = 4
let work: string
let base: BuiltImage
const images: BuiltImage[] = []
const archives: string[] = []
const dockerArchives: string[] = []

beforeAll(async () => {
  requireTools()
  work = await makeTempDir('msb-conc-')
  // Two shared bottom layers of incompressible data, so conversions take long enough to overlap.
  base = await buildImage(path.join(work, 'base'), {
    layers: [
      { entries: [{ type: 'file', path: 'shared/one.bin', content: noise(3 << 20, 1) }, { type: 'file', path: 'etc/base', content: 'base\n' }] },
      { entries: [{ type: 'file', path: 'shared/two.bin', content: noise(2 << 20, 2) }] },
    ],
    refs: ['localhost/conc/base:v1'],
  })
  for (let i = 0; i < IMAGES; i++) {
    const img = await buildImage(path.join(work, `img${i}`), {
      base,
      layers: [{ entries: [{ type: 'file', path: `own/${i}.bin`, content: noise(1 << 20, 100 + i) }] }],
      config: { cmd: [`img${i}`] },
      refs: [`localhost/conc/img${i}:v1`],
    })
    images.push(img)
    // Formats vary: plain docker archive, gzip-compressed docker archive, oci-archive.
    const docker = await toDockerArchive(img, path.join(work, `img${i}.docker.tar`))
    dockerArchives.push(docker)
    if (i % 3 === 0) archives.push(docker)
    else if (i % 3 === 1) archives.push(await gzipFile(docker, path.join(work, `img${i}.docker.tar.gz`)))
    else archives.push(await toOciArchive(img, path.join(work, `img${i}.oci.tar`)))
  }
}, 180_000)

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true })
})

const cache = freshHomePerTest()

/** A child that loads `archive` `times` times and prints one JSON line per attempt. */
function loader(archive: string, times: number): Promise<ChildResult> {
  const src = `
    const { Image } = require(${JSON.stringify(PACKAGE_ROOT)});
    (async () => {
      for (let i = 0; i < ${times}; i++) {
        try {
          const hs = await Image.load(${JSON.stringify(archive)});
          console.log(JSON.stringify({ ok: hs.map((h) => h.reference) }));
        } catch (e) {
          console.log(JSON.stringify({ error: { name: e.constructor.name, code: e.code, message: e.message } }));
        }
      }
    })();`
  return runNodeScript(src, childEnv({ MSB_HOME: cache.home, MSB_BACKEND: undefined }), { timeoutMs: 240_000 })
}

/** A child that prunes until `stopFile` exists (at least `min` times); prints one JSON line per prune. */
function pruner(stopFile: string, min: number, pauseMs = 5): Promise<ChildResult> {
  const src = `
    const fs = require('fs');
    const { Image } = require(${JSON.stringify(PACKAGE_ROOT)});
    (async () => {
      for (let n = 0; n < ${min} || !fs.existsSync(${JSON.stringify(stopFile)}); n++) {
        try {
          const r = await Image.prune();
          console.log(JSON.stringify({ ok: r }));
        } catch (e) {
          console.log(JSON.stringify({ error: { name: e.constructor.name, code: e.code, message: e.message } }));
        }
        if (${pauseMs} > 0) await new Promise((r) => setTimeout(r, ${pauseMs}));
      }
    })();`
  return runNodeScript(src, childEnv({ MSB_HOME: cache.home, MSB_BACKEND: undefined }), { timeoutMs: 240_000 })
}

type Line = { ok?: unknown; error?: { name: string; code: string; message: string } }
function lines(r: ChildResult): Line[] {
  expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' })
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
}

async function expectHealthyCache(): Promise<void> {
  expect(await consistencyProblems(cache.home)).toEqual([])
  expect(await tmpFiles(cache.home)).toEqual([])
  expect(await fsckProblems(cache.home)).toEqual([])
}

test('processes loading archives that share layers at once all succeed, each layer converted into one file', async () => {
  const runs = await Promise.all([
    ...archives.map((a) => loader(a, 1)),
    // The same archive twice more, racing the first.
    loader(archives[0], 1),
    loader(archives[1], 1),
  ])
  const results = runs.map(lines)
  expect(results.flat().filter((l) => l.error)).toEqual([])
  expect(results.map((r) => r.length)).toEqual(runs.map(() => 1))
  expect((await Image.list()).map((h) => h.reference)).toEqual(images.map((_, i) => `localhost/conc/img${i}:v1`))
  const state = readIndex(cache.home)
  const diffIds = new Set(images.flatMap((i) => i.diffIds))
  expect(diffIds.size).toBe(2 + IMAGES)
  expect(state.layers.map((l) => l.diff_id).sort()).toEqual([...diffIds].sort())
  expect(state.refs).toHaveLength(IMAGES)
  for (const [i, img] of images.entries()) {
    const detail = await Image.inspect(`localhost/conc/img${i}:v1`)
    expect(detail.layers.map((l) => l.diffId)).toEqual(img.diffIds)
    expect(detail.config!.digest).toBe(img.configDigest)
  }
  await expectHealthyCache()
})

test('one process loading several archives at once (worker threads) ends with one copy of each layer', async () => {
  const handles = await Promise.all([...archives, ...archives].map((a) => Image.load(a)))
  expect(handles.map((hs) => hs.map((h) => h.reference))).toEqual([...archives, ...archives].map((_, i) => [`localhost/conc/img${i % IMAGES}:v1`]))
  const state = readIndex(cache.home)
  expect(state.layers).toHaveLength(2 + IMAGES)
  expect(state.manifests).toHaveLength(IMAGES)
  await expectHealthyCache()
})

test('loads racing with prune: every load and every prune succeeds, and the cache stays consistent', async () => {
  const stop = path.join(cache.home, '..', 'stop')
  const prunes = pruner(stop, 5)
  const loads = Promise.all(archives.map((a) => loader(a, 3)))
  const loadRuns = await loads
  await fsp.writeFile(stop, '')
  const pruneRun = await prunes
  const loadLines = loadRuns.map(lines)
  const pruneLines = lines(pruneRun)
  expect(pruneLines.length).toBeGreaterThanOrEqual(5)
  // Every attempt of every process, and its outcome.
  expect(loadLines.map((ls, i) => ({ archive: path.basename(archives[i]), errors: ls.filter((l) => l.error).map((l) => l.error) }))).toEqual(
    archives.map((a) => ({ archive: path.basename(a), errors: [] })),
  )
  expect(loadLines.map((ls) => ls.length)).toEqual(archives.map(() => 3))
  expect(pruneLines.filter((l) => l.error)).toEqual([])
  await expectHealthyCache()
  // The cache still works: everything loads again and checks out.
  for (const a of archives) await Image.load(a)
  expect((await Image.list()).map((h) => h.reference)).toEqual(images.map((_, i) => `localhost/conc/img${i}:v1`))
  await expectHealthyCache()
})

test('a gzip-compressed archive loading while prunes run: the decompressed copy is not swept away', async () => {
  // Image.load decompresses such archives into the cache's tmp/ first; prune sweeps tmp/.
  const gz = archives.find((a) => a.endsWith('.gz'))!
  const stop = path.join(cache.home, '..', 'stop')
  const prunes = pruner(stop, 3)
  const load = await loader(gz, 6)
  await fs.promises.writeFile(stop, '')
  expect(lines(await prunes).filter((l) => l.error)).toEqual([])
  expect(lines(load).map((l) => l.error ?? 'ok')).toEqual(Array(6).fill('ok'))
  await expectHealthyCache()
})

test('a multi-image load racing prunes returns the handles of what it loaded', async () => {
  // Between recording an image and reading back its handle, a prune may drop the
  // (still unused) reference: the load must not then report ImageNotFoundError.
  const multi = await mergeDockerArchives(dockerArchives, path.join(cache.home, '..', 'multi.tar'))
  // The window is short: several rounds of 4 loaders x 25 loads against a busy pruner.
  for (let round = 0; round < 4; round++) {
    const stop = path.join(cache.home, '..', `stop-${round}`)
    const prunes = pruner(stop, 3)
    const loads = await Promise.all([0, 1, 2, 3].map(() => loader(multi, 25)))
    await fs.promises.writeFile(stop, '')
    expect(lines(await prunes).filter((l) => l.error)).toEqual([])
    for (const l of loads) expect({ round, outcomes: lines(l).map((x) => x.error ?? 'ok') }).toEqual({ round, outcomes: Array(25).fill('ok') })
  }
  await expectHealthyCache()
})

test('processes opening a brand-new cache at the same instant all succeed', async () => {
  // 8 long-lived processes; in each of 40 rounds they all make their first
  // call on a new cache directory at once (released by a go-file).
  const N = 8
  const ROUNDS = 40
  const dir = path.join(cache.home, '..', 'rounds')
  await fsp.mkdir(dir)
  const src = `
    const fs = require('fs'); const path = require('path');
    const { Image } = require(${JSON.stringify(PACKAGE_ROOT)});
    const [dir, id] = [${JSON.stringify(dir)}, process.argv[1]];
    (async () => {
      for (let r = 0; r < ${ROUNDS}; r++) {
        while (!fs.existsSync(path.join(dir, 'go-' + r))) await new Promise((res) => setTimeout(res, 1));
        process.env.MSB_HOME = path.join(dir, 'cache.home-' + r);
        try {
          await (Number(id) % 2 ? Image.list() : Image.prune());
          console.log(JSON.stringify({ ok: r }));
        } catch (e) {
          console.log(JSON.stringify({ error: { round: r, name: e.constructor.name, code: e.code, message: e.message } }));
        }
        fs.writeFileSync(path.join(dir, 'done-' + r + '-' + id), '');
      }
    })();`
  const kids = Array.from({ length: N }, (_, i) =>
    spawnCollect(process.execPath, ['-e', src, String(i)], { env: childEnv({ MSB_HOME: undefined, MSB_BACKEND: undefined }), timeoutMs: 120_000 }),
  )
  await new Promise((r) => setTimeout(r, 1000))
  for (let r = 0; r < ROUNDS; r++) {
    await fsp.writeFile(path.join(dir, `go-${r}`), '')
    const deadline = Date.now() + 60_000
    while (!Array.from({ length: N }, (_, i) => fs.existsSync(path.join(dir, `done-${r}-${i}`))).every(Boolean)) {
      if (Date.now() > deadline) throw new Error(`round ${r} did not finish`)
      await new Promise((res) => setTimeout(res, 2))
    }
  }
  const results = (await Promise.all(kids)).map(lines)
  expect(results.flat().filter((l) => l.error)).toEqual([])
  expect(results.map((r) => r.length)).toEqual(Array(N).fill(ROUNDS))
})

test('acquire (rebuilding lost disks) racing with prune and loads keeps the acquired image', async () => {
  for (const a of archives) await Image.load(a)
  // A snapshot holds img0, so the racing prunes must keep it for the acquire.
  await Image.pinSnapshot('keep', 'localhost/conc/img0:v1')
  await Image.pinSnapshot('keep-2', 'localhost/conc/img2:v1')
  // Lose the disks: acquire must rebuild them while others work.
  for (const dir of ['fsmeta/sha256', 'vmdk/sha256']) for (const f of await fsp.readdir(path.join(cache.home, dir))) await fsp.rm(path.join(cache.home, dir, f))
  const stop = path.join(cache.home, '..', 'stop')
  const acquireSrc = `
    const { Image } = require(${JSON.stringify(PACKAGE_ROOT)});
    (async () => {
      try {
        const b = await Image.acquire('localhost/conc/img0:v1', { sandbox: 'racer' });
        console.log(JSON.stringify({ ok: b.layers.length }));
      } catch (e) {
        console.log(JSON.stringify({ error: { name: e.constructor.name, code: e.code, message: e.message } }));
      }
    })();`
  const prunes = pruner(stop, 3)
  const others = Promise.all([runNodeScript(acquireSrc, childEnv({ MSB_HOME: cache.home, MSB_BACKEND: undefined })), loader(archives[2], 1)])
  const [acq, load] = await others
  await fsp.writeFile(stop, '')
  const pruneLines = lines(await prunes)
  expect(lines(acq)).toEqual([{ ok: images[0].diffIds.length }])
  expect(pruneLines.filter((l) => l.error)).toEqual([])
  // img2 is pinned too, so its load has nothing to lose to the prunes.
  expect(lines(load)).toEqual([{ ok: ['localhost/conc/img2:v1'] }])
  expect((await Image.list()).map((h) => h.reference)).toContain('localhost/conc/img0:v1')
  const boot = await Image.acquire('localhost/conc/img0:v1', { sandbox: 'racer' })
  for (const f of [boot.fsmetaPath, boot.vmdkPath, ...boot.layers]) await fsp.access(f)
  await expectHealthyCache()
})

test('a load killed mid-way (SIGKILL) leaves an index naming only complete files; prune sweeps the leftovers', async () => {
  const big = await buildImage(path.join(work, 'big'), {
    base,
    layers: [{ entries: [{ type: 'file', path: 'big/a.bin', content: noise(24 << 20, 7) }] }],
    refs: ['localhost/conc/big:v1'],
  })
  const archive = await toDockerArchive(big, path.join(work, 'big.docker.tar'))
  await Image.load(archives[0]) // an image that must survive untouched
  const { spawn } = await import('child_process')
  const child = spawn(process.execPath, ['-e', `require(${JSON.stringify(PACKAGE_ROOT)}).Image.load(${JSON.stringify(archive)})`], {
    env: childEnv({ MSB_HOME: cache.home, MSB_BACKEND: undefined }),
    stdio: 'ignore',
  })
  const exited = new Promise((r) => child.on('exit', r))
  // Kill it once it is writing a temp file (converting a layer).
  const deadline = Date.now() + 60_000
  while ((await tmpFiles(cache.home)).length === 0) {
    if (Date.now() > deadline) throw new Error('the load never wrote a temp file')
    await new Promise((r) => setTimeout(r, 5))
  }
  child.kill('SIGKILL')
  await exited
  // Whatever the crash left, every file the index names is there and complete.
  expect((await consistencyProblems(cache.home)).filter((p) => !p.startsWith('unindexed artifact') && !p.startsWith('file left in tmp/'))).toEqual([])
  expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/conc/img0:v1'])
  await Image.pinSnapshot('keep', 'localhost/conc/img0:v1')
  await Image.prune()
  await expectHealthyCache()
  const [h] = await Image.load(archive)
  expect(h.reference).toBe('localhost/conc/big:v1')
  expect((await Image.inspect('localhost/conc/big:v1')).layers.map((l) => l.diffId)).toEqual(big.diffIds)
  await expectHealthyCache()
})
