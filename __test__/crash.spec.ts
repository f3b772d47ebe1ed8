/**
 * The crash harness's short form (the long one is bench/crash.mjs): child
 * processes SIGKILLed at 40 or more seeded random moments of load, pull
 * (loopback registry), prune, remove, save and acquire (and tag and check
 * when the addon has them), each kill followed by every check of
 * support/crash-check.ts and a rerun of the killed operation; at the end,
 * removing everything and pruning must leave no file. `CRASH_SEED`
 * replays a run; the seed is printed either way.
 *
 * The checks themselves are tested first, on damage made by hand, so a
 * harness that could not see a broken cache would fail here.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '..'
import { freshHomePerTest, readIndex } from './support/cache'
import { apiProblems, diskFindings, drainProblems, saveOutputProblems } from './support/crash-check'
import { crashRounds, describeCrashReport, opKinds, runAndKill } from './support/crash-run'
import { makeWorld, World } from './support/crash-world'

jest.setTimeout(900_000)

const KILLS = 40
let world: World
beforeAll(async () => {
  world = await makeWorld()
}, 300_000)
afterAll(async () => world?.stop())

const cache = freshHomePerTest()

test('the checks see what a crash could break: missing, truncated and unreachable files, bad rows, a partial archive', async () => {
  const [h] = await Image.load(world.archives[0].path)
  expect(await diskFindings(cache.home, false)).toEqual({ problems: [], debris: [] })
  expect(await apiProblems(cache.home, 'probe')).toEqual([])
  const state = readIndex(cache.home)
  const layer = path.join(cache.home, 'layers/sha256', state.layers[0].diff_id.replace('sha256:', '') + '.erofs')
  const fsmeta = path.join(cache.home, 'fsmeta/sha256', h.manifestDigest!.replace('sha256:', '') + '.erofs')
  // Debris: legitimate after a crash, a problem otherwise.
  await fsp.writeFile(path.join(cache.home, 'tmp', 'left-by-a-crash.tmp'), 'x')
  // A crash leaves whole files only (published by rename): an orphan is a sound image no row names.
  await fsp.copyFile(layer, path.join(cache.home, 'layers/sha256', 'ab'.repeat(32) + '.erofs'))
  const crashed = await diskFindings(cache.home, true)
  expect(crashed.problems).toEqual([])
  expect(crashed.debris.length).toBeGreaterThanOrEqual(2)
  expect((await diskFindings(cache.home, false)).problems.length).toBeGreaterThanOrEqual(2)
  // A truncated layer and a missing fsmeta are problems even after a crash.
  await fsp.truncate(layer, 4096)
  await fsp.rm(fsmeta)
  const broken = (await diskFindings(cache.home, true)).problems.join('\n')
  expect(broken).toMatch(/indexed file missing: fsmeta/)
  expect(broken).toMatch(/is 4096 bytes, index says/)
  expect(broken).toMatch(/fsck\.erofs layers/)
  // The API sees the broken layer when it rebuilds the root disk.
  expect((await apiProblems(cache.home, 'probe')).join('\n')).toMatch(/acquire\(/)
  // A row naming a missing manifest, written with foreign keys off, is what foreign_key_check is for.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3')
  const db = new Database(path.join(cache.home, 'db', 'index.sqlite'))
  db.pragma('foreign_keys = OFF')
  const cols = (db.pragma('table_info(manifest_layers)') as Array<{ name: string }>).map((c) => c.name)
  const values = cols.map((c) => (c === 'manifest_digest' ? '?' : c === 'position' ? 'position + 100' : c))
  db.prepare(`INSERT INTO manifest_layers (${cols.join(', ')}) SELECT ${values.join(', ')} FROM manifest_layers LIMIT 1`).run('sha256:' + 'cd'.repeat(32))
  db.close()
  expect((await diskFindings(cache.home, true)).problems.join('\n')).toMatch(/sqlite foreign_key_check/)
  // A partial archive at the output path of a save.
  const out = path.join(cache.root, 'out.tar')
  await fsp.writeFile(out, (await fsp.readFile(world.archives[0].path)).subarray(0, 10_000))
  expect((await saveOutputProblems(out)).problems).toHaveLength(1)
  expect((await drainProblems(cache.home)).length).toBeGreaterThan(0)
})

test('a child SIGKILLed mid-operation is seen as killed, one that finished first is not', async () => {
  const killed = await runAndKill({ op: 'load', path: world.archives[1].path }, cache.home, 0)
  expect(killed.killed).toBe(true)
  const finished = await runAndKill({ op: 'list' }, cache.home, 60_000)
  expect({ killed: finished.killed, ok: finished.end?.ok }).toEqual({ killed: false, ok: true })
})

test(`SIGKILL at ${KILLS} random moments of every operation leaves a cache that checks out, and the killed operation succeeds again`, async () => {
  const seed = process.env.CRASH_SEED ? Number(process.env.CRASH_SEED) : Math.floor(Math.random() * 2 ** 31)
  console.log(`crash.spec: seed ${seed} (CRASH_SEED=${seed} replays it)`)
  const report = await crashRounds({ world, home: cache.home, seed, kills: KILLS, maxRounds: 10 * KILLS })
  console.log(describeCrashReport(report))
  expect(report.problems).toEqual([])
  expect(report.kills).toBeGreaterThanOrEqual(KILLS)
  // Every kind of operation was killed at least once.
  expect(opKinds(world.features).filter((k) => !(report.byOp[k]?.kills > 0))).toEqual([])
})
