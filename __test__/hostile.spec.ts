/**
 * Hostile inputs the reliability work bounds, each refused with a typed
 * error and a cache left exactly as it was (`expectCleanFailure`), or
 * accepted within a documented bound: non-regular files where an archive
 * or a blob should be (no open may block), extension headers that would
 * be read whole into memory, messages that would carry a terminal's
 * control sequences, a `tmp/` that leads out of the cache, `save`
 * destinations it must not replace, a disk that cannot hold what an
 * archive inflates to, and loads the caller aborts or watches.
 */
import { execFileSync } from 'child_process'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { AbortError, CacheError, Image, ImageArchiveError, InvalidArgumentError, PullProgressEvent } from '..'
import { buildImage, copyLayout, gzipFile, noise, readImage, requireTools, toDockerArchive, withMemberReplaced } from './support/images'
import { PACKAGE_ROOT, childEnv, consistencyProblems, rejectionOf, runNodeScript, tmpFiles } from './support/cache'
import { testCacheStillWorks, useErrorFixture } from './support/errors'

const fx = useErrorFixture()
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

function mkfifo(file: string): string {
  execFileSync('mkfifo', [file])
  return file
}

/** Resolves how long `p` took to settle, in ms. */
async function settleTime(p: Promise<unknown>): Promise<number> {
  const t = Date.now()
  await p.catch(() => undefined)
  return Date.now() - t
}

describe('non-regular files are refused without a blocking open', () => {
  test('a FIFO as the archive path', async () => {
    const fifo = mkfifo(fx.scratch('archive.fifo'))
    const err = await fx.expectCleanFailure(() => Image.load(fifo), ImageArchiveError, 'image_archive')
    expect(err.message).toMatch(/not a regular file/)
  })

  test('a FIFO as a blob inside an OCI layout directory', async () => {
    const layout = await copyLayout(fx.app.layout, fx.scratch('layout'))
    const img = await readImage(layout)
    const blob = path.join(layout, 'blobs', 'sha256', img.layers[img.layers.length - 1].digest.slice('sha256:'.length))
    await fsp.rm(blob)
    mkfifo(blob)
    const err = await fx.expectCleanFailure(() => Image.load(layout), ImageArchiveError, 'image_archive')
    expect(err.message).toMatch(/not a regular file/)
  })
})

test('an extension header claiming gigabytes is refused before it is read', async () => {
  // A pax header whose size field says 8 GiB, ahead of a real archive.
  const header = Buffer.alloc(512)
  header.write('PaxHeaders/huge', 0)
  header.write('0000644\0', 100)
  header.write('0000000\0', 108)
  header.write('0000000\0', 116)
  header.write('100000000000\0', 124) // 8 GiB, octal
  header.write('00000000000\0', 136)
  header.write('x', 156)
  header.write('ustar\u000000', 257)
  header.fill(' ', 148, 156)
  let sum = 0
  for (const b of header) sum += b
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148)
  const file = fx.scratch('huge-pax.tar')
  await fsp.writeFile(file, Buffer.concat([header, await fsp.readFile(fx.appDocker)]))
  const err = await fx.expectCleanFailure(() => Image.load(file), ImageArchiveError, 'image_archive')
  expect(err.message).toMatch(/extension header of 8589934592 bytes/)
})

test('control characters from an archive are escaped in messages and fields', async () => {
  const evil = 'cfg\u001b]0;pwned\u0007\u001b[2J.json'
  const manifest = JSON.stringify([{ Config: evil, RepoTags: ['localhost/test/evil:v1'], Layers: [] }])
  const file = await withMemberReplaced(fx.appDocker, fx.scratch('evil.tar'), 'manifest.json', (m) => ({ ...m, content: manifest }))
  const err = await fx.expectCleanFailure(() => Image.load(file), ImageArchiveError, 'image_archive')
  expect(err.message).not.toMatch(CONTROL)
  expect(err.message).toContain('\\u{1b}]0;pwned\\u{7}')
  for (const value of Object.values(err)) if (typeof value === 'string') expect(value).not.toMatch(CONTROL)
})

test('a tmp/ that is a symbolic link out of the cache is refused, and nothing is written there', async () => {
  const home = fx.scratch('home')
  const elsewhere = fx.scratch('elsewhere')
  await fsp.mkdir(home, { recursive: true })
  await fsp.mkdir(elsewhere)
  await fsp.symlink(elsewhere, path.join(home, 'tmp'))
  const r = await runNodeScript(
    `const { Image } = require(${JSON.stringify(PACKAGE_ROOT)})
     Image.load(${JSON.stringify(fx.appDocker)}).then(() => console.log('loaded'), (e) => console.log(JSON.stringify({ code: e.code, path: e.path, message: e.message })))`,
    childEnv({ MSB_HOME: home }),
  )
  const out = JSON.parse(r.stdout.trim())
  expect(out).toMatchObject({ code: 'cache', path: path.join(home, 'tmp') })
  expect(out.message).toMatch(/symbolic link/)
  expect(await fsp.readdir(elsewhere)).toEqual([])
  expect(CacheError.name).toBe('CacheError')
})

describe('save never replaces what it must not', () => {
  const ref = 'localhost/test/base:v1'

  test('an outputPath inside the cache home is refused and the cache keeps working', async () => {
    for (const inside of [path.join(fx.home, 'db', 'index.sqlite'), path.join(fx.home, 'new.tar')]) {
      await fx.expectCleanFailure(() => Image.save(ref, { outputPath: inside }), InvalidArgumentError, 'invalid_argument')
    }
    expect((await Image.list()).map((h) => h.reference)).toEqual([ref])
  })

  test('a character device is written as a stream, never replaced', async () => {
    await Image.save(ref, { outputPath: '/dev/null' })
    expect(fs.statSync('/dev/null').isCharacterDevice()).toBe(true)
    const err = await rejectionOf(Image.save(ref, { outputPath: '/dev/full' }))
    expect(err.code).toBe('image_archive')
    expect(fs.statSync('/dev/full').isCharacterDevice()).toBe(true)
  })

  test('a FIFO: streamed to its reader, refused at once without one', async () => {
    const fifo = mkfifo(fx.scratch('out.fifo'))
    expect(await settleTime(rejectionOf(Image.save(ref, { outputPath: fifo })))).toBeLessThan(1000)
    const received = fx.scratch('received.tar')
    const reader = require('child_process').spawn('sh', ['-c', `cat "${fifo}" > "${received}"`])
    // Listened for at once: the reader may drain and exit before save resolves.
    const exited = new Promise((r) => reader.on('exit', r))
    // Time for the reader to block in its open of the FIFO (a writer's non-blocking open needs it there).
    await new Promise((r) => setTimeout(r, 500))
    await Image.save(ref, { outputPath: fifo })
    await exited
    expect(fs.statSync(fifo).isFIFO()).toBe(true)
    const handles = await Image.load(received, { tag: 'localhost/test/from-fifo:v1' })
    expect(handles[0].manifestDigest).toBe((await Image.get(ref)).manifestDigest)
  })

  test('a symbolic link is followed: its target is replaced, the link stays', async () => {
    const target = fx.scratch('target.tar')
    const link = fx.scratch('link.tar')
    await fsp.writeFile(target, 'old')
    await fsp.symlink(target, link)
    await Image.save(ref, { outputPath: link })
    expect((await fsp.lstat(link)).isSymbolicLink()).toBe(true)
    expect((await fsp.stat(target)).size).toBeGreaterThan(1000)
  })
})

describe('load: abort and progress', () => {
  let big: string

  beforeAll(async () => {
    requireTools()
    const img = await buildImage(fx.scratch('big'), {
      layers: [{ entries: [{ type: 'file', path: 'big.bin', content: noise(96 << 20, 11) }] }],
      refs: ['localhost/test/big:v1'],
    })
    big = await toDockerArchive(img, fx.scratch('big.tar'))
  }, 120_000)

  test('an AbortSignal stops a load mid-layer within a second and leaves the cache as it was', async () => {
    const controller = new AbortController()
    let abortedAt = 0
    const onProgress = (e: PullProgressEvent) => {
      if (!abortedAt && e.type === 'archive' && e.read > 0 && e.read < e.total) {
        abortedAt = Date.now()
        controller.abort()
      }
    }
    let settledAt = 0
    const load = () => Image.load(big, { signal: controller.signal, onProgress }).finally(() => (settledAt = Date.now()))
    const err = await fx.expectCleanFailure(load, AbortError, 'aborted')
    expect(abortedAt).toBeGreaterThan(0)
    expect(settledAt - abortedAt).toBeLessThan(1000)
    expect(err.message).toBe('operation aborted')
  })

  test('an already aborted signal rejects at once', async () => {
    const controller = new AbortController()
    controller.abort()
    await fx.expectCleanFailure(() => Image.load(big, { signal: controller.signal }), AbortError, 'aborted')
  })

  test('progress: archive bytes read up to the total, then each layer verified and converted', async () => {
    for (const file of [big, await gzipFile(big, fx.scratch('big.tar.gz'))]) {
      const events: PullProgressEvent[] = []
      await Image.load(file, { tag: 'localhost/test/watched:v1', onProgress: (e) => events.push(e) })
      const archive = events.filter((e) => e.type === 'archive')
      expect(archive.length).toBeGreaterThan(1)
      const last = archive[archive.length - 1]
      expect(last.type === 'archive' && last.read === last.total && last.total > 0).toBe(true)
      const steps = events.filter((e) => e.type === 'layer').map((e) => (e.type === 'layer' ? e.step : ''))
      expect(steps).toEqual(expect.arrayContaining(['verified', 'converted']))
      expect(events[events.length - 1].type).toBe('disk')
      await Image.remove('localhost/test/watched:v1')
    }
  })
})

test('a gzip archive that inflates beyond the disk stops at the reserve with a CacheError', async () => {
  // 512 MiB of zeros gzip to about half a megabyte; the cache gets a 320 MiB
  // tmpfs of its own (in a private mount namespace), so the disk cannot hold it.
  const zeros = fx.scratch('zeros.tar.gz')
  execFileSync('sh', ['-c', `head -c ${512 << 20} /dev/zero | gzip -1 > "${zeros}"`])
  const mnt = fx.scratch('small-disk')
  await fsp.mkdir(mnt)
  const script = `
    const { Image } = require(${JSON.stringify(PACKAGE_ROOT)})
    const fs = require('fs')
    Image.load(${JSON.stringify(zeros)}).then(
      () => console.log(JSON.stringify({ loaded: true })),
      (e) => console.log(JSON.stringify({ code: e.code, message: e.message, tmp: fs.readdirSync(process.env.MSB_HOME + '/tmp') })),
    )`
  const unshare = process.getuid && process.getuid() === 0 ? ['unshare', '--mount'] : ['unshare', '--mount', '--map-root-user']
  const r = await runNodeScript(`require('child_process').execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=320m', 'tmpfs', ${JSON.stringify(mnt)}]); ${script}`, childEnv({ MSB_HOME: path.join(mnt, 'home') }), {
    prefix: unshare,
    timeoutMs: 60_000,
  })
  expect(r.stderr).toBe('')
  const out = JSON.parse(r.stdout.trim())
  expect(out).toMatchObject({ code: 'cache', tmp: [] })
  expect(out.message).toMatch(/not enough free space for the decompressed copy/)
})

testCacheStillWorks(fx)
