// A root disk of many small files, as Python, Node and Ruby images are:
// layer images pack small files and tails beside their inodes, and
// fsmeta names the packed records where the layers lie on the disk.
// Checked against `umoci unpack` of the same image by erofs-utils 1.5 on
// the root disk and by Debian's 6.12 kernel mounting the VMDK under QEMU.
import * as fsp from 'fs/promises'
import * as path from 'path'

import { Image } from '../index'
import { describeTree, extractRootDisk, freshHome } from './support/cache'
import { buildImage, BuiltImage, makeTempDir, noise, requireTools, unpackRootfs } from './support/images'
import { bootAndManifest, manifestOfDir } from './support/vm'

jest.setTimeout(600_000)

const REF = 'localhost/rootfs/small-files:v1'
const T0 = 1_650_000_000
const FILES = 2000

/** Sizes from empty to two blocks and a bit: whole files and tails packed, and files of whole blocks. */
const sizeOf = (i: number): number => (i % 10 === 0 ? 4096 * (1 + (i % 3)) : (i * 37) % 9000)

function layers() {
  const lower = []
  for (let i = 0; i < FILES; i++) {
    lower.push({ type: 'file' as const, path: `lib/d${i % 40}/f${i}.py`, content: noise(sizeOf(i), i), mode: i % 7 === 0 ? 0o755 : 0o644, mtime: T0 + (i % 100) })
  }
  lower.push({ type: 'file' as const, path: 'lib/shared', content: 'one record, two names', mtime: T0 })
  lower.push({ type: 'hardlink' as const, path: 'lib/shared-too', target: 'lib/shared' })
  const upper = []
  for (let i = 0; i < FILES; i += 20) upper.push({ type: 'delete' as const, path: `lib/d${i % 40}/f${i}.py` })
  for (let i = 5; i < FILES; i += 20) upper.push({ type: 'file' as const, path: `lib/d${i % 40}/f${i}.py`, content: noise(sizeOf(i + 1), i + 7), mtime: T0 + 500 })
  upper.push({ type: 'delete' as const, path: 'lib/shared-too' })
  return [{ entries: lower }, { entries: upper }]
}

describe('root disk of an image of many small files', () => {
  let work: string
  let img: BuiltImage
  let home: { home: string; cleanup: () => Promise<void> }
  let boot: { vmdkPath: string; fsmetaPath: string; layers: readonly string[] }
  let umociRootfs: string

  beforeAll(async () => {
    requireTools(['umoci', 'skopeo', 'fsck.erofs', 'qemu-img', 'qemu-system-x86_64', 'python3', 'tar'])
    work = await makeTempDir('msb-small-')
    img = await buildImage(path.join(work, 'layout'), { layers: layers(), refs: [REF] })
    umociRootfs = await unpackRootfs(img, path.join(work, 'umoci'))
    home = await freshHome()
    process.env.MSB_HOME = home.home
    await Image.load(img.layout)
    boot = await Image.acquire(REF, { sandbox: 'small-files-test' })
  })

  afterAll(async () => {
    await home?.cleanup()
    if (work) await fsp.rm(work, { recursive: true, force: true })
  })

  test('the lower layer takes little more than its files, and fsmeta no copy of them', async () => {
    let content = 0
    for (let i = 0; i < FILES; i++) content += sizeOf(i)
    const layer = (await fsp.stat(boot.layers[0])).size
    // One block per small file would be at least FILES * 4096 bytes more than the files hold.
    expect(layer).toBeLessThan(content * 1.15 + FILES * 128 + (256 << 10))
    // fsmeta holds directories, inodes of files with blocks and the tails it copies: no whole file.
    expect((await fsp.stat(boot.fsmetaPath)).size).toBeLessThan(FILES * 1400)
  })

  test('erofs-utils extracts the root disk to exactly what umoci unpack makes', async () => {
    const extracted = await extractRootDisk(boot.fsmetaPath, boot.layers, path.join(work, 'extract'))
    expect(await describeTree(extracted)).toEqual(await describeTree(umociRootfs))
  })

  test('the 6.12 kernel mounts the VMDK and reads every file as umoci unpacks it', async () => {
    const started = Date.now()
    const guest = await bootAndManifest(boot.vmdkPath, { format: 'vmdk' })
    console.log(`small-files: boot, mount and read of ${guest.length} entries took ${Date.now() - started} ms`)
    const reference = await manifestOfDir(umociRootfs)
    // Directory mtimes: the layers set none explicitly here, so compare the rest.
    const strip = (m: typeof guest) => m.map((e) => (e.type === 'dir' ? { ...e, mtime: 0 } : e))
    expect(strip(guest)).toEqual(strip(reference))
    expect(guest.find((e) => e.path === 'lib/shared')).toMatchObject({ nlink: 1 })
  })
})
