// The cache-policy part of the index benchmark (bench/index.mjs): on a
// filled cache, medians of Image.prune({ dryRun: true }), Image.diskUsage()
// and a quick Image.check(); a full check against sha256sum over the same
// artifact files in the same run; and a budget prune evicting half the
// images against a prune of the same images by name, each on a fresh copy.
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join } from 'node:path'

import { Image } from '../index.js'
import { median } from './measure.mjs'

async function timeAsync(fn) {
  const t = performance.now()
  const value = await fn()
  return [performance.now() - t, value]
}

/** Median milliseconds of `runs` calls of `fn`. */
async function medianOf(runs, fn) {
  const times = []
  for (let i = 0; i < runs; i++) times.push((await timeAsync(fn))[0])
  return median(times)
}

/**
 * A fresh copy of `home`, flushed, as MSB_HOME. Each copy needs a path of
 * its own: the addon keeps an open cache per path.
 */
function freshCopy(home, dest) {
  rmSync(dest, { recursive: true, force: true })
  execFileSync('cp', ['-a', home, dest])
  execFileSync('sync')
  process.env.MSB_HOME = dest
  return dest
}

/**
 * Measures the policy calls on the cache in `home` (MSB_HOME is left
 * pointing at `home`). `work` holds the copies.
 */
export async function policyBench(home, work, { runs }) {
  process.env.MSB_HOME = home
  const dryRun = await medianOf(runs, () => Image.prune({ dryRun: true }))
  const diskUsage = await medianOf(runs, () => Image.diskUsage())
  const quickCheck = await medianOf(Math.min(runs, 5), async () => {
    const r = await Image.check()
    if (!r.ok) throw new Error(`check found problems: ${JSON.stringify(r.problems.slice(0, 3))}`)
  })
  // Full check against sha256sum of the same files, page cache warm for both.
  const files = ['layers', 'fsmeta', 'vmdk'].map((d) => join(home, d))
  const sha256sum = () => execFileSync('sh', ['-c', `find ${files.map((f) => `'${f}'`).join(' ')} -type f -print0 | xargs -0 -P 2 -n 2000 sha256sum > /dev/null`])
  sha256sum()
  const shaTimes = []
  const fullTimes = []
  let checkedBytes = 0
  for (let i = 0; i < 3; i++) {
    const t = performance.now()
    sha256sum()
    shaTimes.push(performance.now() - t)
    const [ms, report] = await timeAsync(() => Image.check({ full: true }))
    if (!report.ok) throw new Error('full check found problems')
    checkedBytes = report.checkedBytes
    fullTimes.push(ms)
  }
  // A budget that evicts half the images (least recently used first: all
  // were loaded at once, so by reference), against pruning the same
  // images by name; each on its own fresh copy of the cache.
  await Image.prune({ dryRun: true, maxBytes: 0 }) // settles the WAL, so diskUsage measures what the budget prune will
  const usage = await Image.diskUsage()
  const half = usage.images.slice(0, Math.floor(usage.images.length / 2))
  const budget = usage.totalBytes - half.reduce((n, i) => n + i.uniqueBytes, 0)
  const names = half.map((i) => i.reference)
  const byBudget = []
  const byName = []
  const budgetPrune = async (copy) => {
    freshCopy(home, join(work, copy))
    const [b, report] = await timeAsync(() => Image.prune({ maxBytes: budget }))
    // The budget is met with the same number of evictions give or take one:
    // the LRU order is by entry time, and the index's own size moves a little.
    if (Math.abs(report.imageRefsRemoved - names.length) > 1 || !report.budgetMet) throw new Error(`budget prune: ${JSON.stringify({ ...report, references: report.references.length })}`)
    byBudget.push(b)
  }
  const namedPrune = async (copy) => {
    freshCopy(home, join(work, copy))
    const [n, named] = await timeAsync(() => Image.prune({ references: names }))
    if (named.imageRefsRemoved !== names.length) throw new Error('prune by name removed the wrong images')
    byName.push(n)
  }
  // Four rounds, the order alternating (budget first, then names first), so
  // that a machine slowing down or speeding up over the minutes weighs on
  // both alike: each prune is mostly unlinking, whose speed moves by a third
  // from one minute to the next.
  for (let i = 0; i < 4; i++) {
    const copies = [`policy-budget-${i}`, `policy-names-${i}`]
    if (i % 2 === 0) {
      await budgetPrune(copies[0])
      await namedPrune(copies[1])
    } else {
      await namedPrune(copies[1])
      await budgetPrune(copies[0])
    }
    for (const copy of copies) rmSync(join(work, copy), { recursive: true, force: true })
  }
  process.env.MSB_HOME = home
  return {
    dryRun,
    diskUsage,
    quickCheck,
    fullCheck: median(fullTimes),
    sha256sum: median(shaTimes),
    checkedBytes,
    evicted: names.length,
    byBudget: median(byBudget),
    byName: median(byName),
  }
}

/** Prints what policyBench measured at `n` references. */
export function printPolicy(n, p) {
  const ms = (x) => `${x.toFixed(1)} ms`
  console.log(`\nCache policies at ${n} references (medians; same run)`)
  console.log(`  prune({ dryRun: true }) ${ms(p.dryRun)} (target < 150 ms: ${p.dryRun < 150 ? 'met' : 'MISSED'})`)
  console.log(`  diskUsage() ${ms(p.diskUsage)} (target < 100 ms: ${p.diskUsage < 100 ? 'met' : 'MISSED'})`)
  console.log(`  check() ${ms(p.quickCheck)} (target < 1 s: ${p.quickCheck < 1000 ? 'met' : 'MISSED'})`)
  const speed = p.sha256sum / p.fullCheck
  console.log(`  check({ full: true }) ${ms(p.fullCheck)} over ${(p.checkedBytes / 2 ** 20).toFixed(0)} MiB; sha256sum of the same files (2 processes) ${ms(p.sha256sum)}: ${(speed * 100).toFixed(0)}% of its speed (target ≥ 80%: ${speed >= 0.8 ? 'met' : 'MISSED'})`)
  const ratio = p.byBudget / p.byName
  console.log(`  prune({ maxBytes }) evicting ${p.evicted} images ${ms(p.byBudget)}; prune({ references }) of the same ${ms(p.byName)}: ${ratio.toFixed(2)}x (target ≤ 1.1x: ${ratio <= 1.1 ? 'met' : 'MISSED'})`)
}
