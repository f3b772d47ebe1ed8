// Synthetic OCI layouts for benchmarks: many small images whose layers
// are real (tiny) tars, so the engine does all of its real work on them.
import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex')

/** A one-file ustar archive. */
export function tarWithFile(name, content) {
  return tarWithFiles([[name, content]])
}

/** A ustar archive of regular files (names under 100 bytes). */
export function tarWithFiles(files) {
  const parts = files.flatMap(([name, content]) => tarMember(name, Buffer.from(content)))
  return Buffer.concat([...parts, Buffer.alloc(1024)])
}

function tarMember(name, data) {
  const header = Buffer.alloc(512)
  const field = (offset, length, value) => header.write(value, offset, length, 'ascii')
  const octal = (offset, length, value) => field(offset, length, value.toString(8).padStart(length - 1, '0') + '\0')
  field(0, 100, name)
  octal(100, 8, 0o644)
  octal(108, 8, 0)
  octal(116, 8, 0)
  octal(124, 12, data.length)
  octal(136, 12, 1700000000)
  header.fill(' ', 148, 156)
  field(156, 1, '0')
  field(257, 6, 'ustar\0')
  field(263, 2, '00')
  let sum = 0
  for (const byte of header) sum += byte
  field(148, 8, sum.toString(8).padStart(6, '0') + '\0 ')
  const padded = Buffer.alloc(Math.ceil(data.length / 512) * 512)
  data.copy(padded)
  return [header, padded]
}

/** An OCI layout being written: blobs as they come, index.json at the end. */
export class Layout {
  constructor(dir) {
    this.dir = dir
    this.blobs = join(dir, 'blobs', 'sha256')
    this.manifests = []
    mkdirSync(this.blobs, { recursive: true })
  }

  /** Stores a blob; returns its descriptor fields. */
  put(bytes) {
    const hex = sha256(bytes)
    writeFileSync(join(this.blobs, hex), bytes)
    return { digest: `sha256:${hex}`, size: bytes.length }
  }

  /**
   * Adds an image named `name` whose layers are `layers` ({ blob, diffId,
   * mediaType }: the blob as stored, the digest of its uncompressed tar).
   */
  addImage(name, layers, config = {}) {
    const descriptors = layers.map((l) => ({ mediaType: l.mediaType, ...this.put(l.blob) }))
    const configBlob = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', config, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } }),
    )
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...this.put(configBlob) },
        layers: descriptors,
      }),
    )
    this.manifests.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...this.put(manifest),
      annotations: { 'org.opencontainers.image.ref.name': name },
    })
  }

  /** Writes index.json and oci-layout. */
  finish() {
    writeFileSync(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
    writeFileSync(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: this.manifests }))
  }
}

/** An uncompressed layer from a tar. */
export const plainLayer = (tar) => ({ blob: tar, diffId: `sha256:${sha256(tar)}`, mediaType: 'application/vnd.oci.image.layer.v1.tar' })

/**
 * Writes an OCI layout at `dir` holding `images` images of `layersPerImage`
 * distinct layers each, named `bench.local/<prefix>-<i>:v1`.
 */
export function writeLayout(dir, { images, layersPerImage, prefix = 'img' }) {
  const layout = new Layout(dir)
  for (let i = 0; i < images; i++) {
    const layers = Array.from({ length: layersPerImage }, (_, l) => plainLayer(tarWithFile(`layer-${l}.txt`, `${prefix} image ${i} layer ${l}\n`)))
    layout.addImage(`bench.local/${prefix}-${i}:v1`, layers, { Env: ['PATH=/usr/bin:/bin', `IMAGE=${i}`], Cmd: ['/bin/sh'], WorkingDir: '/', Labels: { index: String(i) } })
  }
  layout.finish()
}
