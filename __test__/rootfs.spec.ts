// The root disk of an image, proved by the tools that read it: each layer
// image passes fsck.erofs and extracts to its tar; fsmeta plus the layers
// extracts to exactly what `umoci unpack` makes of the same image; qemu-img
// reads the VMDK as fsmeta followed by the layers; and Debian's 6.12 kernel,
// booted under QEMU, mounts the VMDK and sees the reference tree.
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '../index'
import { describeTree, extractRootDisk, freshHome, rejectionOf, TreeEntry, writeRootDisk } from './support/cache'
import { blobPath, buildImage, BuiltImage, craftTar, makeTempDir, noise, requireTools, run, sha256, unpackRootfs, writeBlob } from './support/images'
import { bootAndManifest, ManifestEntry, manifestOfDir } from './support/vm'

jest.setTimeout(600_000)

const REF = 'localhost/rootfs/test:v1'
const T0 = 1_600_000_000

/** Layers that delete files and directories, replace a directory opaquely, re-add deleted paths, change modes and owners. */
function layers() {
  return [
    {
      entries: [
        { type: 'dir' as const, path: 'etc', mode: 0o755, mtime: T0 },
        { type: 'file' as const, path: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n', mtime: T0 + 1 },
        { type: 'file' as const, path: 'usr/bin/tool', content: '#!/bin/sh\necho tool\n', mode: 0o755, mtime: T0 + 2 },
        { type: 'file' as const, path: 'usr/bin/su', content: 'setuid binary', mode: 0o4755, mtime: T0 + 3 },
        { type: 'file' as const, path: 'usr/bin/wall', content: 'setgid binary', mode: 0o2755, gid: 5, mtime: T0 + 3 },
        { type: 'symlink' as const, path: 'usr/bin/link', target: 'tool', mtime: T0 + 4 },
        { type: 'file' as const, path: 'usr/lib/libone.so', content: noise(3 << 20, 1), mtime: T0 + 5 },
        { type: 'hardlink' as const, path: 'usr/lib/libone.so.1', target: 'usr/lib/libone.so' },
        { type: 'hardlink' as const, path: 'usr/lib/libone.so.1.0', target: 'usr/lib/libone.so' },
        { type: 'file' as const, path: 'usr/lib/empty', content: '', mtime: T0 + 6 },
        { type: 'file' as const, path: 'usr/lib/block', content: noise(4096, 2), mtime: T0 + 6 },
        { type: 'file' as const, path: 'data/drop/y', content: 'dropped later', mtime: T0 + 7 },
        { type: 'file' as const, path: 'data/old/z', content: 'replaced opaquely', mtime: T0 + 8 },
        { type: 'file' as const, path: 'data/old/sub/w', content: 'also gone', mtime: T0 + 8 },
        { type: 'dir' as const, path: 'var/log', mode: 0o750, uid: 1000, gid: 1000, mtime: T0 + 9 },
        { type: 'file' as const, path: 'home/big-ids', content: 'ids beyond 16 bits', uid: 70000, gid: 80000, mtime: T0 + 10 },
        { type: 'dir' as const, path: 'tmp', mode: 0o1777, mtime: T0 + 11 },
      ],
    },
    {
      entries: [
        { type: 'delete' as const, path: 'data/drop' },
        { type: 'delete' as const, path: 'usr/lib/libone.so.1.0' },
        { type: 'file' as const, path: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n', mtime: T0 + 20 },
        { type: 'file' as const, path: 'usr/bin/tool', content: '#!/bin/sh\necho tool v2\n', mode: 0o700, uid: 1000, gid: 1000, mtime: T0 + 21 },
        { type: 'dir' as const, path: 'var/log', mode: 0o755, uid: 0, gid: 0, mtime: T0 + 22 },
        { type: 'file' as const, path: 'data/new/file', content: 'added', mtime: T0 + 23 },
      ],
    },
    { entries: [{ type: 'opaque' as const, path: 'data/old', mode: 0o700, mtime: T0 + 30, entries: [{ type: 'file' as const, path: 'fresh.txt', content: 'only this', mtime: T0 + 31 }] }] },
    {
      entries: [
        { type: 'file' as const, path: 'data/drop/y', content: 'back again', mode: 0o600, mtime: T0 + 40 },
        { type: 'file' as const, path: 'deep/a/b/c/d/e/file', content: 'deep', mtime: T0 + 41 },
      ],
    },
  ]
}

/** Directory mtimes by path, from the topmost layer with an explicit entry (Docker's rule). */
async function topmostDirMtimes(img: BuiltImage): Promise<Map<string, number>> {
  const script = `
import json, sys, tarfile
out = {}
for blob in sys.argv[1:]:
    with tarfile.open(blob) as t:
        for m in t.getmembers():
            if m.isdir():
                out[m.name.strip('/').removeprefix('./').strip('.')] = int(m.mtime)
json.dump(out, sys.stdout)
`
  const { stdout } = await run('python3', ['-c', script, ...img.layers.map((l) => blobPath(img.layout, l.digest))])
  return new Map(Object.entries(JSON.parse(stdout) as Record<string, number>))
}

describe('root disk of a multi-layer image', () => {
  let work: string
  let img: BuiltImage
  let home: { home: string; cleanup: () => Promise<void> }
  let boot: { vmdkPath: string; fsmetaPath: string; layers: readonly string[] }
  let umociRootfs: string

  beforeAll(async () => {
    requireTools(['umoci', 'skopeo', 'fsck.erofs', 'dump.erofs', 'qemu-img', 'qemu-system-x86_64', 'python3', 'tar'])
    work = await makeTempDir('msb-rootfs-')
    img = await buildImage(path.join(work, 'layout'), { layers: layers(), refs: [REF] })
    umociRootfs = await unpackRootfs(img, path.join(work, 'umoci'))
    home = await freshHome()
    process.env.MSB_HOME = home.home
    await Image.load(img.layout)
    boot = await Image.acquire(REF, { sandbox: 'rootfs-test' })
  })

  afterAll(async () => {
    await home?.cleanup()
    if (work) await fsp.rm(work, { recursive: true, force: true })
  })

  test('every layer image passes fsck.erofs and extracts to its tar, whiteouts as 0/0 devices', async () => {
    expect(boot.layers).toHaveLength(4)
    for (const [i, layerPath] of boot.layers.entries()) {
      const extracted = path.join(work, `layer-${i}`)
      await run('fsck.erofs', [`--extract=${extracted}`, layerPath])
      const untarred = path.join(work, `tar-${i}`)
      await fsp.mkdir(untarred)
      await run('tar', ['--numeric-owner', '-xpf', blobPath(img.layout, img.layers[i].digest), '-C', untarred])
      // The tar's `.wh.` markers become whiteout devices; `.wh..wh..opq` an xattr.
      const expected: TreeEntry[] = []
      for (const e of await describeTree(untarred)) {
        const base = path.posix.basename(e.path)
        if (base === '.wh..wh..opq') continue
        if (base.startsWith('.wh.')) {
          expected.push({ path: path.posix.join(path.posix.dirname(e.path), base.slice(4)).replace(/^\.\//, ''), type: 'other', mode: 0, uid: 0, gid: 0, mtime: e.mtime })
          continue
        }
        expected.push(e)
      }
      expected.sort((a, b) => (a.path < b.path ? -1 : 1))
      // erofs-utils 1.5 drops setuid/setgid on extraction (checked by the kernel test below).
      const strip = (t: TreeEntry[]) => t.map((e) => ({ ...e, mode: e.mode & ~0o6000 }))
      expect(strip(await describeTree(extracted))).toEqual(strip(expected))
    }
  })

  test('the root disk (fsmeta then the layers) extracts to exactly what umoci unpack makes', async () => {
    const extracted = await extractRootDisk(boot.fsmetaPath, boot.layers, path.join(work, 'fsmeta-extract'))
    const strip = (t: TreeEntry[]) => t.map((e) => ({ ...e, mode: e.mode & ~0o6000 }))
    const actual = strip(await describeTree(extracted))
    expect(actual).toEqual(strip(await describeTree(umociRootfs)))
    // The spots the changes touched, spelled out.
    const at = (p: string) => actual.find((e) => e.path === p)
    expect(at('data/drop/y')).toMatchObject({ type: 'file', mode: 0o600 })
    expect(at('data/old/z')).toBeUndefined()
    expect(at('data/old/sub')).toBeUndefined()
    expect(at('data/old/fresh.txt')).toMatchObject({ type: 'file' })
    expect(at('data/old')).toMatchObject({ mode: 0o700 })
    expect(at('usr/lib/libone.so.1.0')).toBeUndefined()
    expect(at('usr/bin/tool')).toMatchObject({ mode: 0o700, uid: 1000, gid: 1000 })
    expect(at('var/log')).toMatchObject({ mode: 0o755, uid: 0 })
    expect(at('home/big-ids')).toMatchObject({ uid: 70000, gid: 80000 })
    expect(at('')).toMatchObject({ type: 'dir', mode: 0o755, uid: 0, gid: 0 })
  })

  test('dump.erofs reports link counts and setuid bits fsck extraction cannot show', async () => {
    const devices = boot.layers.map((l) => `--device=${l}`)
    const disk = await writeRootDisk(boot.fsmetaPath, boot.layers, path.join(work, 'dump-disk.raw'))
    const inode = async (p: string) => (await run('dump.erofs', [...devices, `--path=${p}`, disk])).stdout
    // Two names left of three after the upper layer deleted one.
    expect(await inode('/usr/lib/libone.so')).toMatch(/Links:\s*2\b/)
    expect(await inode('/usr/lib/libone.so.1')).toMatch(/Links:\s*2\b/)
    expect(await inode('/usr/bin/link')).toMatch(/Links:\s*1\b/)
  })

  test('qemu-img reads the VMDK as fsmeta followed by the layer images', async () => {
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', boot.vmdkPath])).stdout)
    expect(info.format).toBe('vmdk')
    const parts = [boot.fsmetaPath, ...boot.layers]
    let total = 0
    for (const p of parts) total += (await fsp.stat(p)).size
    expect(info['virtual-size']).toBe(total)
    const raw = path.join(work, 'disk.raw')
    await run('qemu-img', ['convert', '-O', 'raw', boot.vmdkPath, raw])
    const concatenated = Buffer.concat(await Promise.all(parts.map((p) => fsp.readFile(p))))
    const converted = await fsp.readFile(raw)
    expect(converted.length).toBe(concatenated.length)
    expect(sha256(converted)).toBe(sha256(concatenated))
  })

  test("the 6.12 kernel mounts the VMDK and sees the reference tree", async () => {
    const guest = await bootAndManifest(boot.vmdkPath, { format: 'vmdk' })
    // umoci 0.4.7 keeps a lower layer's directory mtime where Docker takes
    // the topmost entry's: expect Docker's rule for directories, exactly.
    const topmost = await topmostDirMtimes(img)
    const reference = await manifestOfDir(umociRootfs)
    const expected: ManifestEntry[] = reference.map((e) => (e.type === 'dir' && topmost.has(e.path) ? { ...e, mtime: topmost.get(e.path)! } : e))
    expect(guest).toEqual(expected)
    const at = (p: string) => guest.find((e) => e.path === p)
    expect(at('usr/bin/su')).toMatchObject({ mode: 0o4755 })
    expect(at('usr/bin/wall')).toMatchObject({ mode: 0o2755, gid: 5 })
    expect(at('tmp')).toMatchObject({ mode: 0o1777 })
    expect(at('usr/lib/libone.so')).toMatchObject({ nlink: 2 })
  })
})

describe('bad layers', () => {
  let work: string
  let home: { home: string; cleanup: () => Promise<void> }

  beforeAll(async () => {
    work = await makeTempDir('msb-badlayer-')
  })
  beforeEach(async () => {
    home = await freshHome()
    process.env.MSB_HOME = home.home
  })
  afterEach(async () => home.cleanup())
  afterAll(async () => fsp.rm(work, { recursive: true, force: true }))

  /** An OCI layout with one image whose single layer is `tar` (uncompressed). */
  async function layoutWithLayer(name: string, tar: Buffer): Promise<string> {
    const layout = path.join(work, name)
    await fsp.mkdir(path.join(layout, 'blobs', 'sha256'), { recursive: true })
    const layer = await writeBlob(layout, tar)
    const config = await writeBlob(layout, JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } }))
    const manifest = await writeBlob(
      layout,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    )
    await fsp.writeFile(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
    await fsp.writeFile(
      path.join(layout, 'index.json'),
      JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': `localhost/bad/${name}:v1` } }] }),
    )
    return layout
  }

  const good = async () => fsp.readFile(await craftTar(path.join(work, `good-${Date.now()}.tar`), [{ name: 'a.txt', content: 'x'.repeat(3000) }, { name: 'b.txt', content: 'y' }]))

  const cases: Array<[string, () => Promise<Buffer>]> = [
    ['truncated tar', async () => (await good()).subarray(0, 1000)],
    [
      'wrong header checksum',
      async () => {
        const t = Buffer.from(await good())
        t[148] = t[148] === 0x30 ? 0x31 : 0x30
        return t
      },
    ],
    ['path traversal', async () => fsp.readFile(await craftTar(path.join(work, 'trav.tar'), [{ name: '../escape.txt', content: 'x' }]))],
    ['nested traversal', async () => fsp.readFile(await craftTar(path.join(work, 'trav2.tar'), [{ name: 'a/../../escape.txt', content: 'x' }]))],
    ['hardlink to a missing target', async () => fsp.readFile(await craftTar(path.join(work, 'hl.tar'), [{ name: 'link', hardlink: 'nowhere' }]))],
    ['hardlink escaping the root', async () => fsp.readFile(await craftTar(path.join(work, 'hl2.tar'), [{ name: 'link', hardlink: '../../etc/passwd' }]))],
    [
      'absurd size',
      async () => {
        const t = Buffer.from(await good())
        // base-256 size field claiming 2^80 bytes
        t.fill(0, 124, 136)
        t[124] = 0x80
        t[126] = 0x01
        let sum = 0
        t.fill(0x20, 148, 156)
        for (let i = 0; i < 512; i++) sum += t[i]
        t.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii')
        return t
      },
    ],
  ]

  test.each(cases)('%s: InvalidLayerError, nothing published', async (name, make) => {
    const layout = await layoutWithLayer(name.replace(/\W+/g, '-'), await make())
    const err = await rejectionOf(Image.load(layout))
    expect(err.constructor.name).toBe('InvalidLayerError')
    expect(err.code).toBe('invalid_layer')
    expect(await Image.list()).toEqual([])
    for (const dir of ['layers/sha256', 'fsmeta/sha256', 'vmdk/sha256', 'tmp']) {
      expect(await fsp.readdir(path.join(home.home, dir))).toEqual([])
    }
  })
})
