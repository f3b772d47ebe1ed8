// Layer conversion benchmark. Builds a layer from Debian package contents
// (apt-get download + dpkg -x, then tar | gzip -6), then measures in one run:
//   ours   the engine loading it: decompress, verify digest and diff_id, write the EROFS image and record its tar framing
//   floor  decompression alone: the faster of `pigz -dc` and `libdeflate-gunzip -c` to /dev/null
//   mkfs   `tar -xzf` followed by `mkfs.erofs` on the same content
// and the root disk of a 10-layer, 50,000-file image (fsmeta + VMDK).
//
//   node bench/layer.mjs [--work DIR] [--runs 3]
// Needs: apt-get, dpkg, pigz, libdeflate-gunzip, mkfs.erofs, gzip, tar, a release build.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { Image } from '../index.js'
import { Layout, plainLayer, tarWithFiles } from './fixtures.mjs'
import { debianContent, median, sh, timed } from './measure.mjs'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const { values } = parseArgs({ options: { work: { type: 'string', default: join(tmpdir(), 'msb-layer-bench') }, runs: { type: 'string', default: '3' } } })
const work = values.work
const runs = Number(values.runs)

mkdirSync(work, { recursive: true })
const tarball = join(work, 'layer.tar.gz')

// 1. The layer: Debian package contents, tar | gzip -6.
if (!existsSync(tarball)) {
  const content = debianContent(work)
  sh('sh', ['-c', `tar -C '${content}' --sort=name --numeric-owner -cf - . | gzip -6 > '${tarball}.part' && mv '${tarball}.part' '${tarball}'`])
}
const files = Number(sh('sh', ['-c', `tar -tzf '${tarball}' | wc -l`]).toString().trim())
const tarBytes = Number(sh('sh', ['-c', `gzip -dc '${tarball}' | wc -c`]).toString().trim())
const diffId = `sha256:${sh('sh', ['-c', `gzip -dc '${tarball}' | sha256sum`]).toString().split(' ')[0]}`
console.log(`layer: ${(statSync(tarball).size / 2 ** 20).toFixed(0)} MiB gzip, ${(tarBytes / 2 ** 20).toFixed(0)} MiB tar, ${files} entries`)
if (tarBytes < 350 * 2 ** 20 || files < 25_000) throw new Error('the layer must be at least 350 MiB with at least 25,000 files')

// An OCI layout holding it, so the engine loads it like any image.
const layoutDir = join(work, 'layout')
rmSync(layoutDir, { recursive: true, force: true })
const layout = new Layout(layoutDir)
layout.addImage('bench.local/debian-content:v1', [{ blob: readFileSync(tarball), diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }])
layout.finish()

// 2. Ours, through the engine (a release build of crates/cache/examples/load.rs).
const host = sh('rustc', ['-vV']).toString().match(/host: (\S+)/)[1]
sh('cargo', ['build', '--release', '--target', host, '--example', 'load', '-p', 'msb-cache'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
const loader = join(root, 'target', host, 'release', 'examples', 'load')
const ours = []
let peak = 0
for (let i = 0; i < runs; i++) {
  const home = join(work, `home-${i}`)
  rmSync(home, { recursive: true, force: true })
  const out = JSON.parse(sh(loader, [layoutDir, home]).toString())
  ours.push(out.seconds)
  peak = Math.max(peak, out.peakRssBytes)
  rmSync(home, { recursive: true, force: true })
}

// 3. The floor: decompression alone.
const pigz = []
const libdeflate = []
for (let i = 0; i < runs; i++) {
  pigz.push(timed(() => sh('sh', ['-c', `pigz -dc '${tarball}' > /dev/null`])))
  libdeflate.push(timed(() => sh('sh', ['-c', `libdeflate-gunzip -c '${tarball}' > /dev/null`])))
}
const floor = Math.min(median(pigz), median(libdeflate))

// 4. tar -x then mkfs.erofs on the same content.
const mkfs = []
for (let i = 0; i < runs; i++) {
  const dir = join(work, 'extract')
  const img = join(work, 'mkfs.erofs.img')
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir)
  mkfs.push(timed(() => {
    sh('tar', ['-C', dir, '-xzf', tarball])
    sh('mkfs.erofs', ['--quiet', img, dir])
  }))
  rmSync(dir, { recursive: true, force: true })
  unlinkSync(img)
}

// 5. Root disk of a 10-layer image with 50,000 files: fsmeta + VMDK, rebuilt by acquire.
const diskLayout = join(work, 'disk-layout')
rmSync(diskLayout, { recursive: true, force: true })
const ten = new Layout(diskLayout)
const layers = Array.from({ length: 10 }, (_, l) =>
  plainLayer(tarWithFiles(Array.from({ length: 5000 }, (_, f) => [`d${l}/s${f % 50}/file-${f}.txt`, `layer ${l} file ${f}\n`]))),
)
ten.addImage('bench.local/ten-layers:v1', layers)
ten.finish()
process.env.MSB_HOME = join(work, 'disk-home')
rmSync(process.env.MSB_HOME, { recursive: true, force: true })
await Image.load(diskLayout)
const rebuild = []
const reuse = []
for (let i = 0; i < runs + 2; i++) {
  const boot = await Image.acquire('bench.local/ten-layers:v1', { sandbox: 'bench' })
  unlinkSync(boot.fsmetaPath)
  unlinkSync(boot.vmdkPath)
  let t = performance.now()
  await Image.acquire('bench.local/ten-layers:v1', { sandbox: 'bench' })
  rebuild.push(performance.now() - t)
  t = performance.now()
  await Image.acquire('bench.local/ten-layers:v1', { sandbox: 'bench' })
  reuse.push(performance.now() - t)
}
rmSync(process.env.MSB_HOME, { recursive: true, force: true })

const s = (x) => `${x.toFixed(2)} s`
const budget = 64 * 2 ** 20 + 256 * files
console.log(`\nLayer → verified EROFS (medians of ${runs}, same run)`)
console.log(`  ours (decompress + digest + diff_id + EROFS + framing, fsynced) ${s(median(ours))}`)
console.log(`  floor: pigz -dc ${s(median(pigz))}, libdeflate-gunzip -c ${s(median(libdeflate))} → ${s(floor)}`)
console.log(`  tar -xzf + mkfs.erofs ${s(median(mkfs))}`)
console.log(`  ratio to floor ${(median(ours) / floor).toFixed(2)}x (target ≤ 1.25x); speedup over tar + mkfs.erofs ${(median(mkfs) / median(ours)).toFixed(1)}x (target ≥ 4x)`)
console.log(`  peak RSS ${(peak / 2 ** 20).toFixed(1)} MiB; budget 64 MiB + 256 B × ${files} files = ${(budget / 2 ** 20).toFixed(1)} MiB (${peak < budget ? 'met' : 'MISSED'})`)
console.log(`Root disk of 10 layers × 5,000 files: fsmeta + VMDK rebuilt by acquire ${median(rebuild).toFixed(1)} ms (target < 150 ms; acquire without rebuilding ${median(reuse).toFixed(1)} ms)`)
