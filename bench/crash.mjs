// The crash harness, long form (the short one is __test__/crash.spec.ts):
// rounds of one Image operation in a child process SIGKILLed at a seeded
// random moment, each followed by the checks of __test__/support/crash-check.ts,
// until --kills kills landed mid-operation. Prints every round, then the
// report; exits 1 if anything was wrong. The seed is printed first:
// `--seed` with it replays the same operations and delays.
//
//   node bench/crash.mjs [--kills 300] [--max-rounds 1000] [--seed N] [--scale 1] [--json FILE]
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

import { seedFrom, support } from './support.mjs'

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '300' },
    'max-rounds': { type: 'string', default: '1000' },
    seed: { type: 'string' },
    scale: { type: 'string', default: '1' },
    json: { type: 'string' },
  },
})
const seed = seedFrom(values.seed)
console.log(`crash: seed ${seed}`)

const { freshHome } = support('cache')
const { makeWorld } = support('crash-world')
const { crashRounds, describeCrashReport } = support('crash-run')

const world = await makeWorld({ scale: Number(values.scale) })
const home = await freshHome('msb-crash-')
let report
try {
  report = await crashRounds({ world, home: home.home, seed, kills: Number(values.kills), maxRounds: Number(values['max-rounds']), log: (l) => console.log(l) })
} finally {
  await home.cleanup()
  await world.stop()
}
console.log(describeCrashReport(report))
if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2))
process.exit(report.problems.length === 0 ? 0 : 1)
