// What every benchmark here needs: medians, timing, running tools, and the
// Debian package contents the layer and pull benchmarks are made of.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'

/** Large, file-rich Debian packages: about 510 MiB and 40,000 entries unpacked. */
export const PACKAGES = ['linux-headers-6.1.0-47-common', 'golang-1.19-src', 'libboost1.74-dev', 'libllvm14', 'gcc-12', 'perl-modules-5.36', 'libpython3.11-stdlib']

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Runs a command, returning its stdout; its stderr goes to ours. */
export const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26, ...opts })

/** Seconds `fn` takes. */
export function timed(fn) {
  const t = performance.now()
  fn()
  return (performance.now() - t) / 1000
}

/** The unpacked contents of PACKAGES under `work/content` (apt-get download + dpkg -x, once). */
export function debianContent(work) {
  const content = join(work, 'content')
  if (existsSync(content)) return content
  const debs = join(work, 'debs')
  mkdirSync(debs, { recursive: true })
  sh('apt-get', ['download', ...PACKAGES], { cwd: debs })
  const partial = `${content}.partial`
  rmSync(partial, { recursive: true, force: true })
  mkdirSync(partial)
  for (const deb of readdirSync(debs)) sh('dpkg', ['-x', join(debs, deb), partial])
  renameSync(partial, content)
  return content
}
