/**
 * Turning a built image into the inputs `Image.load` accepts: `skopeo copy`
 * exports (docker-archive, oci-archive, OCI layout directory), whole-archive
 * gzip/zstd, and the layouts the tools cannot write, made by hand from
 * tool-made blobs so that everything else stays valid: multi-image docker
 * archives (`docker save a b`), multi-platform indexes, recompressed layers.
 * Also the tar and docker-manifest readers the specs inspect archives with.
 */
import { execFile } from 'child_process'
import * as fsp from 'fs/promises'
import * as path from 'path'
import { promisify } from 'util'
import * as zlib from 'zlib'

import { BuiltImage, Descriptor, PlatformSpec, blobPath, readImage, writeBlob } from './image-build'
import { makeTempDir, run, sha256 } from './tools'

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
    const { stdout } = await promisify(execFile)('zstd', ['-d', '-c', file], { encoding: 'buffer', maxBuffer: 1 << 30 })
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
