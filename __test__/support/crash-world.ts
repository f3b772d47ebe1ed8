/**
 * The world the crash and soak harnesses run in: images made by umoci that
 * share layers (so a kill or a race lands on shared work), exported as
 * every archive kind `Image.load` reads, some pushed to a real registry on
 * 127.0.0.1, and the list of operations a child may be killed in. Shared
 * by __test__/crash.spec.ts, __test__/soak.spec.ts and bench/crash.mjs,
 * bench/soak.mjs (through bench/support.mjs), so the CI short forms and
 * the long runs exercise exactly the same things.
 *
 * Operations that the engine may not have yet (`Image.tag`, `Image.check`,
 * prune filters) are detected at run time (`detectFeatures`) and join the
 * catalogue when present; a run prints which were found.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '../..'
import { freshHome, realEnv, setEnv } from './cache'
import { BuiltImage, buildImage, gzipFile, makeTempDir, mergeDockerArchives, noise, requireTools, toDockerArchive, toOciArchive } from './images'
import { push, Registry, startRegistry } from './registry'

/** One archive a child may load, and the references loading it makes. */
export interface ArchiveSpec {
  path: string
  refs: string[]
}

/** Optional parts of the API, found at run time. */
export interface Features {
  tag: boolean
  check: boolean
  /** `Image.prune(opts)` honours filters (an unknown duration is refused). */
  pruneFilters: boolean
}

export interface World {
  work: string
  registry: Registry
  archives: ArchiveSpec[]
  /** References a child may pull (all in `registry`). */
  pulls: string[]
  /** Every reference loading or pulling can create. */
  refs: string[]
  /** Where a reference comes from: an archive to load or a reference to pull. */
  sources: Map<string, { load?: string; pull?: string }>
  features: Features
  stop(): Promise<void>
}

/** Small files per layer: the EROFS writer's per-file work, not only bytes. */
function smallFiles(dir: string, n: number, seed: number) {
  return Array.from({ length: n }, (_, i) => ({ type: 'file' as const, path: `${dir}/f${i}.txt`, content: `${seed}:${i}\n`.repeat(1 + (i % 40)) }))
}

/**
 * Builds the images, their archives and the registry. `scale` multiplies
 * the noise in each layer (1: about 6 MiB per image, each load or pull
 * taking a second or so on a loaded 2-core machine).
 */
export async function makeWorld(opts: { scale?: number } = {}): Promise<World> {
  requireTools(['umoci', 'skopeo', 'docker-registry', 'fsck.erofs', 'gzip'])
  const scale = opts.scale ?? 1
  const work = await makeTempDir('msb-crash-world-')
  const mib = (n: number) => Math.round(n * scale * (1 << 20))
  const base = await buildImage(path.join(work, 'base'), {
    layers: [
      { entries: [{ type: 'file', path: 'shared/one.bin', content: noise(mib(3), 1) }, ...smallFiles('etc/base', 300, 1)] },
      { entries: [{ type: 'file', path: 'shared/two.bin', content: noise(mib(1.5), 2) }, { type: 'symlink', path: 'shared/link', target: 'two.bin' }] },
    ],
    refs: ['localhost/crash/base:v1'],
  })
  const apps: BuiltImage[] = []
  for (let i = 0; i < 4; i++) {
    apps.push(
      await buildImage(path.join(work, `app${i}`), {
        base,
        layers: [{ entries: [{ type: 'file', path: `app/${i}.bin`, content: noise(mib(1 + i / 2), 10 + i) }, ...smallFiles(`app/${i}`, 80, 10 + i), { type: 'delete', path: 'etc/base/f7.txt' }] }],
        config: { cmd: [`/app/${i}`], labels: { app: String(i), tier: i % 2 ? 'odd' : 'even' } },
        refs: [`localhost/crash/app${i}:v1`],
      }),
    )
  }
  const docker = await Promise.all(apps.map((a, i) => toDockerArchive(a, path.join(work, `app${i}.docker.tar`))))
  const archives: ArchiveSpec[] = [
    { path: docker[0], refs: [apps[0].refs[0]] },
    { path: await gzipFile(docker[1], path.join(work, 'app1.docker.tar.gz')), refs: [apps[1].refs[0]] },
    { path: await toOciArchive(apps[2], path.join(work, 'app2.oci.tar')), refs: [apps[2].refs[0]] },
    { path: await mergeDockerArchives([docker[2], docker[3]], path.join(work, 'app23.docker.tar')), refs: [apps[2].refs[0], apps[3].refs[0]] },
  ]
  const registry = await startRegistry()
  const pulls: string[] = []
  for (const [img, name] of [[base, 'base'], [apps[1], 'app1'], [apps[3], 'app3']] as const) {
    const ref = `${registry.host}/crash/${name}:v1`
    await push(`oci:${img.layout}:${img.refs[0]}`, ref)
    pulls.push(ref)
  }
  const sources = new Map<string, { load?: string; pull?: string }>()
  for (const a of archives) for (const r of a.refs) sources.set(r, { ...sources.get(r), load: sources.get(r)?.load ?? a.path })
  for (const p of pulls) sources.set(p, { pull: p })
  return {
    work,
    registry,
    archives,
    pulls,
    refs: [...sources.keys()].sort(),
    sources,
    features: await detectFeatures(),
    async stop() {
      await registry.stop()
      await fsp.rm(work, { recursive: true, force: true })
    },
  }
}

/**
 * Which optional operations the built addon has. Prune filters are probed
 * in a scratch cache with an option only a filtering prune understands
 * (a malformed duration): such a prune refuses it, one without options
 * ignores it and prunes the empty scratch cache.
 */
export async function detectFeatures(): Promise<Features> {
  const I = Image as unknown as Record<string, unknown>
  const previous = realEnv('MSB_HOME')
  const scratch = await freshHome('msb-probe-')
  let pruneFilters = false
  try {
    await (Image.prune as (o?: unknown) => Promise<unknown>)({ unusedFor: 'not a duration' })
  } catch (e) {
    pruneFilters = (e as { code?: string }).code === 'invalid_argument'
  } finally {
    await scratch.cleanup()
    setEnv('MSB_HOME', previous)
  }
  return { tag: typeof I.tag === 'function', check: typeof I.check === 'function', pruneFilters }
}

/** A seeded PRNG (mulberry32): the same seed, the same choices. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One of `xs`, chosen by `r`. */
export function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]
}
