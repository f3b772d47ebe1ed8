/**
 * The power-loss harness's short form (the long one is bench/powerloss.mjs):
 * the engine runs in a VM on an ext4 disk and qemu is SIGKILLed in the
 * middle of seeded operations, a few times, each cut followed by e2fsck,
 * a copy of the cache taken off the disk and every check of
 * support/crash-check.ts on it (see support/powerloss.ts). `POWERLOSS_SEED`
 * replays a run; the seed is printed either way.
 *
 * The checks are shown to fail first: on a cache a boot left intact they
 * find nothing, and on the same cache with a layer truncated by hand, or
 * references the operations cannot explain, they must find the damage.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { readIndex } from './support/cache'
import { detectFeatures } from './support/crash-world'
import { bootAndCut, checkRecovered, describePowerlossReport, e2fsck, extractCache, makePowerlossWorld, powerlossRounds, PowerlossWorld, referenceProblem } from './support/powerloss'

jest.setTimeout(600_000)

const KILLS = 4
let world: PowerlossWorld
beforeAll(async () => {
  // Builds the guest program (incremental after `cargo test --release --target <host>`) and its initramfs.
  world = await makePowerlossWorld()
}, 900_000)
afterAll(async () => world?.stop())

test('the checks find nothing on a cache a boot left intact, and see a truncated layer and unexplained references', async () => {
  // Seed 1 on the fresh disk ends with images in the cache (the workload depends only on the seed and the cache).
  const boot = await bootAndCut(world, 1, 6, { delay: () => Infinity, finished: () => {} })
  expect({ cut: boot.cut, status: boot.status, ended: boot.ops.filter((o) => o.end).length }).toEqual({ cut: false, status: 'ok', ended: 7 })
  expect((await e2fsck(world.disk)).code).toBe(0)
  const { check } = await detectFeatures()
  const intact = readIndex(await extractCache(world)).refs.map((r) => r.reference)
  expect(await checkRecovered(world, undefined, check)).toEqual({ problems: [], debris: [] })

  const damaged = await extractCache(world)
  const layers = readIndex(damaged).layers
  expect(layers.length).toBeGreaterThan(0)
  await fsp.truncate(path.join(damaged, 'layers/sha256', layers[0].diff_id.replace('sha256:', '') + '.erofs'), 4096)
  const found = (await checkRecovered(world, undefined, check)).problems.join('\n')
  expect(found).toMatch(/is 4096 bytes, index says/)
  expect(found).toMatch(/fsck\.erofs layers/)

  const refs = boot.ops[boot.ops.length - 1].end!.refs
  expect(referenceProblem(world, refs, intact, undefined)).toEqual({ visible: false })
  // A finished operation's reference lost, and one nothing in flight could add.
  expect(referenceProblem(world, refs, [], { op: 'tag', source: refs[0], target: 'localhost/powerloss/tag0:v1' }).problem).toMatch(/lost/)
  expect(referenceProblem(world, refs, [...refs, 'localhost/elsewhere:v1'], { op: 'prune' }).problem).toMatch(/gained \["localhost\/elsewhere:v1"\]/)
})

test(`power cut at ${KILLS} seeded moments of the workload leaves a disk whose cache checks out, and the cut operation succeeds again`, async () => {
  const seed = process.env.POWERLOSS_SEED ? Number(process.env.POWERLOSS_SEED) : Math.floor(Math.random() * 2 ** 31)
  console.log(`powerloss.spec: seed ${seed} (POWERLOSS_SEED=${seed} replays it)`)
  const report = await powerlossRounds({ world, seed, kills: KILLS, maxRounds: 2 * KILLS, log: (l) => console.log(l) })
  console.log(describePowerlossReport(report))
  expect(report.problems).toEqual([])
  expect(report.kills).toBeGreaterThanOrEqual(KILLS)
  // The boots worked: more operations ran than were cut.
  const ran = Object.values(report.byOp).reduce((n, k) => n + k.ran, 0)
  expect(ran).toBeGreaterThan(report.rounds)
})
