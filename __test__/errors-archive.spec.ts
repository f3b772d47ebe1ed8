/**
 * Every bad archive `Image.load` must refuse, and how: archives and layouts
 * that cannot be read or parsed, and members that would escape the archive
 * (ImageArchiveError), content that does not match its digest
 * (DigestMismatchError), layers that cannot become a filesystem
 * (InvalidLayerError). Each refusal is checked for the exported error class
 * (`instanceof`), `err.code`, the error's fields, and a cache left exactly
 * as it was — the index lists the same images, no file appears in (or
 * vanishes from) blobs/layers/fsmeta/vmdk, nothing stays in tmp/, every
 * artifact file is still named by the index, and the process lives on.
 *
 * Each test starts from a cache holding `base`, the two bottom layers of
 * `app` (support/errors.ts). Bad calls whatever the archive (references,
 * argument types, unwritable cache, backend) are in errors-api.spec.ts.
 */
import * as fsp from 'fs/promises'
import * as path from 'path'
import * as zlib from 'zlib'

import { DigestMismatchError, Image, ImageArchiveError, InvalidLayerError } from '..'
import {
  blobPath,
  blobSymlinkedOutside,
  configNotJson,
  copyLayout,
  corruptDiffId,
  corruptIndexSize,
  corruptLayerBlob,
  corruptLayerSize,
  craftTar,
  dockerManifest,
  editImage,
  flipByte,
  gzipFile,
  hexOf,
  indexNotJson,
  manifestNotJson,
  notAnArchive,
  readImage,
  sha256,
  toOciArchive,
  truncateFile,
  withExtraMembers,
  withMemberReplaced,
  withSymlinkRetargeted,
  writeBlob,
} from './support/images'
import { Rejection, consistencyProblems, rejectionOf, tmpFiles } from './support/cache'
import { testCacheStillWorks, useErrorFixture } from './support/errors'

const fx = useErrorFixture()

/** A copy of app's OCI layout to corrupt. */
async function appCopy(): Promise<string> {
  return copyLayout(fx.app.layout, fx.scratch('layout'))
}

async function expectArchiveError(file: string): Promise<Rejection> {
  const err = await fx.expectCleanFailure(() => Image.load(file), ImageArchiveError, 'image_archive')
  expect(err.path).toBe(file)
  return err
}

async function expectDigestMismatch(file: string, expected?: string): Promise<Rejection> {
  const err = await fx.expectCleanFailure(() => Image.load(file), DigestMismatchError, 'digest_mismatch')
  expect(typeof err.expected).toBe('string')
  expect(typeof err.actual).toBe('string')
  expect(err.expected).not.toBe(err.actual)
  if (expected) expect(err.expected).toContain(expected)
  return err
}

describe('unreadable or malformed archives → ImageArchiveError', () => {
  test('a path that does not exist', async () => {
    await expectArchiveError(path.join(fx.work, 'no-such-archive.tar'))
  })

  test('a file that is not an archive', async () => {
    await expectArchiveError(await notAnArchive(fx.scratch('text.txt')))
  })

  test('an empty file', async () => {
    const f = fx.scratch('empty.tar')
    await fsp.writeFile(f, '')
    await expectArchiveError(f)
  })

  test('random bytes', async () => {
    const f = fx.scratch('random.bin')
    await fsp.writeFile(f, Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 7919 + 13) & 0xff)))
    await expectArchiveError(f)
  })

  test('an empty directory (not an OCI layout)', async () => {
    const d = fx.scratch('emptydir')
    await fsp.mkdir(d)
    await expectArchiveError(d)
  })

  test('a truncated docker archive', async () => {
    const f = fx.scratch('trunc.tar')
    await fsp.copyFile(fx.appDocker, f)
    await expectArchiveError(await truncateFile(f))
  })

  test('a docker archive truncated inside a layer member', async () => {
    // Cut in the middle of the largest member's data, so the index of members still reads.
    const f = fx.scratch('trunc-layer.tar')
    await fsp.copyFile(fx.appDocker, f)
    const size = (await fsp.stat(f)).size
    await truncateFile(f, size - 150_000)
    const err = await rejectionOf(Image.load(f))
    expect(err).toBeInstanceOf(ImageArchiveError)
    expect(err.code).toBe('image_archive')
    expect(err.path).toBe(f)
    expect(await tmpFiles(fx.home)).toEqual([])
    expect(await consistencyProblems(fx.home)).toEqual([])
  })

  test('a truncated oci-archive', async () => {
    const f = await toOciArchive(fx.app, fx.scratch('oci.tar'))
    await expectArchiveError(await truncateFile(f))
  })

  test('a truncated gzip-compressed docker archive', async () => {
    const gz = await gzipFile(fx.appDocker, fx.scratch('app.tar.gz'))
    await expectArchiveError(await truncateFile(gz))
  })

  test('a gzip-compressed docker archive with a corrupt byte', async () => {
    const gz = await gzipFile(fx.appDocker, fx.scratch('app.tar.gz'))
    await flipByte(gz, Math.floor((await fsp.stat(gz)).size / 2))
    await expectArchiveError(gz)
  })

  test('docker archive whose manifest.json is not JSON', async () => {
    const f = await withMemberReplaced(fx.appDocker, fx.scratch('badmanifest.tar'), 'manifest.json', (m) => ({ name: m.name, content: '[{"Config": "x", "Layers": [' }))
    await expectArchiveError(f)
  })

  test('docker archive whose config is not JSON', async () => {
    const entry = (await dockerManifest(fx.appDocker))[0]
    const renamed = await withMemberReplaced(fx.appDocker, fx.scratch('badconfig-1.tar'), 'manifest.json', (m) => ({ name: m.name, content: JSON.stringify([{ ...entry, Config: 'config.json' }]) }))
    const f = await withExtraMembers(renamed, fx.scratch('badconfig.tar'), [{ name: 'config.json', content: 'this is { not json' }])
    await expectArchiveError(f)
  })

  test('docker archive naming a layer it does not contain', async () => {
    const entry = (await dockerManifest(fx.appDocker))[0]
    const f = await withMemberReplaced(fx.appDocker, fx.scratch('missinglayer.tar'), 'manifest.json', (m) => ({
      name: m.name,
      content: JSON.stringify([{ ...entry, Layers: [...entry.Layers.slice(0, 3), `${'e'.repeat(64)}.tar`] }]),
    }))
    await expectArchiveError(f)
  })

  test('OCI layout whose index.json is not JSON', async () => {
    const d = await appCopy()
    await indexNotJson(d)
    await expectArchiveError(d)
  })

  test('OCI layout whose manifest is not JSON', async () => {
    const d = await appCopy()
    await manifestNotJson(d, 'localhost/test/app:v1')
    await expectArchiveError(d)
  })

  test('OCI layout whose config is not JSON', async () => {
    const d = await appCopy()
    await configNotJson(d, 'localhost/test/app:v1')
    await expectArchiveError(d)
  })

  test('OCI layout missing a layer blob', async () => {
    const d = await appCopy()
    await fsp.rm(blobPath(d, fx.app.layers[3].digest))
    await expectArchiveError(d)
  })

  test('OCI layout missing its manifest blob', async () => {
    const d = await appCopy()
    await fsp.rm(blobPath(d, fx.app.manifestDigest))
    await expectArchiveError(d)
  })

  test('OCI layout whose only image has no name, loaded without a tag', async () => {
    const d = await appCopy()
    const index = JSON.parse(await fsp.readFile(path.join(d, 'index.json'), 'utf8'))
    delete index.manifests[0].annotations
    await fsp.writeFile(path.join(d, 'index.json'), JSON.stringify(index))
    await expectArchiveError(d)
  })
})

describe('unsafe archive members → ImageArchiveError', () => {
  test('a member named with ..', async () => {
    const f = await withExtraMembers(fx.appDocker, fx.scratch('dotdot.tar'), [{ name: '../escaped.txt', content: 'x' }])
    await expectArchiveError(f)
  })

  test('a member named with .. in the middle', async () => {
    const f = await withExtraMembers(fx.appDocker, fx.scratch('dotdot-mid.tar'), [{ name: 'blobs/../../escaped.txt', content: 'x' }])
    await expectArchiveError(f)
  })

  test('a member with an absolute path', async () => {
    const f = await withExtraMembers(fx.appDocker, fx.scratch('absolute.tar'), [{ name: '/tmp/absolute.txt', content: 'x' }])
    await expectArchiveError(f)
  })

  test('a layer symlink member pointing outside the archive', async () => {
    // skopeo's docker archives carry `<id>/layer.tar -> ../<diff_id>.tar`; point one outside.
    const f = await withSymlinkRetargeted(fx.appDocker, fx.scratch('symlink-out.tar'), '../../../../../etc/passwd')
    await expectArchiveError(f)
  })

  test('a symlink member with an absolute target', async () => {
    const f = await withExtraMembers(fx.appDocker, fx.scratch('symlink-abs.tar'), [{ name: 'passwd', symlink: '/etc/passwd' }])
    await expectArchiveError(f)
  })

  test('a hard link member pointing outside the archive', async () => {
    const f = await withExtraMembers(fx.appDocker, fx.scratch('hardlink-out.tar'), [{ name: 'shadow', hardlink: '../etc/shadow' }])
    await expectArchiveError(f)
  })

  test('an oci-archive whose layer blob is a symlink to a host file', async () => {
    const oci = await toOciArchive(fx.app, fx.scratch('oci.tar'))
    const f = await withMemberReplaced(oci, fx.scratch('oci-symlink.tar'), `blobs/sha256/${hexOf(fx.app.layers[3].digest)}`, (m) => ({ name: m.name, symlink: '/etc/hostname' }))
    await expectArchiveError(f)
  })

  test('an OCI layout directory whose blob is a symlink leading outside it (even to the right bytes)', async () => {
    const d = await appCopy()
    await blobSymlinkedOutside(d, fx.app.layers[3].digest, fx.scratch('outside-blob'))
    await expectArchiveError(d)
  })
})

describe('content that does not match its digest → DigestMismatchError', () => {
  test('a layer blob with a flipped byte that still decompresses (gzip header MTIME)', async () => {
    const d = await appCopy()
    await corruptLayerBlob(await readImage(d), 3, 'gzip-header')
    await expectDigestMismatch(d, fx.app.layers[3].digest)
  })

  test("a layer blob with a flipped byte in the compressed data (the gzip CRC breaks before the digest is checked)", async () => {
    const d = await appCopy()
    await corruptLayerBlob(await readImage(d), 2, 'middle')
    await expectDigestMismatch(d, fx.app.layers[2].digest)
  })

  test('an uncompressed docker-archive layer with a flipped content byte', async () => {
    const entry = (await dockerManifest(fx.appDocker))[0]
    const f = await withMemberReplaced(fx.appDocker, fx.scratch('flipped.tar'), entry.Layers[2], (m) => {
      const data = Buffer.from(m.content!)
      // 200 000 bytes of 0x07 follow the first header: flip one in the middle of the file data.
      data[100_000] ^= 0xff
      return { name: m.name, content: data }
    })
    await expectDigestMismatch(f, fx.app.diffIds[2])
  })

  test('a layer descriptor with the wrong size', async () => {
    for (const delta of [1, -1]) {
      const d = await appCopy()
      await corruptLayerSize(d, 'localhost/test/app:v1', 3, delta)
      await expectDigestMismatch(d)
    }
  })

  test('a manifest descriptor in index.json with the wrong size', async () => {
    const d = await appCopy()
    await corruptIndexSize(d, 3)
    await expectDigestMismatch(d)
  })

  test('a manifest blob changed in place (digest no longer matches)', async () => {
    const d = await appCopy()
    const file = blobPath(d, fx.app.manifestDigest)
    const text = await fsp.readFile(file, 'utf8')
    // Same size, still JSON, one key renamed: only the digest tells.
    expect(text).toContain('"mediaType"')
    await fsp.writeFile(file, text.replace('"mediaType"', '"mediaTypf"'))
    await expectDigestMismatch(d, fx.app.manifestDigest)
  })

  test('a config blob changed in place', async () => {
    const d = await appCopy()
    const file = blobPath(d, fx.app.configDigest)
    const cfg = await fsp.readFile(file, 'utf8')
    await fsp.writeFile(file, cfg.replace('"app"', '"ppa"'))
    await expectDigestMismatch(d, fx.app.configDigest)
  })

  test('a config whose diff_id does not match the layer', async () => {
    const d = await appCopy()
    const wrong = sha256('some other layer')
    await corruptDiffId(d, 'localhost/test/app:v1', 3, wrong)
    const err = await expectDigestMismatch(d, wrong)
    expect(err.message).toContain(fx.app.layers[3].digest)
  })

  test('a docker archive whose config member does not hash to its name', async () => {
    const entry = (await dockerManifest(fx.appDocker))[0]
    const f = await withMemberReplaced(fx.appDocker, fx.scratch('config-renamed.tar'), entry.Config, (m) => ({ name: m.name, content: m.content!.toString().replace('"app"', '"ppa"') }))
    await expectDigestMismatch(f, fx.app.configDigest)
  })
})

describe('layers that cannot become a filesystem → InvalidLayerError', () => {
  async function withTopLayer(tarBytes: Buffer): Promise<string> {
    const d = await appCopy()
    const blob = await writeBlob(d, zlib.gzipSync(tarBytes))
    await editImage(d, 'localhost/test/app:v1', {
      config: (c) => ({ ...c, rootfs: { ...c.rootfs, diff_ids: [...c.rootfs.diff_ids.slice(0, 3), sha256(tarBytes)] } }),
      manifest: (m) => ({ ...m, layers: [...m.layers.slice(0, 3), { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: blob.digest, size: blob.size }] }),
    })
    return d
  }

  test('a layer that is not a tar (digests all correct)', async () => {
    const d = await withTopLayer(Buffer.from('definitely not a tar stream\n'.repeat(100)))
    await fx.expectCleanFailure(() => Image.load(d), InvalidLayerError, 'invalid_layer')
  })

  test('a layer whose tar has a member escaping with ..', async () => {
    const t = fx.scratch('escape-layer.tar')
    await craftTar(t, [
      { name: 'ok.txt', content: 'fine' },
      { name: '../../etc/evil', content: 'escape' },
    ])
    const d = await withTopLayer(await fsp.readFile(t))
    await fx.expectCleanFailure(() => Image.load(d), InvalidLayerError, 'invalid_layer')
  })
})

testCacheStillWorks(fx)
