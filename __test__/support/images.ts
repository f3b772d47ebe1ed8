/**
 * Image fixtures for the Image API tests, made by the real tools users make
 * images with: layers are built by `umoci` from files the test writes into
 * an unpacked bundle and `umoci repack` (deletions become whiteouts; an
 * opaque directory replacement is a GNU tar layer added with `umoci raw
 * add-layer`, because `umoci insert --opaque` 0.4.7 writes a truncated
 * tar), configs are set with `umoci config`, and archives
 * are exported by `skopeo copy`. Only what the tools cannot produce (multi-
 * image docker archives, multi-platform indexes, recompressed layers, and
 * every corrupt input) is written by hand, by editing JSON and blobs of a
 * tool-made layout so that everything else stays valid.
 *
 * Missing tools are an error (`requireTools`), never a reason to skip.
 */
import { execFile, spawnSync } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as os from 'os'
import * as path from 'path'
import { promisify } from 'util'
import * as zlib from 'zlib'

const execFileP = promisify(execFile)

// ---------------------------------------------------------------- commands

/** Every external tool the fixtures and the checks use. */
export const TOOLS = ['umoci', 'skopeo', 'tar', 'gzip', 'zstd', 'python3', 'fsck.erofs', 'dump.erofs', 'qemu-img', 'setpriv'] as const

/** Throws a clear error naming every missing tool (tests then FAIL, never skip). */
export function requireTools(tools: readonly string[] = TOOLS): void {
  const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v "$0"`, t]).status !== 0)
  if (missing.length > 0) {
    throw new Error(`required tool(s) not installed or not on PATH: ${missing.join(', ')} — these tests need them and refuse to skip`)
  }
}

/** Runs a command; rejects with its stderr on failure. */
export async function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<{ stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 256 << 20, encoding: 'utf8' })
    return { stdout, stderr }
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; code?: number | string; message: string }
    throw new Error(`command failed: ${cmd} ${args.map((a) => JSON.stringify(a)).join(' ')}\nexit: ${err.code}\nstderr: ${err.stderr ?? ''}\nstdout: ${(err.stdout ?? '').slice(0, 2000)}\n${err.message}`)
  }
}

export function sha256(data: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer)
  return 'sha256:' + hash.digest('hex')
}

export function hexOf(digest: string): string {
  return digest.replace(/^sha256:/, '')
}

export async function makeTempDir(prefix = 'msb-img-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix))
}

// ---------------------------------------------------------------- specs

interface Owned {
  mode?: number
  uid?: number
  gid?: number
  /** Seconds since the epoch. */
  mtime?: number
}

/** One change a layer makes to the filesystem below it. */
export type Entry =
  | ({ type: 'file'; path: string; content: string | Buffer } & Owned)
  | ({ type: 'dir'; path: string } & Owned)
  | { type: 'symlink'; path: string; target: string; uid?: number; gid?: number; mtime?: number }
  /** A hard link at `path` to the file at `target` (both rootfs paths). */
  | { type: 'hardlink'; path: string; target: string }
  /** Removes `path` from the layers below: umoci writes a whiteout. */
  | { type: 'delete'; path: string }
  /** Replaces directory `path` (opaque whiteout) with exactly `entries` (paths relative to it). */
  | ({ type: 'opaque'; path: string; entries: Entry[] } & Owned)

export interface LayerSpec {
  entries: Entry[]
}

export interface PlatformSpec {
  os: string
  architecture: string
  variant?: string
}

export interface ConfigSpec {
  env?: string[]
  cmd?: string[]
  entrypoint?: string[]
  workingDir?: string
  user?: string
  labels?: Record<string, string>
  stopSignal?: string
  platform?: PlatformSpec
}

export interface ImageSpec {
  layers: LayerSpec[]
  config?: ConfigSpec
  /** Full references to name the image by in the layout (default `localhost/test/app:v1`). */
  refs?: string[]
  /** Start from this image (its layers and config) instead of an empty one. */
  base?: BuiltImage
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
  platform?: { os: string; architecture: string; variant?: string }
}

/** A single-platform image in an OCI layout directory, with what the tools wrote. */
export interface BuiltImage {
  /** The OCI layout directory. */
  layout: string
  /** Names (`org.opencontainers.image.ref.name`) in the layout, full references. */
  refs: string[]
  manifestDigest: string
  manifestSize: number
  manifest: { schemaVersion: number; mediaType?: string; config: Descriptor; layers: Descriptor[] }
  configDigest: string
  config: {
    architecture: string
    os: string
    variant?: string
    config?: Record<string, unknown>
    rootfs: { type: string; diff_ids: string[] }
    [k: string]: unknown
  }
  diffIds: string[]
  layers: Descriptor[]
}

// ---------------------------------------------------------------- building

async function applyOwned(target: string, e: Owned, isLink = false): Promise<void> {
  if (e.uid !== undefined || e.gid !== undefined) {
    await fsp.lchown(target, e.uid ?? 0, e.gid ?? 0)
  }
  if (e.mode !== undefined && !isLink) {
    await fsp.chmod(target, e.mode)
  }
}

/** Writes `entries` under `root`; returns the mtimes to set once everything exists. */
async function writeEntries(root: string, entries: Entry[]): Promise<Array<[string, number, boolean]>> {
  const times: Array<[string, number, boolean]> = []
  for (const e of entries) {
    const target = path.join(root, e.path)
    if (!target.startsWith(root)) throw new Error(`entry path escapes the rootfs: ${e.path}`)
    switch (e.type) {
      case 'file':
        await fsp.mkdir(path.dirname(target), { recursive: true })
        await fsp.rm(target, { force: true, recursive: true })
        await fsp.writeFile(target, e.content)
        await applyOwned(target, e)
        if (e.mtime !== undefined) times.push([target, e.mtime, false])
        break
      case 'dir':
        await fsp.mkdir(target, { recursive: true })
        await applyOwned(target, e)
        if (e.mtime !== undefined) times.push([target, e.mtime, false])
        break
      case 'symlink':
        await fsp.mkdir(path.dirname(target), { recursive: true })
        await fsp.rm(target, { force: true, recursive: true })
        await fsp.symlink(e.target, target)
        await applyOwned(target, e, true)
        if (e.mtime !== undefined) times.push([target, e.mtime, true])
        break
      case 'hardlink':
        await fsp.mkdir(path.dirname(target), { recursive: true })
        await fsp.rm(target, { force: true, recursive: true })
        await fsp.link(path.join(root, e.target), target)
        break
      case 'delete':
        await fsp.rm(target, { recursive: true })
        break
      case 'opaque':
        throw new Error('opaque entries are handled per layer')
    }
  }
  return times
}

async function setTimes(times: Array<[string, number, boolean]>): Promise<void> {
  // Deepest first, so a directory's mtime is set after its children changed it.
  times.sort((a, b) => b[0].length - a[0].length)
  for (const [p, t, link] of times) {
    if (link) await fsp.lutimes(p, t, t)
    else await fsp.utimes(p, t, t)
  }
}

function configArgs(c: ConfigSpec): string[] {
  const args: string[] = []
  for (const e of c.env ?? []) args.push('--config.env', e)
  for (const e of c.entrypoint ?? []) args.push('--config.entrypoint', e)
  for (const e of c.cmd ?? []) args.push('--config.cmd', e)
  if (c.workingDir !== undefined) args.push('--config.workingdir', c.workingDir)
  if (c.user !== undefined) args.push('--config.user', c.user)
  for (const [k, v] of Object.entries(c.labels ?? {})) args.push('--config.label', `${k}=${v}`)
  if (c.stopSignal !== undefined) args.push('--config.stopsignal', c.stopSignal)
  if (c.platform) args.push('--os', c.platform.os, '--architecture', c.platform.architecture)
  return args
}

const BUILD_TAG = 'fixture-build'

/**
 * Builds an image with umoci into a new OCI layout at `layout` (must not
 * exist): one layer per `LayerSpec`, then the config, then the names.
 */
export async function buildImage(layout: string, spec: ImageSpec): Promise<BuiltImage> {
  const work = await makeTempDir('msb-umoci-')
  const image = `${layout}:${BUILD_TAG}`
  const bundle = path.join(work, 'bundle')
  try {
    if (spec.base) {
      await copyLayout(spec.base.layout, layout)
      await run('umoci', ['tag', '--image', `${layout}:${spec.base.refs[0]}`, BUILD_TAG])
      for (const r of spec.base.refs) await run('umoci', ['rm', '--image', `${layout}:${r}`])
    } else {
      await run('umoci', ['init', '--layout', layout])
      await run('umoci', ['new', '--image', image])
    }
    await run('umoci', ['unpack', '--image', image, bundle])
    let stale = false
    for (const layer of spec.layers) {
      if (stale) {
        await fsp.rm(bundle, { recursive: true, force: true })
        await run('umoci', ['unpack', '--image', image, bundle])
        stale = false
      }
      const opaque = layer.entries.filter((e) => e.type === 'opaque')
      if (opaque.length > 0) {
        if (layer.entries.length !== 1) throw new Error('a layer with an opaque entry must contain only that entry')
        const o = opaque[0] as Extract<Entry, { type: 'opaque' }>
        // `umoci insert --opaque` (0.4.7) writes a tar cut short (no
        // padding, no end-of-archive blocks), so the opaque layer is made by
        // GNU tar from a staging tree holding the `.wh..wh..opq` marker (an
        // empty regular file, as the OCI spec defines it) and added with
        // `umoci raw add-layer`.
        const stage = path.join(work, `stage-${Date.now()}`)
        const rel = o.path.replace(/^\/+/, '').replace(/\/+$/, '')
        const target = path.join(stage, rel)
        await fsp.mkdir(target, { recursive: true })
        const times = await writeEntries(target, o.entries)
        await fsp.writeFile(path.join(target, '.wh..wh..opq'), '')
        await applyOwned(target, o)
        if (o.mtime !== undefined) times.push([target, o.mtime, false])
        await setTimes(times)
        const layerTar = path.join(work, `opaque-${Date.now()}.tar`)
        await run('tar', ['--format=pax', '--numeric-owner', '-cf', layerTar, '-C', stage, rel.split('/')[0]])
        await run('umoci', ['raw', 'add-layer', '--image', image, layerTar])
        stale = true
        continue
      }
      const rootfs = path.join(bundle, 'rootfs')
      await setTimes(await writeEntries(rootfs, layer.entries))
      await run('umoci', ['repack', '--refresh-bundle', '--image', image, bundle])
    }
    const cfg = configArgs(spec.config ?? {})
    if (cfg.length > 0) await run('umoci', ['config', '--image', image, ...cfg])
    const refs = spec.refs ?? ['localhost/test/app:v1']
    for (const ref of refs) await run('umoci', ['tag', '--image', image, ref])
    await run('umoci', ['rm', '--image', image])
    await run('umoci', ['gc', '--layout', layout])
    if (spec.config?.platform?.variant !== undefined) {
      // umoci config has no --variant: add it to the config and re-link.
      await editImage(layout, refs[0], { config: (c) => ({ ...c, variant: spec.config!.platform!.variant }) })
    }
  } finally {
    await fsp.rm(work, { recursive: true, force: true })
  }
  return readImage(layout)
}

/** Reads the single image named `ref` (default: the first entry) of an OCI layout. */
export async function readImage(layout: string, ref?: string): Promise<BuiltImage> {
  const index = JSON.parse(await fsp.readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] }
  const entries = ref === undefined ? index.manifests : index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === ref)
  if (entries.length === 0) throw new Error(`no manifest named ${ref} in ${layout}`)
  const entry = entries[0]
  const manifest = JSON.parse(await fsp.readFile(blobPath(layout, entry.digest), 'utf8'))
  const config = JSON.parse(await fsp.readFile(blobPath(layout, manifest.config.digest), 'utf8'))
  const refs = index.manifests
    .filter((m) => m.digest === entry.digest)
    .map((m) => m.annotations?.['org.opencontainers.image.ref.name'])
    .filter((n): n is string => n !== undefined)
  return {
    layout,
    refs,
    manifestDigest: entry.digest,
    manifestSize: entry.size,
    manifest,
    configDigest: manifest.config.digest,
    config,
    diffIds: config.rootfs.diff_ids,
    layers: manifest.layers,
  }
}

export function blobPath(layout: string, digest: string): string {
  return path.join(layout, 'blobs', 'sha256', hexOf(digest))
}

/** Writes a blob into a layout, returning its descriptor fields. */
export async function writeBlob(layout: string, data: Buffer | string): Promise<{ digest: string; size: number }> {
  const buf = typeof data === 'string' ? Buffer.from(data) : data
  const digest = sha256(buf)
  await fsp.mkdir(path.join(layout, 'blobs', 'sha256'), { recursive: true })
  await fsp.writeFile(blobPath(layout, digest), buf)
  return { digest, size: buf.length }
}

export interface ImageEdit {
  /** Returns the new config JSON (object) or raw bytes. */
  config?: (config: BuiltImage['config']) => object | Buffer
  /** Returns the new manifest JSON (object) or raw bytes; runs after the config edit. */
  manifest?: (manifest: BuiltImage['manifest']) => object | Buffer
}

/**
 * Rewrites the image `ref` of an OCI layout in place, keeping every
 * descriptor consistent: a changed config gets a new digest in the
 * manifest, a changed manifest a new digest in index.json (for every name
 * pointing at it). Raw (non-JSON) results are written as given.
 */
export async function editImage(layout: string, ref: string, edit: ImageEdit): Promise<BuiltImage> {
  const img = await readImage(layout, ref)
  let manifest: BuiltImage['manifest'] | Buffer = JSON.parse(JSON.stringify(img.manifest))
  let rawConfig = false
  if (edit.config) {
    const next = edit.config(JSON.parse(JSON.stringify(img.config)))
    rawConfig = Buffer.isBuffer(next)
    const blob = await writeBlob(layout, Buffer.isBuffer(next) ? next : JSON.stringify(next))
    ;(manifest as BuiltImage['manifest']).config = { ...(manifest as BuiltImage['manifest']).config, digest: blob.digest, size: blob.size }
  }
  if (edit.manifest) manifest = edit.manifest(manifest as BuiltImage['manifest']) as BuiltImage['manifest'] | Buffer
  const blob = await writeBlob(layout, Buffer.isBuffer(manifest) ? manifest : JSON.stringify(manifest))
  const indexPath = path.join(layout, 'index.json')
  const index = JSON.parse(await fsp.readFile(indexPath, 'utf8')) as { manifests: Descriptor[] }
  for (const m of index.manifests) {
    if (m.digest === img.manifestDigest) {
      m.digest = blob.digest
      m.size = blob.size
    }
  }
  await fsp.writeFile(indexPath, JSON.stringify(index))
  // A raw (non-JSON) config or manifest cannot be read back: describe the image as it was.
  if (Buffer.isBuffer(manifest) || rawConfig) return img
  return readImage(layout, ref)
}

/** Copies a layout directory (blobs are small; a plain copy keeps the source intact). */
export async function copyLayout(src: string, dst: string): Promise<string> {
  await fsp.cp(src, dst, { recursive: true })
  return dst
}

// ---------------------------------------------------------------- exporting

function ociRef(img: BuiltImage, ref?: string): string {
  return `oci:${img.layout}:${ref ?? img.refs[0]}`
}

/** `skopeo copy` to a docker-archive (`docker save` format) named `tags[0]`, plus more tags. */
export async function toDockerArchive(img: BuiltImage, out: string, tags: string[] = [img.refs[0]], ref?: string): Promise<string> {
  const extra = tags.slice(1).flatMap((t) => ['--additional-tag', t])
  const dest = tags.length > 0 ? `docker-archive:${out}:${tags[0]}` : `docker-archive:${out}`
  await run('skopeo', ['copy', '--quiet', ...extra, ociRef(img, ref), dest])
  return out
}

/** `skopeo copy` to an oci-archive (OCI layout in a tar) with one name. */
export async function toOciArchive(img: BuiltImage, out: string, name: string = img.refs[0], ref?: string): Promise<string> {
  await run('skopeo', ['copy', '--quiet', ociRef(img, ref), `oci-archive:${out}:${name}`])
  return out
}

/** `skopeo copy` to an OCI layout directory (created, or added to) with one name. */
export async function toOciDir(img: BuiltImage, outDir: string, name: string = img.refs[0], ref?: string): Promise<string> {
  await run('skopeo', ['copy', '--quiet', ociRef(img, ref), `oci:${outDir}:${name}`])
  return outDir
}

/** `gzip -c src > dst` (what `docker save | gzip` produces). */
export async function gzipFile(src: string, dst: string): Promise<string> {
  await run('sh', ['-c', 'gzip -c -- "$0" > "$1"', src, dst])
  return dst
}

/** `zstd -c src > dst`. */
export async function zstdFile(src: string, dst: string): Promise<string> {
  await run('zstd', ['-q', '-f', '-o', dst, src])
  return dst
}

/** Lists the members of a tar file (GNU tar). */
export async function tarMembers(file: string): Promise<string[]> {
  const { stdout } = await run('tar', ['-tf', file])
  return stdout.split('\n').filter((l) => l !== '')
}

/** Extracts a tar into a new directory. */
export async function untar(file: string, dir: string): Promise<string> {
  await fsp.mkdir(dir, { recursive: true })
  await run('tar', ['-xf', file, '-C', dir])
  return dir
}

/** Tars the contents of `dir` with member names relative to it (no `./`). */
export async function tarDir(dir: string, out: string): Promise<string> {
  const names = (await fsp.readdir(dir)).sort()
  await run('tar', ['--format=pax', '-cf', out, '-C', dir, ...names])
  return out
}

interface DockerManifestEntry {
  Config: string
  RepoTags: string[] | null
  Layers: string[]
}

/** Reads `manifest.json` of a docker archive. */
export async function dockerManifest(archive: string): Promise<DockerManifestEntry[]> {
  const { stdout } = await run('tar', ['-xOf', archive, 'manifest.json'])
  return JSON.parse(stdout)
}

/**
 * One docker archive holding every image of `archives` (skopeo writes one
 * image per docker-archive): members are merged, manifest.json entries
 * concatenated, as `docker save a b` writes them.
 */
export async function mergeDockerArchives(archives: string[], out: string): Promise<string> {
  const work = await makeTempDir('msb-merge-')
  try {
    const merged = path.join(work, 'merged')
    await fsp.mkdir(merged)
    const entries: DockerManifestEntry[] = []
    for (const [i, a] of archives.entries()) {
      const dir = await untar(a, path.join(work, `a${i}`))
      entries.push(...JSON.parse(await fsp.readFile(path.join(dir, 'manifest.json'), 'utf8')))
      for (const name of await fsp.readdir(dir)) {
        if (name === 'manifest.json' || name === 'repositories') continue
        await fsp.cp(path.join(dir, name), path.join(merged, name), { recursive: true, force: true, verbatimSymlinks: true })
      }
    }
    await fsp.writeFile(path.join(merged, 'manifest.json'), JSON.stringify(entries))
    await tarDir(merged, out)
  } finally {
    await fsp.rm(work, { recursive: true, force: true })
  }
  return out
}

/** Copies every blob of `img` into `layout` (created as an OCI layout if needed). */
async function copyBlobs(img: BuiltImage, layout: string): Promise<void> {
  await fsp.mkdir(path.join(layout, 'blobs', 'sha256'), { recursive: true })
  await fsp.writeFile(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  for (const d of [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)]) {
    await fsp.copyFile(blobPath(img.layout, d), blobPath(layout, d))
  }
}

export interface PlatformVariant {
  image: BuiltImage
  platform: PlatformSpec
}

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const REF_NAME = 'org.opencontainers.image.ref.name'

function platformOf(p: PlatformSpec): Descriptor['platform'] {
  return p.variant === undefined ? { os: p.os, architecture: p.architecture } : { os: p.os, architecture: p.architecture, variant: p.variant }
}

/**
 * A multi-platform OCI layout directory named `name`. `nested: false`
 * lists each platform's manifest in index.json (entries sharing the name);
 * `nested: true` writes an image index blob listing them and points one
 * index.json entry at it, as registries and `docker buildx` do.
 */
export async function multiPlatformLayout(out: string, variants: PlatformVariant[], name: string, opts: { nested?: boolean } = {}): Promise<string> {
  for (const v of variants) await copyBlobs(v.image, out)
  const descriptors: Descriptor[] = variants.map((v) => ({
    mediaType: OCI_MANIFEST,
    digest: v.image.manifestDigest,
    size: v.image.manifestSize,
    platform: platformOf(v.platform),
  }))
  let manifests: Descriptor[]
  if (opts.nested) {
    const inner = await writeBlob(out, JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: descriptors }))
    manifests = [{ mediaType: OCI_INDEX, digest: inner.digest, size: inner.size, annotations: { [REF_NAME]: name } }]
  } else {
    manifests = descriptors.map((d) => ({ ...d, annotations: { [REF_NAME]: name } }))
  }
  await fsp.writeFile(path.join(out, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }))
  return out
}

export type Compression = 'gzip' | 'zstd' | 'none'

const LAYER_TYPES: Record<Compression, string> = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  none: 'application/vnd.oci.image.layer.v1.tar',
}

async function decompressBlob(file: string): Promise<Buffer> {
  const data = await fsp.readFile(file)
  if (data[0] === 0x1f && data[1] === 0x8b) return zlib.gunzipSync(data)
  if (data.readUInt32LE(0) === 0xfd2fb528) {
    const { stdout } = await execFileP('zstd', ['-d', '-c', file], { encoding: 'buffer', maxBuffer: 1 << 30 })
    return stdout
  }
  return data
}

async function compress(tar: Buffer, how: Compression, work: string): Promise<Buffer> {
  if (how === 'none') return tar
  if (how === 'gzip') return zlib.gzipSync(tar)
  const src = path.join(work, `layer-${Date.now()}-${Math.random()}.tar`)
  await fsp.writeFile(src, tar)
  await run('zstd', ['-q', '-f', '-19', src, '-o', `${src}.zst`])
  const out = await fsp.readFile(`${src}.zst`)
  await fsp.rm(src)
  await fsp.rm(`${src}.zst`)
  return out
}

/**
 * A copy of `img` in a new OCI layout `out` whose layers are recompressed
 * with `how` (one entry per layer, or one for all); the config (diff_ids)
 * stays, the manifest gets the new digests, sizes and media types.
 */
export async function recompressImage(img: BuiltImage, out: string, how: Compression | Compression[]): Promise<BuiltImage> {
  await copyBlobs(img, out)
  const work = await makeTempDir('msb-recompress-')
  try {
    const layers: Descriptor[] = []
    for (const [i, layer] of img.layers.entries()) {
      const mode = Array.isArray(how) ? how[i] : how
      const tar = await decompressBlob(blobPath(img.layout, layer.digest))
      if (sha256(tar) !== img.diffIds[i]) throw new Error(`fixture bug: layer ${i} does not decompress to its diff_id`)
      const blob = await writeBlob(out, await compress(tar, mode, work))
      layers.push({ mediaType: LAYER_TYPES[mode], digest: blob.digest, size: blob.size })
    }
    const manifest = { ...img.manifest, layers }
    const m = await writeBlob(out, JSON.stringify(manifest))
    const manifests = img.refs.map((r) => ({ mediaType: OCI_MANIFEST, digest: m.digest, size: m.size, annotations: { [REF_NAME]: r } }))
    await fsp.writeFile(path.join(out, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }))
  } finally {
    await fsp.rm(work, { recursive: true, force: true })
  }
  return readImage(out)
}

// ---------------------------------------------------------------- corruptors

/** Cuts `file` to `keep` bytes (default: half). */
export async function truncateFile(file: string, keep?: number): Promise<string> {
  const size = (await fsp.stat(file)).size
  await fsp.truncate(file, keep ?? Math.floor(size / 2))
  return file
}

/** Flips every bit of the byte at `offset` (negative: from the end). */
export async function flipByte(file: string, offset: number): Promise<void> {
  const fd = await fsp.open(file, 'r+')
  try {
    const size = (await fd.stat()).size
    const at = offset < 0 ? size + offset : offset
    if (at < 0 || at >= size) throw new Error(`offset ${offset} outside ${file} (${size} bytes)`)
    const b = Buffer.alloc(1)
    await fd.read(b, 0, 1, at)
    b[0] ^= 0xff
    await fd.write(b, 0, 1, at)
  } finally {
    await fd.close()
  }
}

/**
 * Flips a byte of layer `i`'s blob in a layout, keeping its size:
 * `where: 'gzip-header'` hits the gzip MTIME field (the stream still
 * decompresses to the right tar, only the blob digest is wrong);
 * `'middle'` hits the compressed data.
 */
export async function corruptLayerBlob(img: BuiltImage, i: number, where: 'gzip-header' | 'middle'): Promise<string> {
  const file = blobPath(img.layout, img.layers[i].digest)
  const size = (await fsp.stat(file)).size
  await flipByte(file, where === 'gzip-header' ? 4 : Math.floor(size / 2))
  return file
}

/** Writes a tar with exactly these members (names verbatim, links as given), via Python's tarfile. */
export async function craftTar(out: string, members: Array<{ name: string; content?: string | Buffer; symlink?: string; hardlink?: string; dir?: boolean }>): Promise<string> {
  const spec = members.map((m) => ({
    name: m.name,
    content: m.content === undefined ? null : Buffer.from(m.content).toString('base64'),
    symlink: m.symlink ?? null,
    hardlink: m.hardlink ?? null,
    dir: m.dir ?? false,
  }))
  const script = `
import base64, io, json, sys, tarfile
spec = json.load(sys.stdin)
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    for m in spec:
        info = tarfile.TarInfo(m['name'])
        info.mtime = 0
        if m['dir']:
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            t.addfile(info)
        elif m['symlink'] is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = m['symlink']
            t.addfile(info)
        elif m['hardlink'] is not None:
            info.type = tarfile.LNKTYPE
            info.linkname = m['hardlink']
            t.addfile(info)
        else:
            data = base64.b64decode(m['content'] or '')
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
`
  await new Promise<void>((resolve, reject) => {
    const child = execFile('python3', ['-c', script, out], (err, _stdout, stderr) => (err ? reject(new Error(`python3 tar craft failed: ${stderr}`)) : resolve()))
    child.stdin!.end(JSON.stringify(spec))
  })
  return out
}

/** Reads every member of a tar into memory (name → bytes; links → `{ link }`). */
export async function readTarMembers(file: string): Promise<Array<{ name: string; data?: Buffer; symlink?: string; hardlink?: string; dir?: boolean }>> {
  const script = `
import base64, json, sys, tarfile
out = []
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        e = {'name': m.name}
        if m.isdir(): e['dir'] = True
        elif m.issym(): e['symlink'] = m.linkname
        elif m.islnk(): e['hardlink'] = m.linkname
        else: e['data'] = base64.b64encode(t.extractfile(m).read()).decode()
        out.append(e)
json.dump(out, sys.stdout)
`
  const { stdout } = await run('python3', ['-c', script, file])
  return (JSON.parse(stdout) as Array<{ name: string; data?: string; symlink?: string; hardlink?: string; dir?: boolean }>).map((m) => ({
    ...m,
    data: m.data === undefined ? undefined : Buffer.from(m.data, 'base64'),
  }))
}

/**
 * Rewrites a tar archive member by member through `transform` (which may
 * rename, replace, drop or add members): the hand-made way to get inputs the
 * tools refuse to write (`..` or absolute names, links leading outside).
 */
export async function rewriteTar(
  src: string,
  out: string,
  transform: (members: Awaited<ReturnType<typeof readTarMembers>>) => Parameters<typeof craftTar>[1],
): Promise<string> {
  const members = await readTarMembers(src)
  return craftTar(out, transform(members))
}

/** A file that is not an archive of any kind. */
export async function notAnArchive(out: string): Promise<string> {
  await fsp.writeFile(out, 'This is a plain text file, not an image archive.\n'.repeat(40))
  return out
}

// ---------------------------------------------------------------- stock images

/** A small but varied root filesystem: files with owners, modes and mtimes, a symlink, a hard link, a deletion. */
export function sampleLayers(tag = 'sample'): LayerSpec[] {
  return [
    {
      entries: [
        { type: 'dir', path: 'etc', mode: 0o755, mtime: 1_600_000_000 },
        { type: 'file', path: 'etc/os-release', content: `ID=${tag}\n`, mode: 0o644, mtime: 1_600_000_001 },
        { type: 'file', path: 'bin/tool', content: `#!/bin/sh\necho ${tag}\n`, mode: 0o755, uid: 1000, gid: 1000, mtime: 1_600_000_002 },
        { type: 'file', path: 'tmp/scratch', content: 'to be deleted', mode: 0o600 },
        { type: 'dir', path: 'opt/data', mode: 0o750 },
        { type: 'file', path: 'opt/data/old.txt', content: 'old contents' },
      ],
    },
    {
      entries: [
        { type: 'file', path: `app/${tag}.py`, content: `print("hello from ${tag}")\n`, mode: 0o644, uid: 1000, gid: 1000, mtime: 1_650_000_000 },
        { type: 'symlink', path: 'app/current', target: `${tag}.py` },
        { type: 'hardlink', path: 'bin/tool-link', target: 'bin/tool' },
        { type: 'delete', path: 'tmp/scratch' },
      ],
    },
  ]
}

/** Deterministic pseudo-random bytes (incompressible), for layers of a given size. */
export function noise(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

/** The image's merged root filesystem as `umoci unpack` lays it out, in `out` (its `rootfs/`). */
export async function unpackRootfs(img: BuiltImage, out: string, ref?: string): Promise<string> {
  await run('umoci', ['unpack', '--image', `${img.layout}:${ref ?? img.refs[0]}`, out])
  return path.join(out, 'rootfs')
}

// ---------------------------------------------------------------- named corruptors
// Each takes a tool-made input (copy it first: they edit in place or write `out`)
// and breaks exactly one thing, keeping everything else valid.

type TarSpec = Parameters<typeof craftTar>[1]

/** The members of a tar as `craftTar` input, to copy them unchanged. */
export function asTarSpec(members: Awaited<ReturnType<typeof readTarMembers>>): TarSpec {
  return members.map((m) => ({ name: m.name, content: m.data, symlink: m.symlink, hardlink: m.hardlink, dir: m.dir }))
}

/** Layer `i`'s descriptor in the manifest claims `delta` more bytes than the blob has. */
export async function corruptLayerSize(layout: string, ref: string, i: number, delta: number): Promise<BuiltImage> {
  return editImage(layout, ref, { manifest: (m) => ({ ...m, layers: m.layers.map((l, j) => (j === i ? { ...l, size: l.size + delta } : l)) }) })
}

/** The config names `wrong` as layer `i`'s diff_id (all descriptors updated, so only the diff_id lies). */
export async function corruptDiffId(layout: string, ref: string, i: number, wrong = sha256(`not layer ${i}`)): Promise<BuiltImage> {
  return editImage(layout, ref, { config: (c) => ({ ...c, rootfs: { ...c.rootfs, diff_ids: c.rootfs.diff_ids.map((d, j) => (j === i ? wrong : d)) } }) })
}

/** The config blob is `text` (not JSON); the manifest names it by its real digest. */
export async function configNotJson(layout: string, ref: string, text = 'config? no: [1,2'): Promise<void> {
  await editImage(layout, ref, { config: () => Buffer.from(text) })
}

/** The manifest blob is `text` (not JSON); index.json names it by its real digest. */
export async function manifestNotJson(layout: string, ref: string, text = '<html>not a manifest</html>'): Promise<void> {
  await editImage(layout, ref, { manifest: () => Buffer.from(text) })
}

/** index.json of a layout is cut short. */
export async function indexNotJson(layout: string): Promise<void> {
  await fsp.writeFile(path.join(layout, 'index.json'), '{"schemaVersion": 2, "manifests": [')
}

/** The manifest descriptor in index.json claims `delta` more bytes. */
export async function corruptIndexSize(layout: string, delta = 3): Promise<void> {
  const file = path.join(layout, 'index.json')
  const index = JSON.parse(await fsp.readFile(file, 'utf8'))
  index.manifests[0].size += delta
  await fsp.writeFile(file, JSON.stringify(index))
}

/** A copy of tar `src` at `out` with `extra` members appended (e.g. `../x`, `/abs`, links leading out). */
export async function withExtraMembers(src: string, out: string, extra: TarSpec): Promise<string> {
  return rewriteTar(src, out, (ms) => [...asTarSpec(ms), ...extra])
}

/** A copy of tar `src` at `out` where member `name` is replaced by `replacement` (same name unless given). */
export async function withMemberReplaced(src: string, out: string, name: string, replace: (m: TarSpec[number]) => TarSpec[number]): Promise<string> {
  let found = false
  const result = await rewriteTar(src, out, (ms) =>
    asTarSpec(ms).map((m) => {
      if (m.name !== name) return m
      found = true
      return replace(m)
    }),
  )
  if (!found) throw new Error(`no member ${name} in ${src}`)
  return result
}

/** A copy of docker archive `src` at `out` whose first symlink member (`<id>/layer.tar`) points at `target`. */
export async function withSymlinkRetargeted(src: string, out: string, target = '../../../../../etc/passwd'): Promise<string> {
  return rewriteTar(src, out, (ms) => {
    const spec = asTarSpec(ms)
    const link = spec.find((m) => m.symlink !== undefined)
    if (!link) throw new Error(`${src} has no symlink member`)
    link.symlink = target
    return spec
  })
}

/** In a layout directory, moves blob `digest` outside the layout and leaves a symlink to it (same bytes, outside). */
export async function blobSymlinkedOutside(layout: string, digest: string, outside: string): Promise<void> {
  const blob = blobPath(layout, digest)
  await fsp.rename(blob, outside)
  await fsp.symlink(outside, blob)
}

/**
 * Layers exercising what a layer filesystem must get right: a type change
 * across layers (file → directory), a deleted tree, a
 * directory with hundreds of entries, a 255-byte name, non-ASCII names,
 * an empty file, setuid and sticky bits, an absolute symlink, a deep path,
 * a file spanning many blocks, a file rewritten in a later layer.
 */
export function edgeLayers(): LayerSpec[] {
  const many: Entry[] = Array.from({ length: 300 }, (_, i) => ({ type: 'file' as const, path: `many/f${String(i).padStart(3, '0')}`, content: `${i}\n` }))
  return [
    {
      entries: [
        { type: 'file', path: 'file-to-dir', content: 'was a file\n' },
        { type: 'file', path: 'deleted-dir/a', content: 'a' },
        { type: 'file', path: 'deleted-dir/sub/b', content: 'b' },
        ...many,
        { type: 'file', path: `long/${'n'.repeat(255)}`, content: 'long name\n' },
        { type: 'file', path: 'unicode/héllo-wörld-日本語.txt', content: 'unicode\n' },
        { type: 'file', path: 'empty', content: '' },
        { type: 'file', path: 'suid', content: '#!/bin/sh\n', mode: 0o4755 },
        { type: 'dir', path: 'sticky', mode: 0o1777 },
        { type: 'file', path: 'big.bin', content: noise(300_000, 42), mtime: 1_234_567_890 },
        { type: 'symlink', path: 'abs-link', target: '/etc/os-release' },
        { type: 'file', path: 'deep/a/b/c/d/e/f/g/h/file', content: 'deep\n', uid: 65534, gid: 65534 },
      ],
    },
    {
      entries: [
        { type: 'delete', path: 'file-to-dir' },
        { type: 'file', path: 'file-to-dir/inside', content: 'now a dir\n' },
        { type: 'delete', path: 'deleted-dir' },
        { type: 'file', path: 'many/f150', content: 'rewritten in layer 1\n', mode: 0o600 },
        { type: 'delete', path: 'many/f299' },
      ],
    },
  ]
}

/**
 * A directory replaced by a file in the next layer. umoci (0.4.7) writes
 * that layer as the file `dir-to-file` followed by `dir-to-file/.wh.child`
 * (a whiteout below the new file, for the lower layer's child); `umoci
 * unpack` ends with the file.
 */
export function dirToFileLayers(): LayerSpec[] {
  return [
    { entries: [{ type: 'file', path: 'dir-to-file/child', content: 'child\n' }, { type: 'file', path: 'keep', content: 'keep\n' }] },
    {
      entries: [
        { type: 'delete', path: 'dir-to-file' },
        { type: 'file', path: 'dir-to-file', content: 'now a file\n' },
      ],
    },
  ]
}
