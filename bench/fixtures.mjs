// Synthetic OCI layouts for benchmarks: many small images whose layers
// are real (tiny) tars, so the engine does all of its real work on them.
import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex')

/** A one-file ustar archive. */
export function tarWithFile(name, content) {
  const data = Buffer.from(content)
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
  return Buffer.concat([header, padded, Buffer.alloc(1024)])
}

/**
 * Writes an OCI layout at `dir` holding `images` images of `layersPerImage`
 * distinct layers each, named `bench.local/<prefix>-<i>:v1`.
 */
export function writeLayout(dir, { images, layersPerImage, prefix = 'img' }) {
  const blobs = join(dir, 'blobs', 'sha256')
  mkdirSync(blobs, { recursive: true })
  const put = (bytes) => {
    const hex = sha256(bytes)
    writeFileSync(join(blobs, hex), bytes)
    return { digest: `sha256:${hex}`, size: bytes.length }
  }
  const manifests = []
  for (let i = 0; i < images; i++) {
    const layers = []
    for (let l = 0; l < layersPerImage; l++) {
      const tar = tarWithFile(`layer-${l}.txt`, `${prefix} image ${i} layer ${l}\n`)
      layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...put(tar) })
    }
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Env: ['PATH=/usr/bin:/bin', `IMAGE=${i}`], Cmd: ['/bin/sh'], WorkingDir: '/', Labels: { index: String(i) } },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      }),
    )
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(config) },
        layers,
      }),
    )
    manifests.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...put(manifest),
      annotations: { 'org.opencontainers.image.ref.name': `bench.local/${prefix}-${i}:v1` },
    })
  }
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }))
}
