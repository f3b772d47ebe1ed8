/**
 * The soak's short form (the long one is bench/soak.mjs): 4 processes for
 * 15 s looping over pull, load, remove, prune, acquire/release and save
 * (and tag and check when the addon has them) against one cache and a
 * loopback registry. No unexpected error, no layer converted while it
 * was present, a consistent cache at the end, nothing left after removing
 * everything. `SOAK_SEED` replays a run's plans; the seed is printed.
 *
 * The conversion counter is tested first on a real directory, so a
 * watcher that saw nothing would fail here rather than pass the soak.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { freshHomePerTest } from './support/cache'
import { countLayerEvents, describeSoakReport, soak, watch } from './support/crash-soak'
import { makeWorld, World } from './support/crash-world'

jest.setTimeout(600_000)

let world: World
beforeAll(async () => {
  world = await makeWorld()
}, 300_000)
afterAll(async () => world?.stop())

const cache = freshHomePerTest()

test('the layer watcher counts publications by rename and sees a second one onto a present layer', async () => {
  const dir = path.join(cache.root, 'layers')
  const tmp = path.join(cache.root, 'tmp')
  await fsp.mkdir(dir)
  await fsp.mkdir(tmp)
  const w = await watch(dir)
  const publish = async (name: string) => {
    await fsp.writeFile(path.join(tmp, 'x'), name)
    await fsp.rename(path.join(tmp, 'x'), path.join(dir, name))
  }
  await publish('a.erofs')
  await publish('b.erofs')
  await fsp.rm(path.join(dir, 'a.erofs'))
  await publish('a.erofs')
  await publish('b.erofs')
  await w.stop()
  expect(countLayerEvents(w.lines)).toEqual({ publications: 4, removals: 1, distinct: 2, duplicates: ['b.erofs'], anomalies: [] })
})

test('4 processes for 15 s: every operation succeeds or loses a race legitimately, each layer converted once per absence', async () => {
  const seed = process.env.SOAK_SEED ? Number(process.env.SOAK_SEED) : Math.floor(Math.random() * 2 ** 31)
  console.log(`soak.spec: seed ${seed} (SOAK_SEED=${seed} replays its plans)`)
  const report = await soak({ world, home: cache.home, seed, workers: 4, seconds: 15 })
  console.log(describeSoakReport(report))
  expect(report.problems).toEqual([])
  expect(report.unexpected).toEqual([])
  // The soak did real work: every kind of operation ran and layers came and went.
  for (const op of ['pull', 'load', 'remove', 'prune', 'acquire', 'save']) expect({ op, ok: report.byOp[op]?.ok > 0 }).toEqual({ op, ok: true })
  expect(report.layers.publications).toBeGreaterThan(report.layers.distinct)
  expect(Math.min(...report.peakRss)).toBeGreaterThan(0)
})
