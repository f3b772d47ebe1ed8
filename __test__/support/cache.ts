/**
 * The cache side of the Image tests: a private `$MSB_HOME` per test, a
 * snapshot of the files in it, an independent reading of the SQLite index
 * (better-sqlite3, read-only) to check that every file the index names
 * exists and every artifact file is named by the index, `fsck.erofs` over
 * the EROFS artifacts, and child `node` processes.
 */
import { execFile, spawn } from 'child_process'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as os from 'os'
import * as path from 'path'

import { run } from './images'

export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..')

/**
 * The real `process` of this Node process. Jest gives each test file a copy
 * of `process.env`: assigning to it does not reach the C environment the
 * addon reads (`std::env::var`). `vm.runInThisContext` evaluates in Node's
 * main context, where `process` is the real one.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const realProcess: NodeJS.Process = require('vm').runInThisContext('process')

/** Sets (or with `undefined`, unsets) an environment variable for this test file and for the addon. */
export function setEnv(name: string, value: string | undefined): void {
  for (const p of new Set([process, realProcess])) {
    if (value === undefined) delete p.env[name]
    else p.env[name] = value
  }
}

/** The environment variable as the addon sees it. */
export function realEnv(name: string): string | undefined {
  return realProcess.env[name]
}

/** Whether `x` is a Date of any realm (the addon builds them in Node's main context, not Jest's). */
export function isDate(x: unknown): x is Date {
  return Object.prototype.toString.call(x) === '[object Date]'
}

/** The artifact directories of a cache (see crates/cache/src/store.rs). */
export const ARTIFACT_DIRS = ['layers/sha256', 'fsmeta/sha256', 'vmdk/sha256'] as const

/** A fresh, not yet existing cache directory under a new temp dir; `MSB_HOME` points at it. */
export async function freshHome(prefix = 'msb-home-'): Promise<{ root: string; home: string; cleanup: () => Promise<void> }> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), prefix))
  const home = path.join(root, 'cache')
  setEnv('MSB_HOME', home)
  setEnv('MSB_BACKEND', undefined)
  return {
    root,
    home,
    cleanup: async () => {
      if (realEnv('MSB_HOME') === home) setEnv('MSB_HOME', undefined)
      await fsp.rm(root, { recursive: true, force: true })
    },
  }
}

/**
 * Gives every test of the calling file a fresh, empty cache (`MSB_HOME` set
 * for the addon), removed after the test. Later `beforeEach` hooks of the
 * file run after it, so they can fill the cache.
 */
export function freshHomePerTest(): { readonly home: string; readonly root: string } {
  let current: Awaited<ReturnType<typeof freshHome>> | undefined
  beforeEach(async () => {
    current = await freshHome()
  })
  afterEach(async () => {
    await current?.cleanup()
    current = undefined
  })
  const now = (): Awaited<ReturnType<typeof freshHome>> => {
    if (!current) throw new Error('the per-test cache exists only inside a test')
    return current
  }
  return {
    get home() {
      return now().home
    },
    get root() {
      return now().root
    },
  }
}

export interface FileInfo {
  size: number
  mtimeMs: number
  ino: number
}

/** Every file (not directory) under `dir`, by path relative to it. */
export async function tree(dir: string): Promise<Map<string, FileInfo>> {
  const out = new Map<string, FileInfo>()
  const walk = async (d: string): Promise<void> => {
    let entries: fs.Dirent[]
    try {
      entries = await fsp.readdir(d, { withFileTypes: true })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
      throw e
    }
    for (const e of entries) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else {
        // A file may vanish between readdir and lstat while a writer renames it.
        const st = await fsp.lstat(p).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return undefined
          throw err
        })
        if (st) out.set(path.relative(dir, p), { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino })
      }
    }
  }
  await walk(dir)
  return out
}

/** Files under the artifact directories and tmp/ (not db/ or locks/). */
export async function artifactTree(home: string): Promise<Map<string, FileInfo>> {
  const all = await tree(home)
  for (const k of [...all.keys()]) {
    if (!(ARTIFACT_DIRS.some((d) => k.startsWith(d + '/')) || k.startsWith('tmp/'))) all.delete(k)
  }
  return all
}

/** Files of `tmp/`. */
export async function tmpFiles(home: string): Promise<string[]> {
  return [...(await tree(path.join(home, 'tmp'))).keys()]
}

/** What disappeared between two trees, and the bytes it held. */
export function removedBetween(before: Map<string, FileInfo>, after: Map<string, FileInfo>): { paths: string[]; bytes: number } {
  const paths = [...before.keys()].filter((k) => !after.has(k)).sort()
  return { paths, bytes: paths.reduce((n, k) => n + before.get(k)!.size, 0) }
}

export interface IndexState {
  refs: Array<{ reference: string; repository: string; manifest_digest: string; created_at: number; updated_at: number }>
  manifests: Array<{ digest: string; config_digest: string; layer_count: number; fsmeta_size: number | null; vmdk_size: number | null; size_bytes: number; last_used_at: number | null }>
  /** `lost`: a repair dropped the layer's image (no file expected until it is converted again). */
  layers: Array<{ diff_id: string; erofs_size: number; lost?: number }>
  blobs: Array<{ digest: string; size: number; media_type: string | null }>
  /** Manifests and configs kept in the index, with their lengths. */
  blobContent: Array<{ digest: string; length: number }>
  /** Each layer's tar framing, with its length. */
  layerFraming: Array<{ diff_id: string; length: number }>
  manifestLayers: Array<{ manifest_digest: string; position: number; diff_id: string; blob_digest: string; blob_size: number }>
  configs: Array<{ digest: string }>
  sandboxes: Array<{ name: string; manifest_digest: string }>
  snapshots: Array<{ name: string; manifest_digest: string }>
}

/** Reads the index read-only, independently of the addon. An absent index reads as empty. */
export function readIndex(home: string): IndexState {
  const file = path.join(home, 'db', 'index.sqlite')
  const empty: IndexState = { refs: [], manifests: [], layers: [], blobs: [], blobContent: [], layerFraming: [], manifestLayers: [], configs: [], sandboxes: [], snapshots: [] }
  if (!fs.existsSync(file)) return empty
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3')
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return {
      refs: db.prepare('SELECT * FROM image_refs ORDER BY reference').all(),
      manifests: db.prepare('SELECT * FROM manifests ORDER BY digest').all(),
      layers: db.prepare('SELECT * FROM layers ORDER BY diff_id').all(),
      blobs: db.prepare('SELECT * FROM blobs ORDER BY digest').all(),
      blobContent: db.prepare('SELECT digest, length(content) AS length FROM blob_content ORDER BY digest').all(),
      layerFraming: db.prepare('SELECT diff_id, length(framing) AS length FROM layer_framing ORDER BY diff_id').all(),
      manifestLayers: db.prepare('SELECT * FROM manifest_layers ORDER BY manifest_digest, position').all(),
      configs: db.prepare('SELECT digest FROM configs ORDER BY digest').all(),
      sandboxes: db.prepare('SELECT * FROM sandboxes ORDER BY name').all(),
      snapshots: db.prepare('SELECT * FROM snapshots ORDER BY name').all(),
    }
  } finally {
    db.close()
  }
}

const hex = (d: string): string => d.replace(/^sha256:/, '')

/** A manifest's or config's bytes as the index keeps them (undefined if it does not). */
export function storedContent(home: string, digest: string): Buffer | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3')
  const db = new Database(path.join(home, 'db', 'index.sqlite'), { readonly: true, fileMustExist: true })
  try {
    return db.prepare('SELECT content FROM blob_content WHERE digest = ?').get(digest)?.content
  } finally {
    db.close()
  }
}

/** The artifact files the index says exist, with their recorded sizes. */
export function indexedFiles(state: IndexState): Map<string, number> {
  const files = new Map<string, number>()
  for (const l of state.layers) if (!l.lost) files.set(`layers/sha256/${hex(l.diff_id)}.erofs`, l.erofs_size)
  for (const m of state.manifests) {
    if (m.fsmeta_size !== null) files.set(`fsmeta/sha256/${hex(m.digest)}.erofs`, m.fsmeta_size)
    if (m.vmdk_size !== null) files.set(`vmdk/sha256/${hex(m.digest)}.vmdk`, m.vmdk_size)
  }
  return files
}

/**
 * Everything that is wrong with a cache, as sentences (empty when it is
 * consistent): indexed files missing or of the wrong size, artifact files
 * no index row reaches, files left in tmp/, dangling rows, duplicates.
 */
export async function consistencyProblems(home: string): Promise<string[]> {
  const problems: string[] = []
  const state = readIndex(home)
  const files = await artifactTree(home)
  const indexed = indexedFiles(state)
  for (const [p, size] of indexed) {
    const f = files.get(p)
    if (!f) problems.push(`indexed file missing: ${p}`)
    else if (f.size !== size) problems.push(`indexed file ${p} is ${f.size} bytes, index says ${size}`)
  }
  for (const p of files.keys()) {
    if (p.startsWith('tmp/')) problems.push(`file left in tmp/: ${p}`)
    else if (!indexed.has(p)) problems.push(`unindexed artifact: ${p}`)
  }
  const manifests = new Set(state.manifests.map((m) => m.digest))
  const layers = new Set(state.layers.map((l) => l.diff_id))
  const blobs = new Set(state.blobs.map((b) => b.digest))
  const content = new Map(state.blobContent.map((c) => [c.digest, c.length]))
  const framed = new Set(state.layerFraming.map((f) => f.diff_id))
  for (const l of state.layers) if (!framed.has(l.diff_id)) problems.push(`layer ${l.diff_id} has no framing`)
  for (const f of state.layerFraming) if (!layers.has(f.diff_id)) problems.push(`framing of ${f.diff_id} has no layers row`)
  const documents = new Set(state.manifests.flatMap((m) => [m.digest, m.config_digest]))
  for (const c of state.blobContent) if (!documents.has(c.digest)) problems.push(`content of ${c.digest} belongs to no manifest`)
  for (const b of state.blobs) if (!documents.has(b.digest)) problems.push(`blob row ${b.digest} belongs to no manifest`)
  const configs = new Set(state.manifests.map((m) => m.config_digest))
  for (const c of state.configs) if (!configs.has(c.digest)) problems.push(`config ${c.digest} belongs to no manifest`)
  for (const x of state.manifestLayers) if (!manifests.has(x.manifest_digest)) problems.push(`layer row of missing manifest ${x.manifest_digest}`)
  for (const r of state.refs) if (!manifests.has(r.manifest_digest)) problems.push(`ref ${r.reference} points at missing manifest ${r.manifest_digest}`)
  for (const m of state.manifests) {
    if (!blobs.has(m.digest)) problems.push(`manifest ${m.digest} has no blob row`)
    if (!blobs.has(m.config_digest)) problems.push(`config ${m.config_digest} has no blob row`)
    for (const d of [m.digest, m.config_digest]) {
      const size = state.blobs.find((b) => b.digest === d)?.size
      if (content.get(d) !== size) problems.push(`${d} is ${size} bytes, its stored content ${content.get(d)}`)
    }
    const ml = state.manifestLayers.filter((x) => x.manifest_digest === m.digest)
    if (ml.length !== m.layer_count) problems.push(`manifest ${m.digest} has ${ml.length} layer rows, layer_count ${m.layer_count}`)
    ml.forEach((x, i) => {
      if (x.position !== i) problems.push(`manifest ${m.digest} layer positions are not 0..n-1`)
    })
  }
  for (const x of state.manifestLayers) {
    if (!layers.has(x.diff_id)) problems.push(`manifest layer ${x.diff_id} has no layers row`)
  }
  const dupes = (xs: string[]): string[] => xs.filter((x, i) => xs.indexOf(x) !== i)
  for (const d of dupes(state.refs.map((r) => r.reference))) problems.push(`duplicate ref ${d}`)
  for (const d of dupes(state.blobs.map((b) => b.digest))) problems.push(`duplicate blob ${d}`)
  for (const d of dupes(state.layers.map((l) => l.diff_id))) problems.push(`duplicate layer ${d}`)
  return problems
}

/**
 * Writes the root disk the VMDK makes, fsmeta then its layers one after
 * the other, to `out`: fsmeta names its layers' records and blocks by
 * where they are on it, so erofs-utils reads an image's tree there.
 */
export async function writeRootDisk(fsmetaPath: string, layers: readonly string[], out: string): Promise<string> {
  const fd = await fsp.open(out, 'w')
  try {
    for (const p of [fsmetaPath, ...layers]) await fd.write(await fsp.readFile(p))
  } finally {
    await fd.close()
  }
  return out
}

/** Runs `use` on a temporary root disk of fsmeta and its layers ({@link writeRootDisk}). */
async function withRootDisk<T>(fsmetaPath: string, layers: readonly string[], use: (disk: string) => Promise<T>): Promise<T> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'msb-disk-'))
  try {
    return await use(await writeRootDisk(fsmetaPath, layers, path.join(dir, 'disk.raw')))
  } finally {
    await fsp.rm(dir, { recursive: true, force: true })
  }
}

/**
 * Runs `fsck.erofs` on every layer image, and on the root disk of every
 * fsmeta image and its manifest's layer images (in layer order, as the
 * index records them; also given as devices, which fsmeta written before
 * small files were packed reads by id); returns failures.
 */
export async function fsckProblems(home: string): Promise<string[]> {
  const problems: string[] = []
  const check = async (rel: string, devices: string[]): Promise<void> => {
    const abs = devices.map((d) => path.join(home, d))
    const fsck = (image: string) => run('fsck.erofs', [...abs.map((d) => `--device=${d}`), image])
    try {
      await (abs.length === 0 ? fsck(path.join(home, rel)) : withRootDisk(path.join(home, rel), abs, fsck))
    } catch (e) {
      problems.push(`fsck.erofs ${rel}: ${(e as Error).message.split('\n').slice(0, 4).join(' | ')}`)
    }
  }
  const state = readIndex(home)
  const list = async (dir: string): Promise<string[]> => {
    try {
      return (await fsp.readdir(path.join(home, dir))).map((n) => `${dir}/${n}`)
    } catch {
      return []
    }
  }
  for (const rel of await list('layers/sha256')) await check(rel, [])
  for (const rel of await list('fsmeta/sha256')) {
    const digest = 'sha256:' + path.basename(rel, '.erofs')
    const layers = state.manifestLayers.filter((l) => l.manifest_digest === digest)
    if (layers.length === 0) {
      problems.push(`fsmeta ${rel} belongs to no indexed manifest`)
      continue
    }
    await check(rel, layers.map((l) => `layers/sha256/${hex(l.diff_id)}.erofs`))
  }
  return problems
}

export interface ChildResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs `cmd args` to completion, collecting output (never rejects). */
export function spawnCollect(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Runs a CommonJS script with `node` (the package is `require(PACKAGE_ROOT)`-able as `msb`). */
export function runNodeScript(source: string, env: NodeJS.ProcessEnv, opts: { cwd?: string; prefix?: string[]; timeoutMs?: number } = {}): Promise<ChildResult> {
  const prefix = opts.prefix ?? []
  const [cmd, ...rest] = [...prefix, process.execPath, '-e', source]
  return spawnCollect(cmd, rest, { cwd: opts.cwd, env, timeoutMs: opts.timeoutMs ?? 120_000 })
}

/** Env for a child: this process's env with the given overrides (undefined deletes). */
export function childEnv(overrides: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}

/** Sum of the sizes of the files under `dir`. */
export async function bytesUnder(dir: string): Promise<number> {
  let n = 0
  for (const f of (await tree(dir)).values()) n += f.size
  return n
}

export { execFile }

export interface TreeEntry {
  path: string
  type: 'file' | 'dir' | 'symlink' | 'other'
  mode: number
  uid: number
  gid: number
  size?: number
  sha256?: string
  target?: string
  /** Whole seconds; not reported for directories (adding children changes it on extraction). */
  mtime?: number
}

/**
 * Describes a directory tree for comparison: type, permission bits, owner,
 * content hash, symlink target, mtime (non-directories). Hard links are not
 * distinguished (extraction tools write them as copies).
 */
export async function describeTree(root: string): Promise<TreeEntry[]> {
  const { createHash } = await import('crypto')
  const out: TreeEntry[] = []
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(root, rel)
    const st = await fsp.lstat(abs)
    const base = { path: rel, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid }
    if (st.isDirectory()) {
      out.push({ ...base, type: 'dir' })
      for (const name of (await fsp.readdir(abs)).sort()) await walk(rel === '' ? name : `${rel}/${name}`)
    } else if (st.isSymbolicLink()) {
      out.push({ ...base, mode: 0, type: 'symlink', target: await fsp.readlink(abs), mtime: Math.floor(st.mtimeMs / 1000) })
    } else if (st.isFile()) {
      const sha = createHash('sha256').update(await fsp.readFile(abs)).digest('hex')
      out.push({ ...base, type: 'file', size: st.size, sha256: sha, mtime: Math.floor(st.mtimeMs / 1000) })
    } else {
      out.push({ ...base, type: 'other', mtime: Math.floor(st.mtimeMs / 1000) })
    }
  }
  await walk('')
  return out
}

/** Extracts the merged root filesystem of an acquired image (its root disk: fsmeta + layers) with fsck.erofs. */
export async function extractRootDisk(fsmetaPath: string, layers: readonly string[], out: string): Promise<string> {
  await withRootDisk(fsmetaPath, layers, (disk) => run('fsck.erofs', [...layers.map((l) => `--device=${l}`), `--extract=${out}`, disk]))
  return out
}

/** Awaits `p`, which must reject; returns the rejection (fails the test if it resolves). */
export type Rejection = Error & { code?: string; reference?: string; path?: string; expected?: string; actual?: string; sandboxes?: string[] }

export async function rejectionOf(p: Promise<unknown>): Promise<Rejection> {
  let value: unknown
  try {
    value = await p
  } catch (e) {
    return e as Rejection
  }
  throw new Error(`expected a rejection, but it resolved to ${JSON.stringify(value)}`)
}

/**
 * The bytes an image occupies in the cache, from the digests the fixture
 * knows: its manifest and config and each layer's framing (stored in the
 * index), each layer EROFS, fsmeta and VMDK (what `ImageHandle.sizeBytes`
 * documents).
 */
export async function footprintOf(home: string, image: { manifest: string; config: string; diffIds: string[] }): Promise<number> {
  const state = readIndex(home)
  const files = [`fsmeta/sha256/${hex(image.manifest)}.erofs`, `vmdk/sha256/${hex(image.manifest)}.vmdk`, ...image.diffIds.map((d) => `layers/sha256/${hex(d)}.erofs`)]
  let n = 0
  for (const f of files) n += (await fsp.stat(path.join(home, f))).size
  for (const d of [image.manifest, image.config]) n += state.blobContent.find((c) => c.digest === d)!.length
  for (const d of image.diffIds) n += state.layerFraming.find((f) => f.diff_id === d)!.length
  return n
}

/**
 * The full `st_mode` (type and all 12 permission bits) of `file` in an EROFS
 * image, read from the on-disk inode: `fsck.erofs --extract` drops setuid
 * and setgid (it chowns after chmod) and `dump.erofs` prints only 0777.
 * The inode number comes from `dump.erofs --path`; the superblock (at 1024)
 * gives the block size (byte 12, log2) and meta_blkaddr (bytes 40-43); an
 * inode is at meta_blkaddr * blksz + nid * 32 and i_mode at byte 4 of it,
 * for compact and extended inodes alike.
 */
export async function erofsMode(image: string, file: string, devices: readonly string[] = []): Promise<number> {
  return devices.length === 0 ? modeIn(image, file, devices) : withRootDisk(image, devices, (disk) => modeIn(disk, file, devices))
}

/** {@link erofsMode} of `image`, a layer or a root disk (with its layers as `devices`). */
async function modeIn(image: string, file: string, devices: readonly string[]): Promise<number> {
  const { stdout } = await run('dump.erofs', [...devices.map((d) => `--device=${d}`), `--path=${file}`, image])
  const nid = /NID: (\d+)/.exec(stdout)
  if (!nid) throw new Error(`dump.erofs found no ${file} in ${image}: ${stdout}`)
  const fd = await fsp.open(image, 'r')
  try {
    const sb = Buffer.alloc(64)
    await fd.read(sb, 0, 64, 1024)
    const blksz = 2 ** sb[12]
    const meta = sb.readUInt32LE(40)
    const inode = Buffer.alloc(8)
    await fd.read(inode, 0, 8, meta * blksz + Number(nid[1]) * 32)
    return inode.readUInt16LE(4)
  } finally {
    await fd.close()
  }
}

/** `describeTree` entries with setuid/setgid cleared on non-directories (what `fsck.erofs --extract` can reproduce). */
export function withoutSetid(entries: TreeEntry[]): TreeEntry[] {
  return entries.map((e) => (e.type === 'dir' ? e : { ...e, mode: e.mode & ~0o6000 }))
}
