// Compiles cli/src into cli/dist (`npm run build:cli`, run by `build` and
// `prepack`). Several `npm pack` may run at once (parallel test files), so
// no build may show another a half-written or missing file: tsc writes into
// a fresh folder, then each file whose content changed is renamed into
// cli/dist (atomic per file) and files tsc no longer emits are removed.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, 'dist')
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')

/** Every file under `dir`, relative to it. */
function files(dir) {
  if (!existsSync(dir)) return []
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)))
}

const fresh = mkdtempSync(join(here, '.dist-'))
try {
  execFileSync(process.execPath, [tsc, '-p', join(here, 'tsconfig.json'), '--outDir', fresh], { stdio: 'inherit' })
  const emitted = new Set(files(fresh))
  for (const f of emitted) {
    const target = join(dist, f)
    const content = readFileSync(join(fresh, f))
    if (existsSync(target) && readFileSync(target).equals(content)) continue
    mkdirSync(dirname(target), { recursive: true })
    renameSync(join(fresh, f), target)
  }
  for (const f of files(dist)) if (!emitted.has(f)) rmSync(join(dist, f), { force: true })
} finally {
  rmSync(fresh, { recursive: true, force: true })
}
