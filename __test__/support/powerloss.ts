/**
 * The power-loss harness: the crash harness (./crash-run) kills a process,
 * which loses nothing the process handed to the kernel; a power cut also
 * loses the kernel's page cache and whatever the journal had not
 * committed, so only fsync ordering keeps the index and the files
 * consistent. device-mapper is not available on these machines, so the
 * cut is made with a VM (./vm): the 6.12 kernel under qemu runs the engine
 * (crates/cache/examples/powerloss_guest.rs) on an ext4 virtio disk, and
 * the host SIGKILLs qemu in the middle of an operation.
 *
 * What the cut loses: the disk is `cache=writeback`, so a write the guest
 * submitted is in qemu's file (the host's page cache, which survives qemu)
 * and a flush makes it so for certain; what the guest had not submitted
 * (its page cache, uncommitted journal transactions) is gone. Not modelled:
 * a drive reordering or dropping submitted, unflushed writes (that needs
 * dm-log-writes and a replay tool).
 *
 * A round: boot on the shared disk (the guest opens the cache, the
 * recovery a boot after a power cut does, then runs seeded operations,
 * reporting each on the data channel); cut at a seeded moment of an
 * operation; `e2fsck -fy` (journal replay; exit 4 or more is a problem);
 * copy the cache out with `debugfs rdump` (no mount) and check the copy
 * with ./crash-check as the crash harness does: disk findings (debris
 * counted, not problems), list/inspect/acquire/check through the API,
 * references against what the operations that finished left (a finished
 * operation must survive the cut; the cut one may have done all or none
 * of its work per reference), the cut operation run again, then a prune
 * leaving no debris, and removing everything and pruning leaving no file.
 * The copy is thrown away; the next round boots on the recovered disk.
 *
 * Seeded: the seed gives each boot's workload seed and every cut delay (a
 * fraction of the operation's running time, learnt from the operations
 * that finished). Timing under TCG varies, so a seed replays the choices,
 * not the exact write a cut lands on.
 */
import { execFile } from 'child_process'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'
import { pathToFileURL } from 'url'

import { Image } from '../..'
import { childEnv, freshHome, PACKAGE_ROOT, readIndex, realEnv, runNodeScript, setEnv } from './cache'
import { apiProblems, diskFindings, drainProblems } from './crash-check'
import { LEGITIMATE, Op, WORKER } from './crash-run'
import { detectFeatures, rng } from './crash-world'
import { buildImage, makeTempDir, mergeDockerArchives, noise, requireTools, run, toDockerArchive, toOciArchive } from './images'
import { ensureInitramfs, qemuDriveFile, spawnVm, tail, vmPrerequisites } from './vm'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const worker: { run(op: Op, converted: string[]): Promise<unknown> } = require(WORKER)

const GUEST_SCRIPT = path.join(PACKAGE_ROOT, '__test__', 'vm', 'powerloss.sh')
const SANDBOX = 'powerloss-check'
const POLL_MS = 10

export interface PowerlossWorld {
  work: string
  /** The ext4 image every round boots on: the cache in /cache, the archives in /images. */
  disk: string
  /**
   * Where the guest mounts the disk and the host copies the cache to
   * (`<root>/cache`): the same path on both sides, since a VMDK names its
   * extents by absolute path and `check` finds a moved cache's disks wrong.
   */
  root: string
  kernel: string
  initramfs: string
  /** By file name: the archive on the host and the references loading it makes. */
  archives: Map<string, { path: string; refs: string[] }>
  stop(): Promise<void>
}

/** Builds the guest program (release, sharing target/ with `cargo test --release --target <host>`); returns its path. */
export async function buildGuest(): Promise<string> {
  const host = /^host: (\S+)$/m.exec((await run('rustc', ['-vV'])).stdout)![1]
  await run('cargo', ['build', '--quiet', '--release', '--target', host, '--example', 'powerloss_guest', '-p', 'msb-cache'], { cwd: PACKAGE_ROOT })
  return path.join(PACKAGE_ROOT, 'target', host, 'release', 'examples', 'powerloss_guest')
}

/**
 * The guest, its initramfs (the VM harness's, with ext4 and the program),
 * and a 512 MiB ext4 disk (the engine leaves 256 MiB free) holding examples/hello.oci.tar and archives of
 * two images sharing a base (one of them twice, in a two-image archive).
 */
export async function makePowerlossWorld(opts: { scale?: number } = {}): Promise<PowerlossWorld> {
  requireTools(['umoci', 'skopeo', 'mkfs.ext4', 'e2fsck', 'debugfs', 'fsck.erofs', 'cargo'])
  const { kernel } = vmPrerequisites(['ext4'])
  const guest = await buildGuest()
  const initramfs = await ensureInitramfs({
    variant: 'powerloss',
    modules: ['ext4'],
    files: [
      { from: guest, to: '/bin/powerloss-guest' },
      { from: GUEST_SCRIPT, to: '/harness.sh' },
    ],
  })
  const work = await makeTempDir('msb-powerloss-')
  const mib = (n: number) => Math.round(n * (opts.scale ?? 1) * (1 << 20))
  const files = (dir: string, n: number) => Array.from({ length: n }, (_, i) => ({ type: 'file' as const, path: `${dir}/f${i}.txt`, content: `${dir}:${i}\n`.repeat(1 + (i % 30)) }))
  const base = await buildImage(path.join(work, 'base'), {
    layers: [{ entries: [{ type: 'file', path: 'shared/base.bin', content: noise(mib(1.5), 1) }, ...files('etc/base', 200)] }],
    refs: ['localhost/powerloss/base:v1'],
  })
  const apps = []
  for (const i of [1, 2]) {
    const layers = [{ entries: [{ type: 'file' as const, path: `app/${i}.bin`, content: noise(mib(0.5 * i), 10 + i) }, ...files(`app/${i}`, 60)] }]
    apps.push(await buildImage(path.join(work, `app${i}`), { base, layers, refs: [`localhost/powerloss/app${i}:v1`] }))
  }
  const stage = path.join(work, 'stage')
  const images = path.join(stage, 'images')
  await fsp.mkdir(path.join(stage, 'cache'), { recursive: true })
  await fsp.mkdir(images)
  await fsp.copyFile(path.join(PACKAGE_ROOT, 'examples', 'hello.oci.tar'), path.join(images, 'hello.oci.tar'))
  await toOciArchive(apps[0], path.join(images, 'app1.oci.tar'))
  const docker = await Promise.all(apps.map((a, i) => toDockerArchive(a, path.join(work, `app${i + 1}.docker.tar`))))
  await fsp.copyFile(docker[1], path.join(images, 'app2.docker.tar'))
  await mergeDockerArchives(docker, path.join(images, 'apps.docker.tar'))
  const archives = new Map<string, { path: string; refs: string[] }>()
  const previous = realEnv('MSB_HOME')
  const scratch = await freshHome('msb-powerloss-refs-')
  try {
    for (const name of (await fsp.readdir(images)).sort()) {
      const file = path.join(images, name)
      archives.set(name, { path: file, refs: (await Image.load(file)).map((h) => h.reference) })
    }
  } finally {
    await scratch.cleanup()
    setEnv('MSB_HOME', previous)
  }
  const disk = path.join(work, 'disk.ext4')
  await run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', stage, disk, '512M'])
  return { work, disk, root: path.join(work, 'mnt'), kernel, initramfs, archives, stop: () => fsp.rm(work, { recursive: true, force: true }) }
}

/** One operation of a boot, as the guest reported it. */
export interface GuestOp {
  n: number
  op: Op
  /** How it ended (absent: the cut came first). */
  end?: { ok: boolean; code?: string; refs: string[]; message?: string }
}

/**
 * Chooses when to cut: `delay` at the start of operation `n` of a boot (ms
 * after it; Infinity: let it run), `finished` at each end.
 */
export interface Cutter {
  delay(op: Op, n: number): number
  finished(op: Op, ms: number): void
}

/**
 * Aims each boot's cut at a seeded operation (the open one time in ten,
 * else one of the first three after it), and cuts at a seeded fraction of
 * that operation's expected running time (or of the next one's, if it
 * finishes first). Running times are learnt as crash-run.ts does: from the
 * operations that finish, and raised by a cut that landed mid-operation
 * (`cutIn`).
 */
export function adaptiveCutter(r: () => number): Cutter & { boot(): void; cutIn(op: Op): void } {
  const estimate = new Map<string, number>([['open', 1500], ['load', 1000]])
  const expected = (op: Op) => estimate.get(op.op) ?? 300
  let target = 0
  let last = 0
  return {
    boot: () => (target = r() < 0.1 ? 0 : 1 + Math.floor(r() * 3)),
    delay: (op, n) => (n < target ? Infinity : (last = Math.round(r() * expected(op)))),
    finished: (op, ms) => estimate.set(op.op, Math.max(20, 0.7 * expected(op) + 0.3 * ms)),
    cutIn: (op) => estimate.set(op.op, Math.max(expected(op), 1.05 * last)),
  }
}

export interface Boot {
  ops: GuestOp[]
  /** The host killed qemu (the cut). */
  cut: boolean
  timedOut: boolean
  /** The guest's VMH-STATUS, when it finished before the cut. */
  status?: string
  consoleLog: string
}

/** The guest's operation markers in `data`; a line cut short by the kill is ignored. */
export function parseMarkers(data: string): GuestOp[] {
  const ops: GuestOp[] = []
  for (const line of data.replace(/\r/g, '').split('\n').slice(0, -1)) {
    const m = /^VMH-PL (begin|end) (\d+) (.*)$/.exec(line.trim())
    if (!m) continue
    const n = Number(m[2])
    if (m[1] === 'begin') ops.push({ n, op: JSON.parse(m[3]) })
    else {
      const [, status, rest] = /^(ok|err) (.*)$/.exec(m[3])!
      const at = ops.find((o) => o.n === n)!
      if (status === 'ok') at.end = { ok: true, refs: JSON.parse(rest) }
      else {
        const [, code, refs, message] = /^(\S+) (\S+) ?(.*)$/.exec(rest)!
        at.end = { ok: false, code, refs: JSON.parse(refs), message }
      }
    }
  }
  return ops
}

/** Boots on the world's disk with workload `seed`, cutting power when `cutter` says; at most `timeoutMs`. */
export async function bootAndCut(world: PowerlossWorld, seed: number, ops: number, cutter: Cutter, timeoutMs = 180_000): Promise<Boot> {
  const tmp = await fsp.mkdtemp(path.join(world.work, 'boot-'))
  const consolePath = path.join(tmp, 'console.log')
  const dataPath = path.join(tmp, 'data.log')
  try {
    const child = spawnVm({
      kernel: world.kernel,
      initramfs: world.initramfs,
      drive: `file=${qemuDriveFile(world.disk)},format=raw,if=virtio,cache=writeback`,
      consolePath,
      dataPath,
      append: `pl_root=${world.root} pl_seed=${seed} pl_ops=${ops}`,
    })
    child.stdout!.resume()
    child.stderr!.resume()
    let closed = false
    const exited = new Promise<void>((resolve) =>
      child.once('close', () => {
        closed = true
        resolve()
      }),
    )
    const stopAt = Date.now() + timeoutMs
    const began = new Map<number, number>()
    const ended = new Set<number>()
    let deadline = Infinity
    let cut = false
    let timedOut = false
    while (!closed) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      const now = Date.now()
      const markers = parseMarkers(await fsp.readFile(dataPath, 'latin1').catch(() => ''))
      for (const m of markers) {
        if (!began.has(m.n)) {
          began.set(m.n, now)
          deadline = now + cutter.delay(m.op, m.n)
        }
        if (m.end && !ended.has(m.n)) {
          ended.add(m.n)
          cutter.finished(m.op, now - began.get(m.n)!)
          deadline = Infinity
        }
      }
      if (now >= deadline || now >= stopAt) {
        cut = now >= deadline
        timedOut = !cut
        child.kill('SIGKILL')
        break
      }
    }
    await exited
    const data = await fsp.readFile(dataPath, 'latin1').catch(() => '')
    return {
      ops: parseMarkers(data),
      cut,
      timedOut,
      status: /^VMH-STATUS (.*)$/m.exec(data.replace(/\r/g, ''))?.[1].trim(),
      consoleLog: await fsp.readFile(consolePath, 'utf8').catch(() => ''),
    }
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true })
  }
}

/**
 * What e2fsck says after any journal replay: the superblock's free block
 * and inode counts, which ext4 does not journal (the kernel recounts them
 * at mount), and its progress and summary lines.
 */
const E2FSCK_ROUTINE = [/^Pass \d/, /^e2fsck \d/, /recovering journal/, /^Free (blocks|inodes) count wrong/, /^Fix\? yes$/, /FILE SYSTEM WAS MODIFIED/, /: \d+\/\d+ files/]

/**
 * `e2fsck -fy` of the disk (replaying its journal): the exit code (0 clean,
 * 1 or 2 fixed, 4 and up not), the output, and the lines of it that say
 * more than a replay after a power cut needs.
 */
export function e2fsck(disk: string): Promise<{ code: number; output: string; unusual: string[] }> {
  return new Promise((resolve) => {
    execFile('e2fsck', ['-fy', disk], (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 8) : 0
      const output = `${stdout}${stderr}`.trim()
      const unusual = output.split('\n').filter((l) => l.trim() && !E2FSCK_ROUTINE.some((re) => re.test(l.trim())))
      resolve({ code, output, unusual })
    })
  })
}

/**
 * Copies /cache of the disk to `<world.root>/cache` with debugfs (no mount),
 * replacing an earlier copy; returns that path. A cut while SQLite was in
 * rollback-journal mode (the index being created, before it switches to
 * WAL) leaves a hot journal, which any read-write open rolls back, as the
 * engine's next open would; the read-only checks cannot, so it is done here.
 * An index left without tables (the cut came before the first migration
 * committed) is, to the engine, no index: the copy's is removed, so the
 * checks read an empty cache (the disk keeps it, for the next boot to open).
 */
export async function extractCache(world: PowerlossWorld): Promise<string> {
  await fsp.rm(world.root, { recursive: true, force: true })
  await fsp.mkdir(world.root, { recursive: true })
  const { stderr } = await run('debugfs', ['-R', `rdump /cache ${world.root}`, world.disk])
  const noise = stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l))
  if (noise.length > 0) throw new Error(`debugfs rdump: ${noise.join(' | ')}`)
  const home = path.join(world.root, 'cache')
  const db = path.join(home, 'db', 'index.sqlite')
  if (fs.existsSync(`${db}-journal`)) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3')
    const conn = new Database(db, { fileMustExist: true })
    let tables: number
    try {
      tables = (conn.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n
    } finally {
      conn.close()
    }
    if (tables === 0) for (const f of await fsp.readdir(path.dirname(db))) await fsp.rm(path.join(path.dirname(db), f))
  }
  return home
}

/**
 * What the references may be after a cut in `op` (undefined: no operation
 * was in flight), when the operations that finished left `before`: those
 * survive, but for what the cut operation may drop, and nothing is new but
 * what it may add. Returns the problem, if any, and whether the cut
 * operation's work shows.
 */
export function referenceProblem(world: PowerlossWorld, before: string[], after: string[], op: Op | undefined): { problem?: string; visible: boolean } {
  const mayAdd = op?.op === 'load' ? world.archives.get(path.basename(op.path as string))!.refs : op?.op === 'tag' ? [op.target as string] : []
  const mayDrop = (r: string) => op?.op === 'prune' || (op?.op === 'remove' && op.ref === r)
  const lost = before.filter((r) => !after.includes(r) && !mayDrop(r))
  const gained = after.filter((r) => !before.includes(r) && !mayAdd.includes(r))
  const visible = before.length !== after.length || before.some((r) => !after.includes(r))
  if (lost.length === 0 && gained.length === 0) return { visible }
  const what = op ? `what the ${JSON.stringify(op)} in flight may do` : 'nothing (no operation was in flight)'
  return { visible, problem: `references after the cut: lost ${JSON.stringify(lost)}, gained ${JSON.stringify(gained)}; finished operations left ${JSON.stringify(before)}, plus ${what}` }
}

/** What a check of a recovered cache found; debris is not a problem. */
export interface Recovered {
  problems: string[]
  debris: string[]
}

/**
 * Every check of the recovered cache `MSB_HOME` names: disk findings, the
 * API, the cut operation (`op`) run again (a load from `archives`, by file
 * name), a prune leaving no debris, and draining leaving no file. Changes
 * the copy. The addon keeps a cache open per path, so this runs in a fresh
 * process each time (`checkRecovered`), the copy being at one path always.
 */
export async function recoveredProblems(archives: Map<string, { path: string }>, op: Op | undefined, check: boolean): Promise<Recovered> {
  const home = realEnv('MSB_HOME')!
  const crash = await diskFindings(home, true)
  const problems = [...crash.problems]
  problems.push(...(await apiProblems(home, SANDBOX, { check, afterCrash: true })))
  problems.push(...(await diskFindings(home, true)).problems)
  if (op) {
    const before = (await Image.list()).map((h) => h.reference)
    try {
      if (op.op === 'open') await Image.list()
      else await worker.run(op.op === 'load' ? { ...op, path: archives.get(path.basename(op.path as string))!.path } : op, [])
    } catch (e) {
      const code = (e as { code?: string }).code ?? ''
      // A remove the cut came after (not found), or one a sandbox refuses (in use), as in the guest.
      const explained = op.op === 'remove' && ((code === 'image_not_found' && !before.includes(op.ref as string)) || (code === 'image_in_use' && !op.force))
      if (!explained) problems.push(`the cut ${op.op} run again failed: ${code} ${(e as Error).message}`)
    }
  }
  await Image.prune()
  problems.push(...(await diskFindings(home, false)).problems.map((p) => `after a prune: ${p}`))
  problems.push(...(await drainProblems(home)))
  return { problems, debris: crash.debris }
}

/** Runs `recoveredProblems` on the copy at `<world.root>/cache` in a child process (bench/support.mjs loads the TypeScript). */
export async function checkRecovered(world: PowerlossWorld, op: Op | undefined, check: boolean): Promise<Recovered> {
  const loader = pathToFileURL(path.join(PACKAGE_ROOT, 'bench', 'support.mjs')).href
  const source = `import(${JSON.stringify(loader)}).then(async ({ support }) => {
    const { archives, op, check } = JSON.parse(process.env.POWERLOSS_CHECK)
    const found = await support('powerloss').recoveredProblems(new Map(archives), op, check)
    process.stdout.write('\\nPOWERLOSS-RESULT ' + JSON.stringify(found) + '\\n')
  }).catch((e) => { console.error(e.stack); process.exit(1) })`
  const env = childEnv({ MSB_HOME: path.join(world.root, 'cache'), MSB_BACKEND: undefined, POWERLOSS_CHECK: JSON.stringify({ archives: [...world.archives], op, check }) })
  const child = await runNodeScript(source, env, { timeoutMs: 300_000 })
  const result = /^POWERLOSS-RESULT (.*)$/m.exec(child.stdout)
  if (child.code !== 0 || !result) throw new Error(`the check of the recovered cache failed (code ${child.code}, signal ${child.signal}): ${child.stderr.slice(-2000)}`)
  return JSON.parse(result[1])
}

export interface PowerlossOptions {
  world: PowerlossWorld
  seed: number
  /** Stop after this many cuts that landed mid-operation… */
  kills: number
  /** …or after this many rounds (boots). */
  maxRounds: number
  /** Operations per boot (a boot the cut spares ends after them). */
  opsPerBoot?: number
  log?: (line: string) => void
}

export interface PowerlossProblem {
  round: number
  op: string
  problem: string
}

export interface PowerlossReport {
  seed: number
  rounds: number
  /** Cuts that landed while an operation ran. */
  kills: number
  /** Cuts that landed between two operations, and boots that finished before the cut. */
  between: number
  finished: number
  /** By operation kind: how many ran, and how many the cut landed in. */
  byOp: Record<string, { ran: number; kills: number }>
  /** Rounds whose cut operation's work shows in the references. */
  visible: number
  /** Debris found on the recovered disks, summed over rounds (a cut's debris stays until a guest's prune; each copy's prune reclaims it). */
  debris: number
  /** Rounds in which e2fsck fixed more than a journal replay needs (the superblock's free counts). */
  e2fsckFixed: number
  problems: PowerlossProblem[]
  seconds: number
}

/** One round's boot, cut, recovery and checks; problems go to `problem`. Returns the references the recovered disk holds, or undefined when its file system is beyond repair. */
async function cutRound(o: PowerlossOptions, round: number, ctx: { r: () => number; cutter: ReturnType<typeof adaptiveCutter>; check: boolean; recovered: string[]; report: PowerlossReport }): Promise<string[] | undefined> {
  const { cutter, report } = ctx
  const t = Date.now()
  const bootSeed = Math.floor(ctx.r() * 2 ** 31)
  cutter.boot()
  const boot = await bootAndCut(o.world, bootSeed, o.opsPerBoot ?? 12, cutter)
  const last = boot.ops[boot.ops.length - 1]
  const inFlight = last && !last.end ? last : undefined
  let problems = 0
  const problem = (p: string) => {
    problems++
    report.problems.push({ round, op: inFlight ? JSON.stringify(inFlight.op) : '-', problem: p })
  }
  for (const g of boot.ops) (report.byOp[g.op.op] ??= { ran: 0, kills: 0 }).ran++
  if (boot.cut && inFlight) {
    report.kills++
    report.byOp[inFlight.op.op].kills++
    cutter.cutIn(inFlight.op)
  } else if (boot.cut) report.between++
  else report.finished++
  if (boot.timedOut) problem(`the VM did not finish within its time limit\n${tail(boot.consoleLog, 30)}`)
  if (!boot.cut && boot.status !== 'ok') problem(`the guest reported ${boot.status ?? 'nothing'}\n${tail(boot.consoleLog, 30)}`)
  for (const g of boot.ops) {
    if (g.end && !g.end.ok && !LEGITIMATE.includes(g.end.code!)) problem(`${JSON.stringify(g.op)} failed in the guest: ${g.end.code} ${g.end.message}`)
  }
  const fsck = await e2fsck(o.world.disk)
  if (fsck.code >= 4) {
    problem(`e2fsck -fy exited ${fsck.code}: ${fsck.output.slice(-1500)}`)
    return undefined
  }
  if (fsck.unusual.length > 0) {
    report.e2fsckFixed++
    o.log?.(`round ${round}: e2fsck -fy exited ${fsck.code}: ${fsck.unusual.join(' | ')}`)
  }
  try {
    const after = readIndex(await extractCache(o.world)).refs.map((x) => x.reference)
    return await checkRound(o, round, { ...ctx, boot, inFlight, problem, problems: () => problems, fsck: fsck.code, bootSeed, t, after })
  } catch (e) {
    // The copy cannot even be read: a problem, and the next boot works on the same disk.
    problem(`checking the recovered cache failed: ${(e as Error).message.slice(0, 1500)}`)
    o.log?.(`round ${round} boot seed ${bootSeed}: checking the recovered cache failed, 1 PROBLEMS`)
    return ctx.recovered
  } finally {
    await fsp.rm(o.world.root, { recursive: true, force: true })
  }
}

/** The checks of a round whose cache was copied off the disk (`after`: its references). */
async function checkRound(o: PowerlossOptions, round: number, c: { check: boolean; recovered: string[]; report: PowerlossReport; boot: Boot; inFlight?: GuestOp; problem: (p: string) => void; problems: () => number; fsck: number; bootSeed: number; t: number; after: string[] }): Promise<string[]> {
  const { boot, inFlight, problem, report, after } = c
  const finishedLast = [...boot.ops].reverse().find((g) => g.end)
  const refs = referenceProblem(o.world, finishedLast?.end?.refs ?? c.recovered, after, inFlight?.op)
  if (refs.problem) problem(refs.problem)
  if (refs.visible && inFlight) report.visible++
  const found = await checkRecovered(o.world, inFlight?.op, c.check)
  found.problems.forEach(problem)
  report.debris += found.debris.length
  const what = inFlight ? `cut in ${inFlight.n}: ${inFlight.op.op}` : boot.cut ? 'cut between operations' : 'finished first'
  o.log?.(
    `round ${round} boot seed ${c.bootSeed}: ${boot.ops.length} operations, ${what}, e2fsck ${c.fsck}, references ${after.length}` +
      `, debris ${found.debris.length}${c.problems() ? `, ${c.problems()} PROBLEMS` : ''}, ${((Date.now() - c.t) / 1000).toFixed(1)} s`,
  )
  return after
}

/** Runs rounds until `kills` cuts landed mid-operation (or `maxRounds`); returns the report. */
export async function powerlossRounds(o: PowerlossOptions): Promise<PowerlossReport> {
  const started = Date.now()
  const r = rng(o.seed)
  // The disk may hold a cache already (an earlier run's): what it holds is what the first cut is measured against.
  const recovered = readIndex(await extractCache(o.world)).refs.map((x) => x.reference)
  await fsp.rm(o.world.root, { recursive: true, force: true })
  const ctx = { r, cutter: adaptiveCutter(r), check: (await detectFeatures()).check, recovered }
  const report: PowerlossReport = { seed: o.seed, rounds: 0, kills: 0, between: 0, finished: 0, byOp: {}, visible: 0, debris: 0, e2fsckFixed: 0, problems: [], seconds: 0 }
  for (let round = 0; round < o.maxRounds && report.kills < o.kills; round++) {
    report.rounds++
    const after = await cutRound(o, round, { ...ctx, report })
    // A disk e2fsck cannot repair ends the run: later rounds would test nothing.
    if (!after) break
    ctx.recovered = after
  }
  report.seconds = (Date.now() - started) / 1000
  return report
}

/** A report as a few lines for a log. */
export function describePowerlossReport(rep: PowerlossReport): string {
  const ops = Object.entries(rep.byOp)
    .map(([k, v]) => `${k} ${v.kills}/${v.ran}`)
    .join(', ')
  return [
    `powerloss: seed ${rep.seed}: ${rep.rounds} rounds, ${rep.kills} cuts mid-operation, ${rep.between} between operations, ${rep.finished} boots finished first, ${rep.problems.length} problems, ${rep.seconds.toFixed(0)} s (${(rep.seconds / Math.max(1, rep.rounds)).toFixed(1)} s a round)`,
    `  cuts/operations run, by kind: ${ops}`,
    `  cut operations whose work shows in the references: ${rep.visible}; debris on recovered disks (summed over rounds, reclaimed by prune): ${rep.debris}; rounds e2fsck fixed more than a replay needs: ${rep.e2fsckFixed}`,
    ...rep.problems.map((p) => `  PROBLEM round ${p.round} (${p.op}): ${p.problem}`),
  ].join('\n')
}
