/**
 * Every bad call the Image API must refuse, whatever the archive: malformed
 * references (InvalidReferenceError), wrong argument types
 * (InvalidArgumentError, always as a rejection), a cache directory that
 * cannot be written (CacheError) and the cloud backend (UnsupportedError).
 * Each refusal is checked for the exported error class (`instanceof`),
 * `err.code`, the error's fields, and a cache left exactly as it was: no
 * reference, file, sandbox or snapshot added or taken away, and the process
 * lives on.
 *
 * Each test starts from a cache holding `base` (support/errors.ts). Bad
 * archive inputs are in errors-archive.spec.ts.
 */
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image, InvalidArgumentError, InvalidReferenceError, MicrosandboxError, UnsupportedError } from '..'
import { buildImage, makeTempDir, mergeDockerArchives, sampleLayers, toDockerArchive } from './support/images'
import { ChildResult, PACKAGE_ROOT, childEnv, readIndex, rejectionOf, runNodeScript, setEnv, tree } from './support/cache'
import { testCacheStillWorks, useErrorFixture } from './support/errors'

const fx = useErrorFixture()

describe('malformed references → InvalidReferenceError', () => {
  const bad = [
    '',
    'UPPER/case:1',
    'a//b',
    'a/',
    ':tag',
    'a:',
    'a:ta g',
    'a b',
    '-lead',
    'a@sha256:abc',
    'a@md5:0123456789abcdef0123456789abcdef',
    'localhost:port/a',
    'f'.repeat(64),
    `a:${'t'.repeat(129)}`,
    'a'.repeat(300),
  ]
  test.each(bad.map((b) => [JSON.stringify(b), b]))('%s is refused by get, inspect, remove, acquire, pinSnapshot, save and load{tag}', async (_label, ref) => {
    const calls: Array<() => Promise<unknown>> = [
      () => Image.get(ref),
      () => Image.inspect(ref),
      () => Image.remove(ref),
      () => Image.remove(ref, { force: true }),
      () => Image.acquire(ref, { sandbox: 'sb' }),
      () => Image.pinSnapshot('snap', ref),
      () => Image.save(ref, { outputPath: path.join(fx.home, '..', 'out.tar') }),
      () => Image.load(fx.appDocker, { tag: ref }),
    ]
    for (const call of calls) {
      const err = await fx.expectCleanFailure(call, InvalidReferenceError, 'invalid_reference')
      expect(err.reference).toBe(ref)
    }
    expect(fs.existsSync(path.join(fx.home, '..', 'out.tar'))).toBe(false)
    expect(readIndex(fx.home).sandboxes).toEqual([])
    expect(readIndex(fx.home).snapshots).toEqual([])
  })
})

describe('wrong argument types → InvalidArgumentError (a rejection, never a synchronous throw)', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const I = Image as any
  const out = (): string => path.join(fx.home, '..', 'out.tar')
  const cases: Array<[string, () => unknown]> = [
    ['get(123)', () => I.get(123)],
    ['get()', () => I.get()],
    ['get(null)', () => I.get(null)],
    ['inspect({})', () => I.inspect({})],
    ['inspect(undefined)', () => I.inspect(undefined)],
    ['remove(42)', () => I.remove(42)],
    ["remove(ref, { force: 'yes' })", () => I.remove('localhost/test/base:v1', { force: 'yes' })],
    ['remove(ref, 5)', () => I.remove('localhost/test/base:v1', 5)],
    ["remove(ref, 'force')", () => I.remove('localhost/test/base:v1', 'force')],
    ['load(42)', () => I.load(42)],
    ['load()', () => I.load()],
    ['load(path, { tag: 5 })', () => I.load(fx.appDocker, { tag: 5 })],
    ["load(path, { platform: ['linux/amd64'] })", () => I.load(fx.appDocker, { platform: ['linux/amd64'] })],
    ["load(path, 'opts')", () => I.load(fx.appDocker, 'opts')],
    ['load(path, { tag }) of a two-image archive', () => I.load(twoImages, { tag: 'localhost/x:1' })],
    ['save(5, { outputPath })', () => I.save(5, { outputPath: out() })],
    ['save([ref, 5], { outputPath })', () => I.save(['localhost/test/base:v1', 5], { outputPath: out() })],
    ['save([], { outputPath })', () => I.save([], { outputPath: out() })],
    ['save(ref)', () => I.save('localhost/test/base:v1')],
    ['save(ref, {})', () => I.save('localhost/test/base:v1', {})],
    ['save(ref, { outputPath: 5 })', () => I.save('localhost/test/base:v1', { outputPath: 5 })],
    ["save(ref, { outputPath, format: 'zip' })", () => I.save('localhost/test/base:v1', { outputPath: out(), format: 'zip' })],
    ['acquire(ref)', () => I.acquire('localhost/test/base:v1')],
    ['acquire(ref, {})', () => I.acquire('localhost/test/base:v1', {})],
    ['acquire(ref, { sandbox: 1 })', () => I.acquire('localhost/test/base:v1', { sandbox: 1 })],
    ["acquire(ref, { sandbox: '' })", () => I.acquire('localhost/test/base:v1', { sandbox: '' })],
    ["acquire(ref, { sandbox: 'a\\nb' })", () => I.acquire('localhost/test/base:v1', { sandbox: 'a\nb' })],
    ['release(5)', () => I.release(5)],
    ["release('')", () => I.release('')],
    ["pinSnapshot(1, ref)", () => I.pinSnapshot(1, 'localhost/test/base:v1')],
    ["pinSnapshot('', ref)", () => I.pinSnapshot('', 'localhost/test/base:v1')],
    ["pinSnapshot('s', 7)", () => I.pinSnapshot('s', 7)],
    ['unpinSnapshot({})', () => I.unpinSnapshot({})],
  ]
  let twoImages: string
  beforeAll(async () => {
    const other = await buildImage(path.join(fx.work, 'other'), { layers: sampleLayers('other'), refs: ['localhost/test/other:v1'] })
    const otherDocker = await toDockerArchive(other, path.join(fx.work, 'other.docker.tar'))
    twoImages = await mergeDockerArchives([fx.appDocker, otherDocker], path.join(fx.work, 'two.docker.tar'))
  })

  test.each(cases)('%s', async (_label, call) => {
    const wrapped = (): Promise<unknown> => {
      const p = call()
      expect(typeof (p as Promise<unknown>)?.then).toBe('function')
      return p as Promise<unknown>
    }
    await fx.expectCleanFailure(wrapped, InvalidArgumentError, 'invalid_argument')
    expect(fs.existsSync(out())).toBe(false)
    expect(readIndex(fx.home).sandboxes).toEqual([])
    expect(readIndex(fx.home).snapshots).toEqual([])
  })
})

describe('cache directory that cannot be written → CacheError', () => {
  const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
  const script = (archive: string) => `
    const msb = require(${JSON.stringify(PACKAGE_ROOT)});
    (async () => {
      try {
        const r = await msb.Image.load(${JSON.stringify(archive)});
        console.log(JSON.stringify({ ok: r.map((h) => h.reference) }));
      } catch (e) {
        console.log(JSON.stringify({ name: e.constructor.name, code: e.code, path: e.path, cacheError: e instanceof msb.CacheError, base: e instanceof msb.MicrosandboxError, message: e.message }));
      }
    })();`

  async function readableArchive(): Promise<string> {
    // The child runs as nobody: give it a world-readable copy of the archive.
    const dir = await makeTempDir('msb-ro-archive-')
    await fsp.chmod(dir, 0o755)
    const f = path.join(dir, 'app.docker.tar')
    await fsp.copyFile(fx.appDocker, f)
    await fsp.chmod(f, 0o644)
    return f
  }

  function parse(r: ChildResult): Record<string, unknown> {
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' })
    return JSON.parse(r.stdout.trim().split('\n').pop()!)
  }

  test('loading into a root-owned 0755 cache as another user', async () => {
    // The cache exists (root made it, holding base); open it up for reading only.
    for (const [p] of [[fx.home], ...['db', 'layers', 'layers/sha256', 'fsmeta', 'fsmeta/sha256', 'vmdk', 'vmdk/sha256', 'tmp', 'locks'].map((d) => [path.join(fx.home, d)])]) {
      await fsp.chmod(p, 0o755)
    }
    await fsp.chmod(path.join(fx.home, '..'), 0o755)
    const archive = await readableArchive()
    try {
      const before = await tree(fx.home)
      const r = await runNodeScript(script(archive), childEnv({ MSB_HOME: fx.home, MSB_BACKEND: undefined }), { prefix: nobody, cwd: '/' })
      const out = parse(r)
      expect(out).toEqual({ name: 'CacheError', code: 'cache', path: expect.any(String), cacheError: true, base: true, message: expect.any(String) })
      expect((out.path as string).startsWith(fx.home)).toBe(true)
      const after = await tree(fx.home)
      expect([...after.keys()].sort()).toEqual([...before.keys()].sort())
      for (const [k, v] of before) expect({ k, size: after.get(k)!.size, mtime: after.get(k)!.mtimeMs }).toEqual({ k, size: v.size, mtime: v.mtimeMs })
      expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/test/base:v1'])
    } finally {
      await fsp.rm(path.dirname(archive), { recursive: true, force: true })
    }
  })

  test('creating a cache under a root-owned 0755 directory as another user', async () => {
    const parent = await makeTempDir('msb-ro-parent-')
    await fsp.chmod(parent, 0o755)
    const archive = await readableArchive()
    try {
      const target = path.join(parent, 'cache')
      const r = await runNodeScript(script(archive), childEnv({ MSB_HOME: target, MSB_BACKEND: undefined }), { prefix: nobody, cwd: '/' })
      const out = parse(r)
      expect(out).toEqual({ name: 'CacheError', code: 'cache', path: expect.any(String), cacheError: true, base: true, message: expect.any(String) })
      expect((out.path as string).startsWith(parent)).toBe(true)
      expect(await fsp.readdir(parent)).toEqual([])
    } finally {
      await fsp.rm(parent, { recursive: true, force: true })
      await fsp.rm(path.dirname(archive), { recursive: true, force: true })
    }
  })
})

describe('cloud backend → UnsupportedError for every method, cache untouched', () => {
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['get', () => Image.get('localhost/test/base:v1')],
    ['list', () => Image.list()],
    ['inspect', () => Image.inspect('localhost/test/base:v1')],
    ['remove', () => Image.remove('localhost/test/base:v1')],
    ['remove force', () => Image.remove('localhost/test/base:v1', { force: true })],
    ['prune', () => Image.prune()],
    ['load', () => Image.load(fx.appDocker)],
    ['save', () => Image.save('localhost/test/base:v1', { outputPath: path.join(fx.home, '..', 'cloud.tar') })],
    ['acquire', () => Image.acquire('localhost/test/base:v1', { sandbox: 'sb' })],
    ['release', () => Image.release('sb')],
    ['pinSnapshot', () => Image.pinSnapshot('snap', 'localhost/test/base:v1')],
    ['unpinSnapshot', () => Image.unpinSnapshot('snap')],
  ]

  test('an existing cache is neither read nor modified', async () => {
    const before = await tree(fx.home)
    setEnv('MSB_BACKEND', 'cloud')
    for (const [name, call] of calls) {
      const err = await rejectionOf(call())
      expect({ name, cls: err.constructor.name, code: err.code }).toEqual({ name, cls: 'UnsupportedError', code: 'unsupported' })
      expect(err).toBeInstanceOf(UnsupportedError)
      expect(err).toBeInstanceOf(MicrosandboxError)
    }
    const after = await tree(fx.home)
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort())
    for (const [k, v] of before) expect({ k, size: after.get(k)!.size, mtime: after.get(k)!.mtimeMs }).toEqual({ k, size: v.size, mtime: v.mtimeMs })
    expect(fs.existsSync(path.join(fx.home, '..', 'cloud.tar'))).toBe(false)
    setEnv('MSB_BACKEND', undefined)
    expect((await Image.list()).map((h) => h.reference)).toEqual(['localhost/test/base:v1'])
  })

  test('a cache directory that does not exist is not created', async () => {
    const parent = await makeTempDir('msb-cloud-')
    try {
      const target = path.join(parent, 'never')
      setEnv('MSB_HOME', target)
      setEnv('MSB_BACKEND', 'cloud')
      for (const [name, call] of calls) {
        const err = await rejectionOf(call())
        expect({ name, cls: err.constructor.name, code: err.code }).toEqual({ name, cls: 'UnsupportedError', code: 'unsupported' })
      }
      expect(fs.existsSync(target)).toBe(false)
      expect(await fsp.readdir(parent)).toEqual([])
    } finally {
      setEnv('MSB_HOME', fx.home)
      await fsp.rm(parent, { recursive: true, force: true })
    }
  })

  test('an unknown backend is an InvalidArgumentError, also without touching the disk', async () => {
    const parent = await makeTempDir('msb-bogus-')
    try {
      const target = path.join(parent, 'never')
      setEnv('MSB_HOME', target)
      setEnv('MSB_BACKEND', 'remote-ish')
      const err = await rejectionOf(Image.list())
      expect(err).toBeInstanceOf(InvalidArgumentError)
      expect(err.code).toBe('invalid_argument')
      expect(fs.existsSync(target)).toBe(false)
    } finally {
      setEnv('MSB_HOME', fx.home)
      await fsp.rm(parent, { recursive: true, force: true })
    }
  })
})

testCacheStillWorks(fx)
