/**
 * The crash harness: rounds in which a child process (support/crash-worker.js)
 * runs one Image operation on a shared cache and the parent SIGKILLs it at
 * a random moment of it, then checks what the kill left (support/crash-check.ts):
 * SQLite's own checks, every indexed file present with its size, fsck.erofs
 * over every layer and fsmeta, list/inspect/acquire through the API, a killed
 * save's output path, and that the killed operation run again succeeds.
 * Every few rounds, and whenever the killed operation was a prune, a prune
 * must leave no debris at all; at the end, removing everything and pruning
 * must leave no file. Nothing is mocked: the cache, the registry, the tools.
 *
 * Choices are seeded (the seed is printed and reported): which operation,
 * on what, what the parent does first to give it work, and when the kill
 * comes, as a fraction of the operation's running time, which the harness
 * learns from the rounds in which the operation finished first. The kill
 * moment is timing, so a seed reproduces the sequence of operations and
 * delays, not the exact instruction a kill lands on.
 */
import { spawn } from 'child_process'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '../..'
import { childEnv, readIndex } from './cache'
import { apiProblems, diskFindings, drainProblems, saveOutputProblems } from './crash-check'
import { pick, rng, World } from './crash-world'

export const WORKER = path.join(__dirname, 'crash-worker.js')
// eslint-disable-next-line @typescript-eslint/no-require-imports
const worker: { run(op: Op, converted: string[]): Promise<unknown> } = require(WORKER)

/** An operation as crash-worker.js runs it. */
export type Op = { op: string } & Record<string, unknown>

/** Errors an operation may legitimately end with when a race or the state makes them right. */
export const LEGITIMATE = ['image_not_found', 'image_in_use']

export interface CrashOptions {
  world: World
  /** The cache; `MSB_HOME` of this process must name it too. */
  home: string
  seed: number
  /** Stop after this many kills that landed while the operation ran… */
  kills: number
  /** …or after this many rounds. */
  maxRounds: number
  /** Prune and check strictly every this many rounds. */
  strictEvery?: number
  log?: (line: string) => void
}

export interface Problem {
  round: number
  op: string
  delayMs: number
  problem: string
}

export interface CrashReport {
  seed: number
  rounds: number
  /** Kills that landed while the operation ran. */
  kills: number
  /** Rounds whose operation finished before its kill came. */
  finishedFirst: number
  byOp: Record<string, { rounds: number; kills: number }>
  problems: Problem[]
  /** Debris (files no row reaches) seen right after kills, all reclaimed by prune. */
  debris: number
  /** `.partial` files killed saves left beside their output path. */
  savePartials: number
  features: World['features']
  seconds: number
}

/** What one round does: the operation, and what the parent does before it. */
interface Plan {
  op: Op
  /** Files deleted before the operation, which it (or acquire) must rebuild. */
  damaged: string[]
  /** The sandbox the operation creates, released after the round. */
  sandbox?: string
}

const SANDBOX = 'crash-check'
const PIN = 'crash-pin'

/** The operation kinds, with the optional ones the addon has. */
export function opKinds(features: World['features']): string[] {
  return ['load', 'pull', 'prune', 'remove', 'save', 'acquire', ...(features.tag ? ['tag'] : []), ...(features.check ? ['check'] : [])]
}

async function present(): Promise<string[]> {
  return (await Image.list()).map((h) => h.reference)
}

/** Brings `ref` into the cache from where it comes from. */
async function fetchRef(world: World, ref: string): Promise<void> {
  const source = world.sources.get(ref)
  if (source?.pull) await Image.pull(source.pull)
  else if (source?.load) await Image.load(source.load)
  else throw new Error(`no source for ${ref}`)
}

/** A present reference (fetching one first if the cache has none). */
async function someRef(world: World, r: () => number): Promise<string> {
  const refs = await present()
  if (refs.length > 0) return pick(r, refs)
  const ref = pick(r, world.refs)
  await fetchRef(world, ref)
  return ref
}

/** Deletes the root disk of `ref`'s image, for acquire or check to rebuild. */
async function damageDisk(home: string, ref: string, which: Array<'fsmeta' | 'vmdk'>): Promise<string[]> {
  const hex = (await Image.get(ref)).manifestDigest!.replace(/^sha256:/, '')
  const files = which.map((w) => path.join(home, w === 'fsmeta' ? `fsmeta/sha256/${hex}.erofs` : `vmdk/sha256/${hex}.vmdk`))
  for (const f of files) await fsp.rm(f, { force: true })
  return files
}

/** Chooses round `round`'s operation of kind `kind`, and gives it work to do. */
async function plan(kind: string, round: number, o: CrashOptions, r: () => number, saveDir: string): Promise<Plan> {
  const { world, home } = o
  const refs = await present()
  // Keep one image pinned, so that prunes leave shared layers for loads and pulls to reuse.
  if (refs.length > 0 && !readIndex(home).snapshots.some((s) => s.name === PIN)) await Image.pinSnapshot(PIN, pick(r, refs))
  switch (kind) {
    case 'load':
      if (r() < 0.5) await Image.prune()
      return { op: { op: 'load', path: pick(r, world.archives).path }, damaged: [] }
    case 'pull': {
      const ref = pick(r, world.pulls)
      if (r() < 0.6 && refs.includes(ref)) {
        await Image.remove(ref, { force: true })
        await Image.prune()
      }
      return { op: { op: 'pull', ref, policy: r() < 0.3 ? 'always' : 'if-missing' }, damaged: [] }
    }
    case 'prune': {
      if (refs.length <= 1) await fetchRef(world, pick(r, world.refs))
      const filtered = world.features.pruneFilters && r() < 0.5
      return { op: { op: 'prune', ...(filtered ? { opts: { references: pick(r, world.refs) } } : {}) }, damaged: [] }
    }
    case 'remove':
      return { op: { op: 'remove', ref: await someRef(world, r), force: r() < 0.3 }, damaged: [] }
    case 'save': {
      const a = await someRef(world, r)
      const both = r() < 0.4 ? [...new Set([a, await someRef(world, r)])] : [a]
      return { op: { op: 'save', refs: both, outputPath: path.join(saveDir, `round-${round}.tar`), format: r() < 0.5 ? 'docker' : 'oci' }, damaged: [] }
    }
    case 'acquire': {
      const ref = await someRef(world, r)
      const damaged = r() < 0.5 ? await damageDisk(home, ref, r() < 0.5 ? ['fsmeta', 'vmdk'] : ['vmdk']) : []
      return { op: { op: 'acquire', ref, sandbox: `crash-sb-${round}` }, damaged, sandbox: `crash-sb-${round}` }
    }
    case 'tag':
      return { op: { op: 'tag', source: await someRef(world, r), target: `localhost/crash/tagged-${round % 3}:v1` }, damaged: [] }
    case 'check': {
      const damaged = r() < 0.5 ? await damageDisk(home, await someRef(world, r), ['vmdk']) : []
      return { op: { op: 'check', repair: true, full: r() < 0.5 }, damaged }
    }
  }
  throw new Error(`unknown operation kind ${kind}`)
}

interface Outcome {
  /** The kill landed while the operation ran. */
  killed: boolean
  /** When the operation finished first: its end line. */
  end?: { ms: number; ok: boolean; error?: { code: string; message: string } }
  stderr: string
}

/** Runs `op` in a child and SIGKILLs it `delayMs` after it began (unless it ends first). */
export function runAndKill(op: Op, home: string, delayMs: number): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, 'once', JSON.stringify(op)], { env: childEnv({ MSB_HOME: home, MSB_BACKEND: undefined }), stdio: ['ignore', 'pipe', 'pipe'] })
    let buffered = ''
    let stderr = ''
    let timer: NodeJS.Timeout | undefined
    let end: Outcome['end']
    let killed = false
    const startup = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.stdout.on('data', (d) => {
      buffered += d
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = JSON.parse(buffered.slice(0, nl))
        buffered = buffered.slice(nl + 1)
        if (line.ev === 'begin') {
          clearTimeout(startup)
          timer = setTimeout(() => {
            killed = end === undefined
            child.kill('SIGKILL')
          }, delayMs)
        } else if (line.ev === 'end') {
          end = line
          clearTimeout(timer)
        }
      }
    })
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(startup)
      clearTimeout(timer)
      if (!killed && !end) reject(new Error(`the worker exited (code ${code}, signal ${signal}) without finishing ${op.op}: ${stderr}`))
      else resolve({ killed: killed && signal === 'SIGKILL', end, stderr })
    })
  })
}

/** Runs `op` in this process, as the worker would; resolves to its duration, rejects as it does. */
async function rerun(op: Op): Promise<number> {
  const t = performance.now()
  await worker.run(op, [])
  return performance.now() - t
}

/** What the operation's target was before the rerun, to judge a not-found rerun. */
async function rerunProblem(op: Op): Promise<{ problem?: string; ms?: number }> {
  const before = await present()
  try {
    return { ms: await rerun(op) }
  } catch (e) {
    const code = (e as { code?: string }).code
    // A remove killed after its commit finished its job: the reference is gone.
    if (op.op === 'remove' && code === 'image_not_found' && !before.includes(op.ref as string)) return {}
    return { problem: `the killed ${op.op} run again failed: ${code} ${(e as Error).message}` }
  }
}

/** Runs rounds until `kills` kills landed mid-operation and every kind was killed (or `maxRounds`); returns the report. */
export async function crashRounds(o: CrashOptions): Promise<CrashReport> {
  const started = Date.now()
  const log = o.log ?? (() => {})
  const r = rng(o.seed)
  const kinds = opKinds(o.world.features)
  const estimate = new Map(kinds.map((k) => [k, 1500]))
  const saveDir = path.join(o.world.work, `saves-${o.seed}`)
  await fsp.mkdir(saveDir, { recursive: true })
  const report: CrashReport = { seed: o.seed, rounds: 0, kills: 0, finishedFirst: 0, byOp: {}, problems: [], debris: 0, savePartials: 0, features: o.world.features, seconds: 0 }
  let cycle: string[] = []
  // Until `kills` kills, and every kind of operation killed at least once
  // (a fast one, such as tag, may need more rounds for its delays to adapt).
  const unkilled = () => kinds.some((k) => !(report.byOp[k]?.kills > 0))
  for (let round = 0; round < o.maxRounds && (report.kills < o.kills || unkilled()); round++) {
    if (cycle.length === 0) cycle = [...kinds].sort(() => r() - 0.5)
    const kind = cycle.shift()!
    const p = await plan(kind, round, o, r, saveDir)
    const delayMs = Math.round(r() * estimate.get(kind)!)
    const problem = (problem: string) => report.problems.push({ round, op: JSON.stringify(p.op), delayMs, problem })
    const outcome = await runAndKill(p.op, o.home, delayMs)
    const stats = (report.byOp[kind] ??= { rounds: 0, kills: 0 })
    stats.rounds++
    report.rounds++
    if (outcome.killed) {
      stats.kills++
      report.kills++
      estimate.set(kind, Math.max(estimate.get(kind)!, delayMs * 1.05))
    } else {
      report.finishedFirst++
      const end = outcome.end!
      estimate.set(kind, Math.max(20, 0.7 * estimate.get(kind)! + 0.3 * end.ms))
      if (!end.ok && !LEGITIMATE.includes(end.error!.code)) problem(`${kind} failed without a kill: ${end.error!.code} ${end.error!.message}`)
    }
    if (outcome.stderr.trim()) problem(`worker stderr: ${outcome.stderr.trim().slice(0, 500)}`)
    // What the kill left, before anything repairs it (files the parent deleted are still missing).
    const crash = await diskFindings(o.home, true)
    const missingDamage = new Set(p.damaged.map((f) => `indexed file missing: ${path.relative(o.home, f)}`))
    crash.problems.filter((x) => !missingDamage.has(x)).forEach(problem)
    report.debris += crash.debris.length
    ;(await apiProblems(o.home, SANDBOX, { check: o.world.features.check, afterCrash: true })).forEach(problem)
    // acquire above rebuilt what the parent deleted: now nothing indexed may be missing.
    ;(await diskFindings(o.home, true)).problems.forEach(problem)
    if (kind === 'save') {
      const out = await saveOutputProblems(p.op.outputPath as string)
      out.problems.forEach(problem)
      report.savePartials += out.partials.length
      for (const f of [...out.partials.map((n) => path.join(saveDir, n)), p.op.outputPath as string]) await fsp.rm(f, { force: true })
    }
    const again = await rerunProblem(p.op)
    if (again.problem) problem(again.problem)
    if (kind === 'save') await fsp.rm(p.op.outputPath as string, { force: true })
    if (p.sandbox) await Image.release(p.sandbox)
    if (kind === 'prune' || (round + 1) % (o.strictEvery ?? 5) === 0) {
      if (kind !== 'prune') await Image.prune()
      ;(await diskFindings(o.home, kind === 'prune' && p.op.opts !== undefined)).problems.forEach(problem)
    }
    const roundProblems = report.problems.filter((x) => x.round === round).length
    log(
      `round ${round} ${kind} ${outcome.killed ? `killed at ${delayMs} ms` : `finished first (${Math.round(outcome.end!.ms)} ms < ${delayMs} ms)`}` +
        `, debris ${crash.debris.length}${roundProblems ? `, ${roundProblems} PROBLEMS` : ''}${again.ms ? `, rerun ${Math.round(again.ms)} ms` : ''}`,
    )
  }
  ;(await drainProblems(o.home)).forEach((x) => report.problems.push({ round: report.rounds, op: 'drain', delayMs: 0, problem: x }))
  await fsp.rm(saveDir, { recursive: true, force: true })
  report.seconds = (Date.now() - started) / 1000
  return report
}

/** A report as a few lines for a log or a README. */
export function describeCrashReport(rep: CrashReport): string {
  const ops = Object.entries(rep.byOp)
    .map(([k, v]) => `${k} ${v.kills}/${v.rounds}`)
    .join(', ')
  const features = Object.entries(rep.features)
    .map(([k, v]) => `${k}: ${v ? 'yes' : 'no'}`)
    .join(', ')
  return [
    `crash: seed ${rep.seed}: ${rep.rounds} rounds, ${rep.kills} kills mid-operation, ${rep.finishedFirst} finished before the kill, ${rep.problems.length} problems, ${rep.seconds.toFixed(0)} s`,
    `  kills/rounds by operation: ${ops}`,
    `  debris seen after kills (reclaimed by prune): ${rep.debris}; .partial files beside killed saves' outputs: ${rep.savePartials}`,
    `  optional operations: ${features}`,
    ...rep.problems.map((p) => `  PROBLEM round ${p.round} (${p.op}, kill at ${p.delayMs} ms): ${p.problem}`),
  ].join('\n')
}

