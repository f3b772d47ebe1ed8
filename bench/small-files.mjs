// Small files: size and speed of layer images against mkfs.erofs, in one run.
// Two one-layer images from Debian package contents (apt-get download +
// dpkg -x, then tar | gzip -6): every file (the large layer), and only the
// files under 8 KiB (the many-small-files layer). For each:
//   ours   the engine loading it (crates/cache/examples/load.rs, fsynced); the
//          layer image, fsmeta and VMDK it leaves
//   floor  the faster of `pigz -dc` and `libdeflate-gunzip -c` to /dev/null
//   mkfs   `mkfs.erofs --tar=f` of the same tar: erofs-utils 1.9 from $MKFS_EROFS,
//          or built from a checkout at $EROFS_UTILS_SRC (autotools, liblz4-dev,
//          libzstd-dev); else Debian's mkfs.erofs 1.5 of the extracted tree
//          (it has no --tar), said so in the output
//
//   node bench/small-files.mjs [--work DIR] [--runs 5]
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { Layout } from './fixtures.mjs'
import { debianContent, median, sh, timed } from './measure.mjs'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const { values } = parseArgs({ options: { work: { type: 'string', default: join(tmpdir(), 'msb-small-bench') }, runs: { type: 'string', default: '5' } } })
const work = values.work
const runs = Number(values.runs)
mkdirSync(work, { recursive: true })

// The reference: erofs-utils 1.9's mkfs.erofs if it can be had.
let mkfs = process.env.MKFS_EROFS
if (!mkfs && process.env.EROFS_UTILS_SRC) {
  const src = process.env.EROFS_UTILS_SRC
  if (!existsSync(join(src, 'mkfs', 'mkfs.erofs'))) sh('sh', ['-c', `cd '${src}' && ./autogen.sh && ./configure --disable-fuse && make -j2`], { stdio: ['ignore', 'ignore', 'inherit'] })
  mkfs = join(src, 'mkfs', 'mkfs.erofs')
}
const withTar = mkfs !== undefined
const mkfsVersion = withTar ? sh(mkfs, ['-V']).toString().split('\n')[0] : 'Debian mkfs.erofs 1.5 of the extracted tree (no --tar)'

const host = sh('rustc', ['-vV']).toString().match(/host: (\S+)/)[1]
sh('cargo', ['build', '--release', '--target', host, '--example', 'load', '-p', 'msb-cache'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
const loader = join(root, 'target', host, 'release', 'examples', 'load')

const content = debianContent(work)
const layers = [
  { name: 'large', find: '.' },
  { name: 'small', find: '. -type f -size -8192c -o -type l' },
]
const sizeOfDir = (dir) => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0)
const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`
const s = (x) => `${x.toFixed(3)} s`

for (const layer of layers) {
  const tar = join(work, `${layer.name}.tar`)
  const tarball = `${tar}.gz`
  if (!existsSync(tarball)) {
    sh('sh', ['-c', `cd '${content}' && find ${layer.find} | sort | tar --no-recursion --numeric-owner -cf '${tar}' -T - && gzip -6 -k -f '${tar}'`])
  }
  const entries = Number(sh('sh', ['-c', `tar -tf '${tar}' | wc -l`]).toString().trim())
  const diffId = `sha256:${sh('sha256sum', [tar]).toString().split(' ')[0]}`
  const layoutDir = join(work, `${layer.name}-layout`)
  rmSync(layoutDir, { recursive: true, force: true })
  const l = new Layout(layoutDir)
  l.addImage(`bench.local/${layer.name}:v1`, [{ blob: readFileSync(tarball), diffId, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }])
  l.finish()

  const ours = []
  const floor = []
  const ref = []
  let peak = 0
  const home = join(work, `${layer.name}-home`)
  for (let i = 0; i < runs; i++) {
    rmSync(home, { recursive: true, force: true })
    const out = JSON.parse(sh(loader, [layoutDir, home]).toString())
    ours.push(out.seconds)
    peak = Math.max(peak, out.peakRssBytes)
    floor.push(Math.min(
      timed(() => sh('sh', ['-c', `pigz -dc '${tarball}' > /dev/null`])),
      timed(() => sh('sh', ['-c', `libdeflate-gunzip -c '${tarball}' > /dev/null`])),
    ))
    const img = join(work, 'mkfs.img')
    rmSync(img, { force: true })
    if (withTar) {
      ref.push(timed(() => sh(mkfs, ['--quiet', '--tar=f', img, tar])))
    } else {
      const dir = join(work, 'extract')
      rmSync(dir, { recursive: true, force: true })
      mkdirSync(dir)
      sh('tar', ['-C', dir, '-xf', tar])
      ref.push(timed(() => sh('mkfs.erofs', ['--quiet', img, dir])))
      rmSync(dir, { recursive: true, force: true })
    }
  }
  const refBytes = statSync(join(work, 'mkfs.img')).size
  const layerBytes = sizeOfDir(join(home, 'layers', 'sha256'))
  const wholeBytes = layerBytes + sizeOfDir(join(home, 'fsmeta', 'sha256')) + sizeOfDir(join(home, 'vmdk', 'sha256'))
  const budget = 64 * 2 ** 20 + 256 * entries
  console.log(`\n${layer.name} layer: ${mib(statSync(tar).size)} tar, ${entries} entries (medians of ${runs}, same run)`)
  console.log(`  ours ${s(median(ours))}; floor ${s(median(floor))}: ${(median(ours) / median(floor)).toFixed(2)}x; ${mkfsVersion} ${s(median(ref))}`)
  console.log(`  layer image ${mib(layerBytes)} against ${mib(refBytes)}: ${(layerBytes / refBytes).toFixed(3)}x; whole image (layer + fsmeta + VMDK) ${mib(wholeBytes)}: ${(wholeBytes / refBytes).toFixed(3)}x`)
  console.log(`  peak RSS ${mib(peak)} (budget ${mib(budget)}: ${peak < budget ? 'met' : 'MISSED'})`)
  rmSync(home, { recursive: true, force: true })
}
