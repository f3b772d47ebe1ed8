/**
 * Proves the VM harness (support/vm.ts) on an image we do not make ourselves:
 * a tree built here is packed with erofs-utils' mkfs.erofs, booted under QEMU
 * (raw and through a hand-written monolithicFlat VMDK descriptor) and the
 * guest kernel's view must equal the host's lstat view of the tree.
 *
 * Missing prerequisites (kernel, modules, qemu, busybox, mkfs.erofs, root)
 * make these tests fail, never skip.
 */
import { execFileSync } from 'child_process'
import { randomBytes } from 'crypto'
import * as fs from 'fs'
import * as net from 'net'
import * as os from 'os'
import * as path from 'path'
import {
  bootAndManifest,
  bufferToManifestPath,
  manifestOfDir,
  manifestPathToBuffer,
  ManifestEntry,
  VmHarnessError,
  vmPrerequisites,
} from './support/vm'

const BOOT_TIMEOUT = 240_000

let work: string
let tree: string
let rawImage: string
let socketServer: net.Server | undefined

const NON_UTF8_NAME = Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe, 0x2d, 0x6e, 0x61, 0x6d, 0x65]) // "bad\xff\xfe-name"
const WEIRD_NAME = 'per%cent\nnew line\ttab'
const UNICODE_NAME = 'ünïcødé-🙂'

function runTool(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function hostHasTool(cmd: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
  } catch {
    throw new Error(`'${cmd}' not found in PATH (needed by this test)`)
  }
}

async function buildTree(root: string): Promise<void> {
  const p = (...parts: string[]) => path.join(root, ...parts)
  const t0 = 1_600_000_000 // fixed, distinct mtimes make mtime mismatches visible
  fs.writeFileSync(p('hello.txt'), 'hello world\n')
  fs.writeFileSync(p('empty'), '')
  fs.writeFileSync(p('big.bin'), randomBytes(1 << 20))
  fs.mkdirSync(p('nested', 'deeper', 'deepest'), { recursive: true })
  fs.writeFileSync(p('nested', 'deeper', 'deepest', 'leaf.txt'), 'leaf\n')
  fs.writeFileSync(p('nested', 'sibling.txt'), 'sibling\n'.repeat(1000))
  fs.mkdirSync(p('nested', 'empty-dir'))
  fs.symlinkSync('hello.txt', p('link-to-hello'))
  fs.symlinkSync('../does/not/exist', p('nested', 'dangling'))
  fs.symlinkSync('nested/deeper', p('link-to-dir'))
  fs.writeFileSync(p('hard-a'), 'shared content\n')
  fs.linkSync(p('hard-a'), p('nested', 'hard-b'))
  runTool('mkfifo', ['-m', '0640', p('fifo')])
  runTool('mknod', ['-m', '0620', p('chardev'), 'c', '250', '300']) // minor > 255 exercises the dev_t split
  runTool('mknod', ['-m', '0660', p('blockdev'), 'b', '7', '3'])
  runTool('mknod', ['-m', '0000', p('whiteout'), 'c', '0', '0']) // overlayfs whiteout, as in OCI layers
  fs.writeFileSync(p('setuid-bin'), '#!/bin/sh\n')
  fs.chmodSync(p('setuid-bin'), 0o4755)
  fs.writeFileSync(p('setgid-bin'), '#!/bin/sh\n')
  fs.chmodSync(p('setgid-bin'), 0o2711)
  fs.mkdirSync(p('sticky'))
  fs.chmodSync(p('sticky'), 0o1777)
  fs.writeFileSync(p('big-ids'), 'owned by a high uid\n')
  fs.chownSync(p('big-ids'), 100_000, 200_000)
  fs.mkdirSync(p('big-ids-dir'))
  fs.chownSync(p('big-ids-dir'), 4_000_000_000, 65_536)
  fs.lchownSync(p('link-to-hello'), 70_000, 70_001)
  fs.writeFileSync(Buffer.from(p(WEIRD_NAME)), 'weird\n')
  fs.writeFileSync(p(UNICODE_NAME), 'unicode\n')
  fs.writeFileSync(Buffer.concat([Buffer.from(root + '/'), NON_UTF8_NAME]), 'not utf-8\n')
  fs.writeFileSync(p('private'), 'secret\n')
  fs.chmodSync(p('private'), 0o600)
  // A unix socket: libuv unlinks it on close, so the server stays open until the image is built.
  socketServer = net.createServer()
  await new Promise<void>((resolve, reject) => {
    socketServer!.once('error', reject)
    socketServer!.listen(p('socket'), resolve)
  })

  // Fixed mtimes, children before parents (creating entries changes the parent's mtime).
  let n = 0
  const stamp = (abs: string | Buffer): void => {
    const t = t0 + 1000 * ++n
    fs.lutimesSync(abs, t, t)
  }
  const walk = (dir: Buffer): void => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' })) {
      const abs = Buffer.concat([dir, Buffer.from('/'), name])
      if (fs.lstatSync(abs).isDirectory()) walk(abs)
      stamp(abs)
    }
  }
  walk(Buffer.from(root))
  fs.chmodSync(root, 0o755)
  stamp(root)
}

function writeFlatVmdk(descriptor: string, raw: string, access: 'RW' | 'RDONLY'): void {
  const size = fs.statSync(raw).size
  const sectors = Math.ceil(size / 512)
  const cylinders = Math.max(1, Math.ceil(sectors / (16 * 63)))
  const text = [
    '# Disk DescriptorFile',
    'version=1',
    'CID=fffffffe',
    'parentCID=ffffffff',
    'createType="monolithicFlat"',
    '',
    '# Extent description',
    `${access} ${sectors} FLAT "${path.relative(path.dirname(descriptor), raw)}" 0`,
    '',
    '# The Disk Data Base',
    '#DDB',
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${cylinders}"`,
    'ddb.geometry.heads = "16"',
    'ddb.geometry.sectors = "63"',
    'ddb.adapterType = "ide"',
    '',
  ].join('\n')
  fs.writeFileSync(descriptor, text)
}

function qemuProcessesFor(needle: string): number[] {
  const pids: number[] = []
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(needle)) pids.push(Number(pid))
    } catch {
      /* process went away */
    }
  }
  return pids
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the VM harness test must run as root (mknod, chown, reading /boot/vmlinuz)')
  vmPrerequisites()
  hostHasTool('mkfs.erofs')
  hostHasTool('mknod')
  hostHasTool('mkfifo')
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vm-harness-spec-'))
  tree = path.join(work, 'tree')
  fs.mkdirSync(tree)
  await buildTree(tree)
  rawImage = path.join(work, 'tree.erofs.img')
  runTool('mkfs.erofs', [rawImage, tree])
})

afterAll(async () => {
  if (socketServer) await new Promise<void>((resolve) => socketServer!.close(() => resolve()))
  if (work) fs.rmSync(work, { recursive: true, force: true })
})

describe('manifest path encoding', () => {
  it('round-trips arbitrary bytes and keeps readable names readable', () => {
    const cases: Buffer[] = [
      Buffer.from('plain/name.txt'),
      Buffer.from(UNICODE_NAME),
      Buffer.from(WEIRD_NAME),
      NON_UTF8_NAME,
      Buffer.from([0xed, 0xa0, 0x80]), // UTF-8-encoded surrogate: invalid
      Buffer.from([0xc0, 0xaf]), // overlong '/': invalid
      Buffer.from([0xf0, 0x9f, 0x99]), // truncated 4-byte sequence
      Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 0)),
    ]
    for (const b of cases) expect(manifestPathToBuffer(bufferToManifestPath(b)).equals(b)).toBe(true)
    expect(bufferToManifestPath(Buffer.from('a/b c'))).toBe('a/b c')
    expect(bufferToManifestPath(Buffer.from(UNICODE_NAME))).toBe(UNICODE_NAME)
    expect(bufferToManifestPath(NON_UTF8_NAME)).toBe('bad%ff%fe-name')
    expect(bufferToManifestPath(Buffer.from('50%\n'))).toBe('50%25%0a')
  })
})

describe('VM harness', () => {
  it('finds the kernel, its modules, qemu and busybox', () => {
    const { kernel, modulesDir } = vmPrerequisites()
    expect(fs.existsSync(kernel)).toBe(true)
    expect(fs.existsSync(path.join(modulesDir, 'modules.dep'))).toBe(true)
  })

  it('host manifest covers every kind of entry in the test tree', async () => {
    const m = await manifestOfDir(tree)
    const byPath = new Map(m.map((e) => [e.path, e]))
    expect(m[0]).toMatchObject({ path: '', type: 'dir', mode: 0o755 })
    expect(new Set(m.map((e) => e.type))).toEqual(new Set(['file', 'dir', 'symlink', 'char', 'block', 'fifo', 'socket']))
    expect(byPath.get('empty')).toMatchObject({ type: 'file', size: 0 })
    expect(byPath.get('big.bin')).toMatchObject({ type: 'file', size: 1 << 20 })
    expect(byPath.get('hard-a')).toMatchObject({ nlink: 2 })
    expect(byPath.get('nested/hard-b')?.sha256).toBe(byPath.get('hard-a')?.sha256)
    expect(byPath.get('link-to-hello')).toMatchObject({ type: 'symlink', target: 'hello.txt', uid: 70_000, gid: 70_001 })
    expect(byPath.get('chardev')).toMatchObject({ type: 'char', rdev: '250:300', mode: 0o620 })
    expect(byPath.get('blockdev')).toMatchObject({ type: 'block', rdev: '7:3' })
    expect(byPath.get('whiteout')).toMatchObject({ type: 'char', rdev: '0:0', mode: 0 })
    expect(byPath.get('setuid-bin')?.mode).toBe(0o4755)
    expect(byPath.get('setgid-bin')?.mode).toBe(0o2711)
    expect(byPath.get('sticky')?.mode).toBe(0o1777)
    expect(byPath.get('big-ids')).toMatchObject({ uid: 100_000, gid: 200_000 })
    expect(byPath.get('big-ids-dir')).toMatchObject({ uid: 4_000_000_000, gid: 65_536 })
    expect(byPath.get('bad%ff%fe-name')).toMatchObject({ type: 'file' })
    expect(byPath.get('per%25cent%0anew line%09tab')).toMatchObject({ type: 'file' })
    expect(byPath.get(UNICODE_NAME)).toMatchObject({ type: 'file' })
    expect(byPath.get('nested')).toMatchObject({ type: 'dir', nlink: 4, size: 0 })
  })

  it(
    'boots a raw mkfs.erofs image and the guest sees exactly the host tree',
    async () => {
      const expected = await manifestOfDir(tree)
      const t = Date.now()
      const guest = await bootAndManifest(rawImage, { format: 'raw' })
      console.log(`vm-harness: raw boot + manifest took ${Date.now() - t} ms (${guest.length} entries)`)
      expect(guest).toEqual(expected)
    },
    BOOT_TIMEOUT,
  )

  it.each(['RW', 'RDONLY'] as const)(
    'boots the same image through a monolithicFlat VMDK descriptor with a %s extent',
    async (access) => {
      const descriptor = path.join(work, `disk-${access}.vmdk`)
      writeFlatVmdk(descriptor, rawImage, access)
      const expected = await manifestOfDir(tree)
      const t = Date.now()
      const guest: ManifestEntry[] = await bootAndManifest(descriptor) // format inferred from .vmdk
      console.log(`vm-harness: vmdk (${access}) boot + manifest took ${Date.now() - t} ms`)
      expect(guest).toEqual(expected)
    },
    BOOT_TIMEOUT,
  )

  it(
    'rejects with the mount failure when the disk is not EROFS',
    async () => {
      const zeros = path.join(work, 'zeros.img')
      fs.writeFileSync(zeros, Buffer.alloc(1 << 20))
      const t = Date.now()
      const err = await bootAndManifest(zeros, { format: 'raw' }).then(
        () => undefined,
        (e: unknown) => e,
      )
      console.log(`vm-harness: failing boot took ${Date.now() - t} ms`)
      expect(err).toBeInstanceOf(VmHarnessError)
      const msg = (err as Error).message
      expect(msg).toMatch(/mount -t erofs -o ro \/dev\/vda \/mnt failed/)
      expect(msg).toContain('console tail')
      expect(msg).toMatch(/erofs.*(cannot find valid erofs superblock|bad magic)/i) // kernel's own complaint, from the dmesg tail
    },
    BOOT_TIMEOUT,
  )

  it(
    'kills qemu and rejects when the VM does not finish in time',
    async () => {
      const marker = path.join(work, 'timeout-disk.img')
      fs.copyFileSync(rawImage, marker)
      const err = await bootAndManifest(marker, { timeoutMs: 1500 }).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(VmHarnessError)
      expect((err as Error).message).toMatch(/did not finish within 1500 ms/)
      expect(qemuProcessesFor(marker)).toEqual([])
    },
    BOOT_TIMEOUT,
  )

  it('rejects clearly when the disk does not exist', async () => {
    await expect(bootAndManifest(path.join(work, 'nope.img'))).rejects.toThrow(/does not exist/)
  })
})
