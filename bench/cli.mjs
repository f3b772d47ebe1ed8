// CLI start-up benchmark: wall time of `microsandbox image ls` on an empty
// cache (the compiled CLI in cli/dist, this checkout's addon), against
// `node -e 0` in the same run; medians of interleaved runs. Also
// `--version` (no addon), `image ls --format json`, and the very first
// `image ls` of a cache that does not exist yet (creates the index).
// Beside wall time, each process's own CPU time (user + system, from
// process.cpuUsage() at exit, through a --require hook), which other load
// on a shared machine disturbs far less than wall time.
//
// The children run without NODE_EXTRA_CA_CERTS: that variable makes every
// node process read and parse a whole CA bundle before it runs a line
// (about 80 ms of CPU on this machine, where it is set machine-wide), and
// neither the CLI nor the engine needs it (the engine's TLS is rustls with
// its own roots). When the parent has it set, the same cases are measured
// again with it, as a second table.
//
//   npm run build (or: npx tsc -p cli), then: node bench/cli.mjs [--runs 30]
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { median } from './measure.mjs'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const bin = join(root, 'cli', 'dist', 'main.js')
if (!existsSync(bin)) throw new Error(`${bin} is missing: run npx tsc -p cli first`)
const { values } = parseArgs({ options: { runs: { type: 'string', default: '30' } } })
const runs = Number(values.runs)

const work = mkdtempSync(join(tmpdir(), 'msb-cli-bench-'))
const inherited = { ...process.env, MSB_HOME: join(work, 'cache'), MSB_BACKEND: 'local' }
const { NODE_EXTRA_CA_CERTS: extraCerts, ...plain } = inherited

const hook = join(work, 'cpu-at-exit.cjs')
writeFileSync(hook, "process.on('exit', () => { const u = process.cpuUsage(); process.stderr.write(`\\ncpu-ms ${(u.user + u.system) / 1000}\\n`) })\n")

/** Wall and CPU milliseconds of one run; throws on a failure or unexpected output. */
function wall(env, args, expectOut) {
  const t = performance.now()
  const r = spawnSync(process.execPath, ['--require', hook, ...args], { env, encoding: 'utf8' })
  const ms = performance.now() - t
  const cpu = /\ncpu-ms ([\d.]+)\n$/.exec(r.stderr)
  if (r.status !== 0 || !cpu || (expectOut !== undefined && !expectOut.test(r.stdout))) throw new Error(`${args.join(' ')}: exit ${r.status}\n${r.stderr}${r.stdout}`)
  return [ms, Number(cpu[1])]
}

const cases = {
  'node -e 0': [['-e', '0']],
  'microsandbox --version': [[bin, '--version'], /^microsandbox version /],
  'microsandbox image ls': [[bin, 'image', 'ls'], /^REFERENCE {3}DIGEST/],
  'microsandbox image ls --format json': [[bin, 'image', 'ls', '--format', 'json'], /^\[\]\n$/],
}

/** Measures every case in `env`, interleaved; prints a table; returns the median wall time of `image ls`. */
function measure(title, env) {
  const [first] = wall(env, [bin, 'image', 'ls'], /^REFERENCE/)
  const times = Object.fromEntries(Object.keys(cases).map((k) => [k, []]))
  for (let i = 0; i < runs; i++) for (const [name, [args, out]] of Object.entries(cases)) times[name].push(wall(env, args, out))
  const med = (name, i) => median(times[name].map((x) => x[i]))
  console.log(`${title}: ${runs} interleaved runs each, medians; load average ${loadavg()[0].toFixed(2)} on ${availableParallelism()} cores:`)
  console.log(`  ${''.padEnd(38)} ${'wall'.padStart(9)} ${'over node'.padStart(10)} ${'cpu'.padStart(9)} ${'over node'.padStart(10)}`)
  for (const name of Object.keys(times)) {
    const [w, c] = [med(name, 0), med(name, 1)]
    const over = (x, base) => (name === 'node -e 0' ? '' : `+${(x - base).toFixed(1)}`).padStart(10)
    console.log(`  ${name.padEnd(38)} ${w.toFixed(1).padStart(6)} ms ${over(w, med('node -e 0', 0))} ${c.toFixed(1).padStart(6)} ms ${over(c, med('node -e 0', 1))}`)
  }
  console.log(`  first image ls (creates the cache)      ${first.toFixed(1).padStart(6)} ms`)
  rmSync(inherited.MSB_HOME, { recursive: true, force: true })
  return med('microsandbox image ls', 0)
}

try {
  const ls = measure('node as installed (no NODE_EXTRA_CA_CERTS)', plain)
  if (extraCerts !== undefined) measure(`with NODE_EXTRA_CA_CERTS=${extraCerts}, as this shell has it`, inherited)
  console.log(ls < 150 ? `image ls on an empty cache: ${ls.toFixed(1)} ms < 150 ms` : `image ls on an empty cache: ${ls.toFixed(1)} ms, OVER the 150 ms budget`)
  if (ls >= 150) process.exitCode = 1
} finally {
  rmSync(work, { recursive: true, force: true })
}
