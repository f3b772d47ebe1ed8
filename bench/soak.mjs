// The soak, long form (the short one is __test__/soak.spec.ts): --workers
// processes for --seconds against one cache and a loopback registry (see
// __test__/support/crash-soak.ts for what runs and what is counted).
// Prints the seed first and the report last; exits 1 on any problem.
//
//   node bench/soak.mjs [--workers 8] [--seconds 120] [--seed N] [--json FILE]
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

import { seedFrom, support } from './support.mjs'

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '120' },
    seed: { type: 'string' },
    json: { type: 'string' },
  },
})
const seed = seedFrom(values.seed)
console.log(`soak: seed ${seed}`)

const { freshHome } = support('cache')
const { makeWorld } = support('crash-world')
const { soak, describeSoakReport } = support('crash-soak')

const world = await makeWorld()
const home = await freshHome('msb-soak-')
let report
try {
  report = await soak({ world, home: home.home, seed, workers: Number(values.workers), seconds: Number(values.seconds), log: (l) => console.log(l) })
} finally {
  await home.cleanup()
  await world.stop()
}
console.log(describeSoakReport(report))
if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2))
process.exit(report.problems.length === 0 ? 0 : 1)
