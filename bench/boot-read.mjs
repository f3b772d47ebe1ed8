// Boot read: how fast Debian's 6.12 kernel reads every file of a root disk
// of many small files, ours against erofs-utils' image of the same tree, in
// one run. The image is synthetic and deterministic (--files files from
// empty to two blocks and a bit, as Python, Node and Ruby images are, with
// symlinks), built by umoci. For each disk:
//   ours   the VMDK `Image.acquire` returns (fsmeta + the packed layer images)
//   mkfs   Debian's `mkfs.erofs` (1.5) of `umoci unpack`'s tree, one raw image
// Each is booted --runs times, interleaved, by the VM harness (QEMU TCG, one
// vCPU); the figure is the guest's own clock from "mounted" to "manifest
// collected": `find`, `stat`, `sha256sum` and `readlink` of every entry
// (__test__/vm/init.sh). Both manifests must equal the host's of the tree.
//
//   node bench/boot-read.mjs [--files 30000] [--runs 3]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

import { median, sh } from './measure.mjs'
import { support } from './support.mjs'

const { values } = parseArgs({ options: { files: { type: 'string', default: '30000' }, runs: { type: 'string', default: '3' } } })
const files = Number(values.files)
const runs = Number(values.runs)

const { Image } = await import('../index.js')
const { freshHome } = support('cache')
const { buildImage, unpackRootfs } = support('image-build')
const { noise } = support('image-layers')
const { bootWithConsole, manifestOfDir } = support('vm')

const REF = 'localhost/bench/boot-read:v1'
const sizeOf = (i) => (i % 10 === 0 ? 4096 * (1 + (i % 3)) : (i * 37) % 9000)
const entries = []
for (let i = 0; i < files; i++) {
  entries.push({ type: 'file', path: `lib/d${i % 200}/s${i % 7}/f${i}.py`, content: noise(sizeOf(i), i), mode: i % 7 === 0 ? 0o755 : 0o644, mtime: 1_650_000_000 + (i % 100) })
  if (i % 50 === 0) entries.push({ type: 'symlink', path: `lib/d${i % 200}/link${i}`, target: `s${i % 7}/f${i}.py` })
}

const work = mkdtempSync(join(tmpdir(), 'msb-boot-read-'))
const home = await freshHome('msb-boot-read-')
try {
  const img = await buildImage(join(work, 'layout'), { layers: [{ entries }], refs: [REF] })
  const rootfs = await unpackRootfs(img, join(work, 'umoci'))
  const mkfsImage = join(work, 'mkfs.erofs')
  sh('mkfs.erofs', ['--quiet', '-Enoinline_data', mkfsImage, rootfs])
  const mkfsInline = join(work, 'mkfs-inline.erofs')
  sh('mkfs.erofs', ['--quiet', mkfsInline, rootfs])
  process.env.MSB_HOME = home.home
  await Image.load(img.layout)
  const boot = await Image.acquire(REF, { sandbox: 'boot-read-bench' })
  const expected = JSON.stringify(await manifestOfDir(rootfs))

  // The guest's clock, from the harness's `VMH: [uptime] label` lines.
  const readSeconds = (consoleLog) => {
    const at = (label) => {
      const m = consoleLog.match(new RegExp(`VMH: \\[([0-9.]+)\\] ${label}`))
      if (!m) throw new Error(`no "${label}" stamp in the console log`)
      return Number(m[1])
    }
    return at('manifest collected') - at('mounted /dev/vda as erofs')
  }
  const disks = [
    { name: 'ours (VMDK: fsmeta + packed layer)', path: boot.vmdkPath },
    { name: 'mkfs.erofs 1.5, inline data', path: mkfsInline },
    { name: 'mkfs.erofs 1.5, -Enoinline_data', path: mkfsImage },
  ]
  const times = disks.map(() => [])
  for (let r = 0; r < runs; r++) {
    for (const [i, disk] of disks.entries()) {
      const { manifest, consoleLog } = await bootWithConsole(disk.path, { timeoutMs: 900_000 })
      if (JSON.stringify(manifest) !== expected) throw new Error(`${disk.name}: the kernel's manifest differs from the tree's`)
      times[i].push(readSeconds(consoleLog))
      console.log(`run ${r + 1} ${disk.name}: ${times[i].at(-1).toFixed(2)} s`)
    }
  }
  const sizes = sh('du', ['-b', '--apparent-size', mkfsImage, mkfsInline]).toString()
  console.log(`\nBoot read of ${files} files + ${Math.ceil(files / 50)} symlinks (guest seconds, medians of ${runs}; TCG, one vCPU)`)
  const ours = median(times[0])
  for (const [i, disk] of disks.entries()) {
    const m = median(times[i])
    console.log(`  ${disk.name.padEnd(36)} ${m.toFixed(2)} s  (${times[i].map((t) => t.toFixed(2)).join(' / ')})${i === 0 ? '' : `  ours / this: ${(ours / m).toFixed(2)}x`}`)
  }
  console.log(`  reference image sizes (bytes):\n${sizes.trimEnd().replace(/^/gm, '    ')}`)
} finally {
  await Image.release('boot-read-bench').catch(() => {})
  await home.cleanup()
  rmSync(work, { recursive: true, force: true })
}
