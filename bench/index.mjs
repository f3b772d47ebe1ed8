// Index benchmark: fills a cache with N references (5 distinct layers each)
// through Image.load, then reports medians of Image.list/get/inspect/remove/
// prune beside the same SELECTs run through better-sqlite3 on the same
// database file, and prune beside `rm -rf` of the same files, at 1,000 and
// 10,000 references to show how cost grows; at the largest size also the
// cache policies (bench/policy.mjs: dry run, diskUsage, check, budget).
//
//   node bench/index.mjs [--sizes 1000,10000] [--runs 15]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import Database from 'better-sqlite3'

import { Image } from '../index.js'
import { writeLayout } from './fixtures.mjs'
import { median } from './measure.mjs'
import { policyBench, printPolicy } from './policy.mjs'

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '1000,10000' }, runs: { type: 'string', default: '15' } } })
const sizes = values.sizes.split(',').map(Number)
const runs = Number(values.runs)
const LAYERS_PER_IMAGE = 5

async function timeAsync(fn) {
  const t = performance.now()
  await fn()
  return performance.now() - t
}
function timeSync(fn) {
  const t = performance.now()
  fn()
  return performance.now() - t
}
const pick = (n, count) => Array.from({ length: count }, (_, i) => `bench.local/img-${(i * 7919) % n}:v1`)

const SUMMARY = `SELECT r.reference, r.manifest_digest, m.size_bytes, c.architecture, c.os, m.layer_count, m.last_used_at, r.created_at
  FROM image_refs r JOIN manifests m ON m.digest = r.manifest_digest JOIN configs c ON c.digest = m.config_digest`

function betterSqlite(home, refs) {
  const db = new Database(join(home, 'db', 'index.sqlite'), { readonly: true })
  const list = db.prepare(`${SUMMARY} ORDER BY r.reference`)
  const get = db.prepare(`${SUMMARY} WHERE r.reference = ?`)
  const config = db.prepare('SELECT c.* FROM manifests m JOIN configs c ON c.digest = m.config_digest WHERE m.digest = ?')
  const layers = db.prepare(`SELECT ml.position, ml.diff_id, ml.blob_digest, ml.media_type, ml.blob_size, l.erofs_size FROM manifest_layers ml
    LEFT JOIN layers l ON l.diff_id = ml.diff_id WHERE ml.manifest_digest = ? ORDER BY ml.position`)
  list.all()
  const result = {
    list: median(Array.from({ length: runs }, () => timeSync(() => list.all()))),
    get: median(refs.map((r) => timeSync(() => get.get(r)))),
    inspect: median(
      refs.map((r) =>
        timeSync(() => {
          const row = get.get(r)
          config.get(row.manifest_digest)
          layers.all(row.manifest_digest)
        }),
      ),
    ),
  }
  db.close()
  return result
}

const touchAll = (images) => {
  let n = 0
  for (const i of images) n += i.reference.length + i.layerCount + (i.sizeBytes ?? 0) + (i.createdAt?.getTime() ?? 0) + (i.lastUsedAt ? 1 : 0) + i.os.length + i.architecture.length + i.manifestDigest.length
  return n
}

const rows = []
for (const n of sizes) {
  const work = mkdtempSync(join(tmpdir(), `msb-bench-${n}-`))
  const layout = join(work, 'layout')
  const home = join(work, 'home')
  process.env.MSB_HOME = home
  writeLayout(layout, { images: n, layersPerImage: LAYERS_PER_IMAGE })
  const fill = await timeAsync(() => Image.load(layout))
  const count = (await Image.list()).length
  if (count !== n) throw new Error(`expected ${n} images, list() returned ${count}`)
  const refs = pick(n, 200)

  const list = []
  const listFields = []
  for (let i = 0; i < runs; i++) list.push(await timeAsync(() => Image.list()))
  for (let i = 0; i < runs; i++) listFields.push(await timeAsync(async () => touchAll(await Image.list())))
  const get = []
  const inspect = []
  for (const r of refs) get.push(await timeAsync(() => Image.get(r)))
  for (const r of refs) inspect.push(await timeAsync(() => Image.inspect(r)))
  const ours = { list: median(list), listFields: median(listFields), get: median(get), inspect: median(inspect) }
  const reference = betterSqlite(home, refs)
  const policy = n === sizes[sizes.length - 1] ? await policyBench(home, work, { runs: Math.min(runs, 7) }) : undefined

  // Prune is destructive: each run prunes a fresh copy of the filled cache.
  const prune = []
  for (let i = 0; i < 3; i++) {
    const copy = join(work, `copy-${i}`)
    execFileSync('cp', ['-a', home, copy])
    // Files written but not yet flushed are cheap to delete (no blocks are
    // allocated yet): flush, so prune deletes files as old as a real cache's.
    execFileSync('sync')
    process.env.MSB_HOME = copy
    let report
    prune.push(await timeAsync(async () => (report = await Image.prune())))
    if (report.imageRefsRemoved !== n || report.layersRemoved !== n * LAYERS_PER_IMAGE) throw new Error(`prune report ${JSON.stringify(report)}`)
    rmSync(copy, { recursive: true, force: true })
  }
  // The reference for deleting the same files: rm -rf of the artifact
  // directories of another fresh copy.
  const rmCopy = join(work, 'copy-rm')
  execFileSync('cp', ['-a', home, rmCopy])
  execFileSync('sync')
  const rm = timeSync(() => execFileSync('rm', ['-rf', ...['layers', 'fsmeta', 'vmdk'].map((d) => join(rmCopy, d))]))
  rmSync(rmCopy, { recursive: true, force: true })

  // Removing one image should cost the same whatever the cache holds.
  process.env.MSB_HOME = home
  const remove = []
  for (const r of refs.slice(0, 50)) remove.push(await timeAsync(() => Image.remove(r)))
  rows.push({ n, fill, ours, reference, prune: median(prune), rm, remove: median(remove), policy })
  rmSync(work, { recursive: true, force: true })
}

const ms = (x) => `${x.toFixed(3)} ms`
console.log(`\nIndex benchmark (${LAYERS_PER_IMAGE} layers per reference, medians; better-sqlite3 on the same file)`)
console.log('refs    | fill      | list()     | list()+fields | b-s3 list  | ratio | get()     | b-s3 get  | inspect() | b-s3 inspect | remove()  | prune()      | rm -rf')
for (const r of rows) {
  console.log(
    [
      String(r.n).padEnd(7),
      `${(r.fill / 1000).toFixed(1)} s`.padEnd(9),
      ms(r.ours.list).padEnd(10),
      ms(r.ours.listFields).padEnd(13),
      ms(r.reference.list).padEnd(10),
      `${(r.ours.list / r.reference.list).toFixed(2)}x`.padEnd(5),
      ms(r.ours.get).padEnd(9),
      ms(r.reference.get).padEnd(9),
      ms(r.ours.inspect).padEnd(9),
      ms(r.reference.inspect).padEnd(12),
      ms(r.remove).padEnd(9),
      ms(r.prune).padEnd(12),
      `${ms(r.rm)} (${(r.prune / r.rm).toFixed(2)}x)`,
    ].join(' | '),
  )
}
if (rows.length > 1) {
  const [a, b] = [rows[0], rows[rows.length - 1]]
  const scale = b.n / a.n
  console.log(`growth ${a.n} → ${b.n} (x${scale}): list x${(b.ours.list / a.ours.list).toFixed(1)}, get x${(b.ours.get / a.ours.get).toFixed(1)}, inspect x${(b.ours.inspect / a.ours.inspect).toFixed(1)}, remove x${(b.remove / a.remove).toFixed(1)}, prune x${(b.prune / a.prune).toFixed(1)}`)
}
const last = rows[rows.length - 1]
console.log(
  `targets at ${last.n}: list < 30 ms: ${last.ours.list < 30 ? 'met' : 'MISSED'}; list <= 1.5x better-sqlite3: ${last.ours.list <= 1.5 * last.reference.list ? 'met' : 'MISSED'}; get/inspect < 1 ms: ${last.ours.get < 1 && last.ours.inspect < 1 ? 'met' : 'MISSED'}; prune < 2 s: ${last.prune < 2000 ? 'met' : 'MISSED'}`,
)
if (last.policy) printPolicy(last.n, last.policy)
