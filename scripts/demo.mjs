// Loads an image archive (default: the bundled example) into a temporary
// cache and walks through what the Image API shows about it.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { Image } from '../index.js'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const archive = process.argv[2] ?? join(root, 'examples', 'hello.oci.tar')
const home = mkdtempSync(join(tmpdir(), 'microsandbox-demo-'))
process.env.MSB_HOME = home

const kib = (bytes) => (bytes === null ? '-' : `${(bytes / 1024).toFixed(1)} KiB`)

try {
  console.log(`cache: ${home}\nloading ${archive}`)
  const started = performance.now()
  const loaded = await Image.load(archive)
  console.log(`loaded ${loaded.length} reference(s) in ${(performance.now() - started).toFixed(0)} ms\n`)

  console.log('Image.list()')
  for (const image of await Image.list()) {
    console.log(`  ${image.reference}  layers=${image.layerCount}  size=${kib(image.sizeBytes)}  ${image.os}/${image.architecture}  created=${image.createdAt?.toISOString()}`)
  }

  const reference = loaded[0].reference
  const detail = await Image.inspect(reference)
  console.log(`\nImage.inspect(${JSON.stringify(reference)})`)
  console.log(`  manifest   ${detail.handle.manifestDigest}`)
  console.log(`  config     ${detail.config?.digest}`)
  console.log(`  entrypoint ${JSON.stringify(detail.config?.entrypoint)}  cmd ${JSON.stringify(detail.config?.cmd)}`)
  console.log(`  workingDir ${detail.config?.workingDir}  user ${detail.config?.user}  env ${JSON.stringify(detail.config?.env)}`)
  console.log(`  labels     ${JSON.stringify(detail.config?.labels)}`)
  for (const layer of detail.layers) {
    console.log(`  layer ${layer.position}  ${layer.diffId}  blob=${kib(layer.compressedSizeBytes)}  erofs=${kib(layer.erofsSizeBytes)}`)
  }

  const boot = await Image.acquire(reference, { sandbox: 'demo' })
  console.log(`\nImage.acquire(…, { sandbox: "demo" }) → attach ${boot.vmdkPath}`)
  console.log(`  lastUsedAt ${(await Image.get(reference)).lastUsedAt?.toISOString()}`)

  console.log('\nImage.prune() while the sandbox uses the image:', await Image.prune())
  await Image.release('demo')
  console.log('Image.prune() after Image.release("demo"):', await Image.prune())
  console.log(`Image.list() now holds ${(await Image.list()).length} image(s)`)
} finally {
  rmSync(home, { recursive: true, force: true })
}
