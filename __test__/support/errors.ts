/**
 * What the two error specs (errors-archive, errors-api) share, so that both
 * start every test from the same cache and judge a failure "clean" the same
 * way: the images they break or misuse, a fresh `$MSB_HOME` per test that
 * already holds `base` (the two bottom layers of `app`, so a failing load of
 * `app` would have new layers to leave behind and old ones to wrongly take
 * away), and `expectCleanFailure`, which checks the exported error class,
 * `err.code` and a cache left exactly as it was.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image, MicrosandboxError } from '../..'
import { BuiltImage, buildImage, copyLayout, editImage, makeTempDir, readImage, requireTools, sampleLayers, toDockerArchive } from './images'
import { FileInfo, Rejection, artifactTree, consistencyProblems, freshHome, rejectionOf, setEnv, tmpFiles } from './cache'

/** The state of one error spec file; the fields are set by the hooks `useErrorFixture` registers. */
export class ErrorFixture {
  /** The spec file's scratch directory. */
  work!: string
  /** localhost/test/app:v1 in an OCI layout: the sample layers and two more. */
  app!: BuiltImage
  /** `app` as a docker archive. */
  appDocker!: string
  /** The current test's `$MSB_HOME`, holding localhost/test/base:v1. */
  home!: string
  private caseNo = 0

  /** A fresh path in the work dir for one corrupt input. */
  scratch(name: string): string {
    return path.join(this.work, `case-${++this.caseNo}-${name}`)
  }

  /**
   * Runs `call`, which must reject with `cls`/`code`, and checks the cache
   * is untouched: same references, same artifact files (same inodes), empty
   * tmp/, consistent index.
   */
  async expectCleanFailure(call: () => Promise<unknown>, cls: unknown, code: string): Promise<Rejection> {
    const refs = (await Image.list()).map((h) => `${h.reference} ${h.manifestDigest}`)
    const before = await artifactTree(this.home)
    const err = await rejectionOf(call())
    expect({ name: err.constructor.name, code: err.code, message: err.message }).toEqual({ name: (cls as { name: string }).name, code, message: expect.any(String) })
    expect(err).toBeInstanceOf(cls as new () => unknown)
    expect(err).toBeInstanceOf(MicrosandboxError)
    expect((await Image.list()).map((h) => `${h.reference} ${h.manifestDigest}`)).toEqual(refs)
    sameTree(before, await artifactTree(this.home))
    expect(await tmpFiles(this.home)).toEqual([])
    expect(await consistencyProblems(this.home)).toEqual([])
    return err
  }
}

function sameTree(a: Map<string, FileInfo>, b: Map<string, FileInfo>): void {
  const show = (m: Map<string, FileInfo>) => [...m].map(([k, v]) => `${k} ${v.size} ${v.ino}`).sort()
  expect(show(b)).toEqual(show(a))
}

/** Registers the hooks that build the images once per file and give each test a fresh cache holding `base`. */
export function useErrorFixture(): ErrorFixture {
  const fx = new ErrorFixture()
  let baseDocker: string
  let cleanup: () => Promise<void>

  beforeAll(async () => {
    requireTools()
    const work = (fx.work = await makeTempDir('msb-errors-'))
    fx.app = await buildImage(path.join(work, 'app'), {
      layers: [
        ...sampleLayers('app'),
        { entries: [{ type: 'file', path: 'srv/new-in-app.bin', content: Buffer.alloc(200_000, 7) }] },
        { entries: [{ type: 'file', path: 'srv/top.txt', content: 'top layer\n' }] },
      ],
      config: { cmd: ['app'] },
      refs: ['localhost/test/app:v1'],
    })
    // base = the two bottom layers of app, as its own image.
    await copyLayout(fx.app.layout, path.join(work, 'base'))
    await editImage(path.join(work, 'base'), 'localhost/test/app:v1', {
      config: (c) => ({ ...c, rootfs: { type: 'layers', diff_ids: c.rootfs.diff_ids.slice(0, 2) }, history: [] }),
      manifest: (m) => ({ ...m, layers: m.layers.slice(0, 2) }),
    })
    const baseIndex = path.join(work, 'base', 'index.json')
    await fsp.writeFile(baseIndex, (await fsp.readFile(baseIndex, 'utf8')).replace('localhost/test/app:v1', 'localhost/test/base:v1'))
    const base = await readImage(path.join(work, 'base'))
    fx.appDocker = await toDockerArchive(fx.app, path.join(work, 'app.docker.tar'))
    baseDocker = await toDockerArchive(base, path.join(work, 'base.docker.tar'))
  }, 120_000)

  afterAll(async () => {
    if (fx.work) await fsp.rm(fx.work, { recursive: true, force: true })
  })

  beforeEach(async () => {
    const h = await freshHome()
    fx.home = h.home
    cleanup = h.cleanup
    await Image.load(baseDocker)
  })
  afterEach(async () => {
    setEnv('MSB_BACKEND', undefined)
    await cleanup()
  })

  return fx
}

/** The last test of each error spec: the failures above neither killed the process nor broke the cache. */
export function testCacheStillWorks(fx: ErrorFixture): void {
  test('after every failure above the process is alive and the cache still works', async () => {
    const handles = await Image.load(fx.appDocker)
    expect(handles.map((h) => h.reference)).toEqual(['localhost/test/app:v1'])
    expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/test/app:v1', 'localhost/test/base:v1'])
    expect(await consistencyProblems(fx.home)).toEqual([])
  })
}
