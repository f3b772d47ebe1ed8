/**
 * The soak: several processes (support/crash-worker.js, plan mode) for a
 * fixed time against one cache and the loopback registry, each running its
 * own seeded plan of pulls, loads, removes, prunes (filtered too, when the
 * addon has filters), acquire/release pairs, saves (and tags and checks when
 * present). Measured: operations, errors (image_not_found and image_in_use
 * are what the races make legitimate; anything else counts as unexpected),
 * conversions against absences of each layer, the peak RSS (VmHWM) of each
 * process, and the cache's consistency at the end.
 *
 * Conversions are counted from the kernel, not from the engine's word: a
 * layer image enters layers/sha256 only by a rename from tmp/, so
 * support/crash-inotify.py's MOVED_TO events are publications and DELETE
 * events removals. A layer converted twice while present shows as a
 * MOVED_TO onto a name already there; each layer's publications must equal
 * the times it came back after being absent. Pull progress (`layer` events
 * with step `converted`) is kept beside as the engine's own count.
 */
import { ChildProcess, spawn } from 'child_process'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '../..'
import { childEnv } from './cache'
import { apiProblems, diskFindings, drainProblems } from './crash-check'
import { LEGITIMATE, Op, WORKER } from './crash-run'
import { pick, rng, World } from './crash-world'

export interface SoakOptions {
  world: World
  home: string
  seed: number
  workers: number
  seconds: number
  log?: (line: string) => void
}

export interface SoakReport {
  seed: number
  workers: number
  seconds: number
  ops: number
  byOp: Record<string, { ok: number; legitimate: number; unexpected: number }>
  unexpected: Array<{ worker: number; i: number; op: string; code: string; message: string }>
  /** Each process's VmHWM, bytes. */
  peakRss: number[]
  layers: LayerCount
  /** Layer conversions the pulls reported (progress step `converted`). */
  pullConverted: number
  problems: string[]
}

export interface LayerCount {
  /** Layer images published (renamed into layers/sha256). */
  publications: number
  /** Times a layer went from present to absent (unlinks). */
  removals: number
  /** Distinct layers published at least once. */
  distinct: number
  /** Publications onto a layer already present: conversions of something the cache had. */
  duplicates: string[]
  /** Other events that should not happen there (a create, an unlink of an absent name, a dropped event). */
  anomalies: string[]
}

/** Turns inotify lines into per-layer counts. */
export function countLayerEvents(lines: string[]): LayerCount {
  const present = new Set<string>()
  const published = new Set<string>()
  const count: LayerCount = { publications: 0, removals: 0, distinct: 0, duplicates: [], anomalies: [] }
  for (const line of lines) {
    const [event, name] = line.split(' ')
    if (event === 'MOVED_TO') {
      count.publications++
      published.add(name)
      if (present.has(name)) count.duplicates.push(name)
      present.add(name)
    } else if (event === 'DELETE' || event === 'MOVED_FROM') {
      if (!present.delete(name)) count.anomalies.push(line)
      else count.removals++
    } else if (event !== 'ready') count.anomalies.push(line)
  }
  count.distinct = published.size
  return count
}

/** The operations of worker `w`'s plan. */
function planFor(o: SoakOptions, w: number, outDir: string): Op[] {
  const r = rng(o.seed * 1009 + w)
  const { world } = o
  const kinds: Array<[string, number]> = [
    ['pull', 3],
    ['load', 3],
    ['remove', 2],
    ['prune', 1],
    ['acquire', 2],
    ['save', 1],
    ...(world.features.tag ? ([['tag', 1]] as Array<[string, number]>) : []),
    ...(world.features.check ? ([['check', 0.5]] as Array<[string, number]>) : []),
  ]
  const total = kinds.reduce((n, [, wt]) => n + wt, 0)
  const ops: Op[] = []
  for (let i = 0; i < 5000; i++) {
    let x = r() * total
    const kind = kinds.find(([, wt]) => (x -= wt) < 0)?.[0] ?? 'pull'
    const ref = pick(r, world.refs)
    switch (kind) {
      case 'pull':
        ops.push({ op: 'pull', ref: pick(r, world.pulls), policy: r() < 0.3 ? 'always' : 'if-missing' })
        break
      case 'load':
        ops.push({ op: 'load', path: pick(r, world.archives).path })
        break
      case 'remove':
        ops.push({ op: 'remove', ref, force: r() < 0.5 })
        break
      case 'prune':
        ops.push(world.features.pruneFilters && r() < 0.5 ? { op: 'prune', opts: { references: ref } } : { op: 'prune' })
        break
      case 'acquire':
        ops.push({ op: 'acquire', ref, sandbox: `soak-${w}`, release: true })
        break
      case 'save':
        ops.push({ op: 'save', refs: [ref], outputPath: path.join(outDir, `w${w}-${i}.tar`), format: r() < 0.5 ? 'docker' : 'oci', discard: true })
        break
      case 'tag':
        ops.push({ op: 'tag', source: ref, target: `localhost/soak/tag-${w % 2}:v1` })
        break
      case 'check':
        ops.push({ op: 'check', repair: false, full: false })
        break
    }
  }
  return ops
}

/** Starts the inotify watcher on `dir`; resolves once its watch is set. */
export async function watch(dir: string): Promise<{ lines: string[]; stop(): Promise<void> }> {
  const child: ChildProcess = spawn('python3', [path.join(__dirname, 'crash-inotify.py'), dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  let buffered = ''
  let stderr = ''
  child.stderr!.on('data', (d) => (stderr += d))
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      buffered += d
      const parts = buffered.split('\n')
      buffered = parts.pop()!
      for (const l of parts) {
        lines.push(l)
        if (l === 'ready') resolve()
      }
    })
    child.on('exit', (code) => reject(new Error(`crash-inotify.py exited (${code}): ${stderr}`)))
  })
  await ready
  return {
    lines,
    async stop() {
      // Let the last events arrive before the watcher goes.
      await new Promise((r) => setTimeout(r, 200))
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      await exited
    },
  }
}

interface WorkerRun {
  ends: Array<{ i: number; op: string; ok: boolean; error?: { code: string; message: string }; converted: string[] }>
  summary?: { done: number; peakRssBytes: number }
  code: number | null
  stderr: string
}

function runWorker(planFile: string, home: string, timeoutMs: number): Promise<WorkerRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, 'plan', planFile], { env: childEnv({ MSB_HOME: home, MSB_BACKEND: undefined }), stdio: ['ignore', 'pipe', 'pipe'] })
    const run: WorkerRun = { ends: [], code: null, stderr: '' }
    let buffered = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.stdout.on('data', (d) => {
      buffered += d
      const parts = buffered.split('\n')
      buffered = parts.pop()!
      for (const l of parts) {
        const line = JSON.parse(l)
        if (line.ev === 'end') run.ends.push(line)
        else if (line.ev === 'summary') run.summary = line
      }
    })
    child.stderr.on('data', (d) => (run.stderr += d))
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      run.code = code
      resolve(run)
    })
  })
}

/** Runs the soak; returns its report (problems empty when everything held). */
export async function soak(o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? (() => {})
  await Image.list() // creates the cache, so its layer directory exists to be watched
  const outDir = path.join(o.world.work, `soak-${o.seed}`)
  await fsp.mkdir(outDir, { recursive: true })
  const watcher = await watch(path.join(o.home, 'layers', 'sha256'))
  const deadline = Date.now() + o.seconds * 1000
  const runs = await Promise.all(
    Array.from({ length: o.workers }, async (_, w) => {
      const planFile = path.join(outDir, `plan-${w}.json`)
      await fsp.writeFile(planFile, JSON.stringify({ ops: planFor(o, w, outDir), deadline }))
      // An operation started just before the deadline may take a while under load: bounded all the same.
      return runWorker(planFile, o.home, o.seconds * 1000 + 180_000)
    }),
  )
  await watcher.stop()
  const report: SoakReport = { seed: o.seed, workers: o.workers, seconds: o.seconds, ops: 0, byOp: {}, unexpected: [], peakRss: [], layers: countLayerEvents(watcher.lines), pullConverted: 0, problems: [] }
  runs.forEach((run, w) => {
    if (run.code !== 0 || !run.summary) report.problems.push(`worker ${w} exited with ${run.code} without its summary: ${run.stderr.slice(0, 500)}`)
    else if (run.stderr.trim()) report.problems.push(`worker ${w} wrote to stderr: ${run.stderr.slice(0, 500)}`)
    report.peakRss.push(run.summary?.peakRssBytes ?? 0)
    for (const end of run.ends) {
      report.ops++
      report.pullConverted += end.converted.length
      const stats = (report.byOp[end.op] ??= { ok: 0, legitimate: 0, unexpected: 0 })
      if (end.ok) stats.ok++
      else if (LEGITIMATE.includes(end.error!.code)) stats.legitimate++
      else {
        stats.unexpected++
        report.unexpected.push({ worker: w, i: end.i, op: end.op, code: end.error!.code, message: end.error!.message })
      }
    }
  })
  for (const u of report.unexpected) report.problems.push(`worker ${u.worker} op ${u.i} (${u.op}): unexpected ${u.code}: ${u.message}`)
  for (const d of report.layers.duplicates) report.problems.push(`layer ${d} converted again while it was present`)
  for (const a of report.layers.anomalies) report.problems.push(`layer directory event that should not happen: ${a}`)
  if (report.pullConverted > report.layers.publications) report.problems.push(`pulls reported ${report.pullConverted} conversions, the directory saw ${report.layers.publications}`)
  log(`soak: ${report.ops} operations by ${o.workers} processes; checking the cache`)
  report.problems.push(...(await diskFindings(o.home, false)).problems)
  report.problems.push(...(await apiProblems(o.home, 'soak-check', { check: o.world.features.check })))
  report.problems.push(...(await drainProblems(o.home)))
  await fsp.rm(outDir, { recursive: true, force: true })
  return report
}

/** A report as a few lines for a log or a README. */
export function describeSoakReport(rep: SoakReport): string {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`
  const ops = Object.entries(rep.byOp)
    .map(([k, v]) => `${k} ${v.ok}${v.legitimate ? `+${v.legitimate}` : ''}${v.unexpected ? ` (${v.unexpected} unexpected)` : ''}`)
    .join(', ')
  const l = rep.layers
  return [
    `soak: seed ${rep.seed}: ${rep.workers} processes x ${rep.seconds} s: ${rep.ops} operations, ${rep.unexpected.length} unexpected errors, ${rep.problems.length} problems`,
    `  by operation (ok+legitimate not-found/in-use): ${ops}`,
    `  layers: ${l.publications} conversions of ${l.distinct} layers, ${l.removals} removals, ${l.duplicates.length} conversions while present (pulls reported ${rep.pullConverted})`,
    `  peak RSS per process: ${rep.peakRss.map(mib).join(', ')} (max ${mib(Math.max(...rep.peakRss))})`,
    ...rep.problems.map((p) => `  PROBLEM ${p}`),
  ].join('\n')
}
