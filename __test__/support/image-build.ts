/**
 * Building image fixtures the way users build images, with `umoci`: each
 * `LayerSpec` is written into an unpacked bundle and `umoci repack`ed
 * (deletions become whiteouts; an opaque directory replacement is a GNU tar
 * layer added with `umoci raw add-layer`, because `umoci insert --opaque`
 * 0.4.7 writes a truncated tar), and the config is set with `umoci config`.
 * Also the reading and in-place editing of the resulting OCI layouts
 * (`readImage`, `editImage`, `writeBlob`) that the export and corruption
 * modules build on, so every descriptor stays consistent after an edit.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { hexOf, makeTempDir, run, sha256 } from './tools'

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

/** The image's merged root filesystem as `umoci unpack` lays it out, in `out` (its `rootfs/`). */
export async function unpackRootfs(img: BuiltImage, out: string, ref?: string): Promise<string> {
  await run('umoci', ['unpack', '--image', `${img.layout}:${ref ?? img.refs[0]}`, out])
  return path.join(out, 'rootfs')
}
