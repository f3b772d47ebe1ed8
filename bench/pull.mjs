// Pull benchmark against a loopback registry (CNCF distribution 2.8). The
// image: Debian package contents (the same as bench/layer.mjs) split into
// 6 gzip -6 layers, pushed with skopeo. Measured in one run:
//   ours     Image.pull into an empty cache: download, verify, EROFS, fsmeta, VMDK
//   skopeo   skopeo copy docker://… oci:DIR (download and verify only)
//   pigz     pigz -dc of each layer; the floor is max(skopeo, Σ pigz / cores)
// plus the peak RSS of the pulling process and the Node event-loop delay
// (perf_hooks.monitorEventLoopDelay) while a pull runs, and the same pull
// into a cache whose config.json sets a budget it stays under (the
// automatic collection's check only), interleaved with the plain runs.
//
//   node bench/pull.mjs [--work DIR] [--runs 3]
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import { Layout } from './fixtures.mjs'
import { debianContent, median, sh, timed } from './measure.mjs'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const { values } = parseArgs({ options: { work: { type: 'string', default: join(tmpdir(), 'msb-pull-bench') }, runs: { type: 'string', default: '3' } } })
const work = values.work
const runs = Number(values.runs)
const LAYERS = 6

// 1. Layers: the content split into LAYERS groups of about equal size.
mkdirSync(work, { recursive: true })
const layersDir = join(work, 'layers')
if (!existsSync(join(layersDir, `layer-${LAYERS - 1}.tar.gz`))) {
  const content = debianContent(work)
  const entries = sh('find', ['.', '-mindepth', '1', '-printf', '%s %p\\n'], { cwd: content })
    .toString()
    .trim()
    .split('\n')
    .map((l) => [Number(l.slice(0, l.indexOf(' '))), l.slice(l.indexOf(' ') + 1)])
    .sort((a, b) => (a[1] < b[1] ? -1 : 1))
  const total = entries.reduce((n, [s]) => n + s, 0)
  mkdirSync(layersDir, { recursive: true })
  let group = 0
  let acc = 0
  const lists = Array.from({ length: LAYERS }, () => [])
  for (const [size, p] of entries) {
    lists[group].push(p)
    acc += size
    if (acc > ((group + 1) * total) / LAYERS && group < LAYERS - 1) group++
  }
  lists.forEach((list, i) => {
    const listFile = join(layersDir, `layer-${i}.list`)
    writeFileSync(listFile, list.join('\n') + '\n')
    sh('sh', ['-c', `tar -C '${content}' --no-recursion --numeric-owner -cf - -T '${listFile}' | gzip -6 > '${layersDir}/layer-${i}.tar.gz'`])
  })
}
const layerFiles = Array.from({ length: LAYERS }, (_, i) => join(layersDir, `layer-${i}.tar.gz`))
const uncompressed = layerFiles.map((f) => Number(sh('sh', ['-c', `gzip -dc '${f}' | wc -c`]).toString().trim()))
console.log(`image: ${LAYERS} layers, ${(layerFiles.reduce((n, f) => n + statSync(f).size, 0) / 2 ** 20).toFixed(0)} MiB gzip, ${(uncompressed.reduce((a, b) => a + b) / 2 ** 20).toFixed(0)} MiB uncompressed`)

// 2. A registry on loopback with the image pushed by skopeo.
const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port
    s.close(() => resolve(p))
  })
})
const regDir = join(work, 'registry')
rmSync(regDir, { recursive: true, force: true })
mkdirSync(regDir)
writeFileSync(join(regDir, 'config.yml'), `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${regDir}/storage\nhttp:\n  addr: 127.0.0.1:${port}\n`)
const registry = spawn('docker-registry', ['serve', join(regDir, 'config.yml')], { stdio: 'ignore' })
try {
  for (let i = 0; i < 300; i++) {
    try {
      sh('sh', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: 'ignore' })
      break
    } catch {
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const layoutDir = join(work, 'layout')
  rmSync(layoutDir, { recursive: true, force: true })
  const layout = new Layout(layoutDir)
  const diffIds = layerFiles.map((f) => `sha256:${sh('sh', ['-c', `gzip -dc '${f}' | sha256sum`]).toString().split(' ')[0]}`)
  layout.addImage('bench.local/pull:v1', layerFiles.map((f, i) => ({ blob: readFileSync(f), diffId: diffIds[i], mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' })))
  layout.finish()
  const ref = `127.0.0.1:${port}/bench/pull:v1`
  sh('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layoutDir}:bench.local/pull:v1`, `docker://${ref}`])

  // A second image whose one layer is a single 1 GiB file: far more bytes
  // per layer and per file, to show what that does to memory.
  const hugeGz = join(work, 'huge.tar.gz')
  if (!existsSync(hugeGz)) {
    const hugeDir = join(work, 'huge')
    mkdirSync(hugeDir, { recursive: true })
    sh('sh', ['-c', `head -c 1G /dev/urandom > '${hugeDir}/blob.bin' && tar -C '${hugeDir}' -cf - blob.bin | pigz -1 > '${hugeGz}.part' && mv '${hugeGz}.part' '${hugeGz}'`])
    rmSync(hugeDir, { recursive: true, force: true })
  }
  const hugeLayout = join(work, 'huge-layout')
  rmSync(hugeLayout, { recursive: true, force: true })
  const huge = new Layout(hugeLayout)
  const hugeDiff = `sha256:${sh('sh', ['-c', `gzip -dc '${hugeGz}' | sha256sum`]).toString().split(' ')[0]}`
  huge.addImage('bench.local/huge:v1', [{ blob: readFileSync(hugeGz), diffId: hugeDiff, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }])
  huge.finish()
  const hugeRef = `127.0.0.1:${port}/bench/huge:v1`
  sh('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${hugeLayout}:bench.local/huge:v1`, `docker://${hugeRef}`])

  // 3. Ours: Image.pull in a child process (fresh cache each run), reporting
  // its own numbers. Peak memory is VmHWM: getrusage's maxrss survives exec
  // and would report this (large) parent's.
  const peakRss = `Number(/VmHWM:\\s+(\\d+)/.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'))[1]) * 1024`
  const child = `
    const { monitorEventLoopDelay } = require('node:perf_hooks')
    const { Image } = require(${JSON.stringify(root)})
    const h = monitorEventLoopDelay({ resolution: 1 })
    h.enable()
    const t = performance.now()
    Image.pull(process.env.REF).then(() => {
      const seconds = (performance.now() - t) / 1000
      h.disable()
      console.log(JSON.stringify({ seconds, p99: h.percentile(99) / 1e6, max: h.max / 1e6, rss: ${peakRss} }))
    }, (e) => { console.error(e); process.exit(1) })
  `
  const ours = []
  const budgeted = []
  for (let i = 0; i < runs; i++) {
    for (const [list, config] of [[ours, undefined], [budgeted, { gc: { maxBytes: 1e15 } }]]) {
      const home = join(work, `home-${i}`)
      rmSync(home, { recursive: true, force: true })
      if (config) {
        mkdirSync(home, { recursive: true })
        writeFileSync(join(home, 'config.json'), JSON.stringify(config))
      }
      list.push(JSON.parse(sh(process.execPath, ['-e', child], { env: { ...process.env, MSB_HOME: home, REF: ref } }).toString()))
      rmSync(home, { recursive: true, force: true })
    }
  }
  const hugeHome = join(work, 'home-huge')
  rmSync(hugeHome, { recursive: true, force: true })
  const hugePull = JSON.parse(sh(process.execPath, ['-e', child], { env: { ...process.env, MSB_HOME: hugeHome, REF: hugeRef } }).toString())
  rmSync(hugeHome, { recursive: true, force: true })
  // Baseline memory of the same child without a pull, to show what the pull adds.
  const idle = JSON.parse(sh(process.execPath, ['-e', `require(${JSON.stringify(root)}); console.log(JSON.stringify({ rss: ${peakRss} }))`]).toString())

  // 4. skopeo copy to an OCI directory.
  const skopeo = []
  for (let i = 0; i < runs; i++) {
    const dest = join(work, 'skopeo-oci')
    rmSync(dest, { recursive: true, force: true })
    skopeo.push(timed(() => sh('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${dest}:v1`])))
    rmSync(dest, { recursive: true, force: true })
  }

  // 5. Decompression of each layer.
  const pigz = layerFiles.map((f) => median(Array.from({ length: runs }, () => timed(() => sh('sh', ['-c', `pigz -dc '${f}' > /dev/null`])))))
  const cores = availableParallelism()
  const decompressFloor = pigz.reduce((a, b) => a + b) / cores
  const floor = Math.max(median(skopeo), decompressFloor)

  const t = median(ours.map((o) => o.seconds))
  console.log(`\nImage.pull over loopback (medians of ${runs}, same run, ${cores} cores)`)
  console.log(`  ours: pull + verify + EROFS + fsmeta + VMDK ${t.toFixed(2)} s`)
  const tb = median(budgeted.map((o) => o.seconds))
  console.log(`  the same under a config.json budget it stays under: ${tb.toFixed(2)} s, ${(((tb - t) / t) * 100).toFixed(1)}% (target within 2%)`)
  console.log(`  skopeo copy docker:// → oci: ${median(skopeo).toFixed(2)} s`)
  console.log(`  pigz -dc per layer: ${pigz.map((x) => x.toFixed(2)).join(' + ')} = ${pigz.reduce((a, b) => a + b).toFixed(2)} s, / ${cores} cores = ${decompressFloor.toFixed(2)} s`)
  console.log(`  floor max(skopeo, Σpigz/cores) ${floor.toFixed(2)} s → ratio ${(t / floor).toFixed(2)}x (target ≤ 1.25x)`)
  console.log(`  peak RSS ${(Math.max(...ours.map((o) => o.rss)) / 2 ** 20).toFixed(0)} MiB (the same process idle: ${(idle.rss / 2 ** 20).toFixed(0)} MiB; largest layer ${(Math.max(...uncompressed) / 2 ** 20).toFixed(0)} MiB uncompressed)`)
  console.log(`  one 1 GiB layer (a single 1 GiB file): pulled in ${hugePull.seconds.toFixed(2)} s, peak RSS ${(hugePull.rss / 2 ** 20).toFixed(0)} MiB`)
  console.log(`  event-loop delay during the pull: p99 ${median(ours.map((o) => o.p99)).toFixed(2)} ms, max ${Math.max(...ours.map((o) => o.max)).toFixed(2)} ms (target p99 < 10 ms)`)
} finally {
  registry.kill('SIGKILL')
}
