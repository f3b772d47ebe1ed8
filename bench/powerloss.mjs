// The power-loss harness, long form (the short one is __test__/powerloss.spec.ts):
// rounds in which the engine runs seeded operations in a VM on an ext4 disk
// and qemu is SIGKILLed mid-operation (a power cut), each followed by
// e2fsck, a copy of the cache taken off the disk and the checks of
// __test__/support/crash-check.ts on it (see __test__/support/powerloss.ts),
// until --kills cuts landed mid-operation; the next round boots on the
// recovered disk. Prints every round, then the report; exits 1 if anything
// was wrong. The seed is printed first: `--seed` with it replays the same
// workloads and cut delays.
//
//   node bench/powerloss.mjs [--kills 50] [--max-rounds 150] [--ops 12] [--seed N] [--scale 1] [--json FILE]
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

import { seedFrom, support } from './support.mjs'

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '50' },
    'max-rounds': { type: 'string', default: '150' },
    ops: { type: 'string', default: '12' },
    seed: { type: 'string' },
    scale: { type: 'string', default: '1' },
    json: { type: 'string' },
  },
})
const seed = seedFrom(values.seed)
console.log(`powerloss: seed ${seed}`)

const { makePowerlossWorld, powerlossRounds, describePowerlossReport } = support('powerloss')

const world = await makePowerlossWorld({ scale: Number(values.scale) })
let report
try {
  report = await powerlossRounds({
    world,
    seed,
    kills: Number(values.kills),
    maxRounds: Number(values['max-rounds']),
    opsPerBoot: Number(values.ops),
    log: (l) => console.log(l),
  })
} finally {
  await world.stop()
}
console.log(describePowerlossReport(report))
if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2))
process.exit(report.problems.length === 0 ? 0 : 1)
