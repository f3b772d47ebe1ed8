/**
 * VM harness: proves that a real Linux kernel can read a disk image we produce.
 *
 * `bootAndManifest(disk)` boots the host's Debian kernel (/boot/vmlinuz-<rel>,
 * modules from /lib/modules/<rel>) under `qemu-system-x86_64 -accel tcg` with
 * a small busybox initramfs (built by ../vm/build-initramfs.sh, cached), attaches
 * `disk` read-only as a virtio-blk disk, mounts it with
 * `mount -t erofs -o ro /dev/vda /mnt` and returns the manifest of the mounted
 * tree. `manifestOfDir(dir)` computes the same manifest on the host, so a test
 * can `expect(await bootAndManifest(img)).toEqual(await manifestOfDir(src))`.
 *
 * Guest <-> host protocol: see ../vm/init.sh. The kernel console (ttyS0) is
 * written to a log file and only used for diagnostics; the manifest travels
 * over a second UART (ttyS1) as gzipped, hex-encoded sections between
 * `VMH-BEGIN <section>` / `VMH-END <section> <bytes>` markers, terminated by
 * `VMH-STATUS ok|fail <reason>`, so kernel messages cannot corrupt it.
 *
 * Path and symlink-target encoding (`ManifestEntry.path`, `.target`):
 * file names are raw bytes. They are rendered as UTF-8 text, except that '%',
 * control bytes (0x00-0x1f, 0x7f) and every byte that is not part of a valid
 * UTF-8 sequence are written as `%XX` (two lowercase hex digits). The mapping
 * is injective and `manifestPathToBuffer` gives back the exact bytes, e.g.
 * name bytes `66 ff 0a 25` <-> "f%ff%0a%25". Paths are relative to the mount
 * root ('' is the root itself) with '/' separators.
 *
 * Comparison rules (identical on both sides):
 *  - entries are sorted by the raw bytes of their path (Buffer.compare);
 *  - `mode` is `st_mode & 0o7777`; `type` comes from `st_mode & S_IFMT`;
 *  - `mtime` is whole seconds (floor of st_mtime); EROFS stores nanoseconds
 *    too but busybox `stat` only prints seconds;
 *  - `size` of directories is reported as 0: a directory's st_size is an
 *    implementation detail of each filesystem (ext4: multiples of 4096, EROFS:
 *    the bytes of its dirent blocks) and says nothing about its content;
 *  - `nlink` is reported as-is for every type, including directories. EROFS
 *    (mkfs.erofs 1.5 and the 6.12 kernel) reports 2 + number of subdirectories
 *    for a directory, like ext4/xfs/tmpfs, so no normalisation is done; a host
 *    filesystem with other conventions (btrfs reports 1) would differ;
 *  - `sha256` only for regular files, `target` only for symlinks, `rdev`
 *    ('major:minor', decimal) only for char/block devices.
 *
 * Environment overrides: VM_HARNESS_KERNEL (path to vmlinuz),
 * VM_HARNESS_MODULES_DIR (/lib/modules/<rel>), VM_HARNESS_BUSYBOX (static
 * busybox), VM_HARNESS_CACHE (initramfs cache dir, default
 * $TMPDIR/microsandbox-vm-harness), VM_HARNESS_KEEP_TMP=1 (keep the per-boot
 * temp dir with console.log/data.log for debugging).
 */
import { spawn, execFile, ChildProcess } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as os from 'os'
import * as path from 'path'
import { gunzipSync } from 'zlib'

export interface ManifestEntry {
  /** Relative to the mount root, '' for the root. Raw name bytes encoded as described above (see manifestPathToBuffer). */
  path: string
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket'
  /** Permission bits including setuid/setgid/sticky (st_mode & 0o7777). */
  mode: number
  uid: number
  gid: number
  nlink: number
  /** st_mtime in whole seconds. */
  mtime: number
  /** st_size; 0 for directories (see the comparison rules above). */
  size: number
  /** Lowercase hex SHA-256 of the content, regular files only. */
  sha256?: string
  /** Symlink target, same encoding as `path`. */
  target?: string
  /** 'major:minor' (decimal) for char and block devices. */
  rdev?: string
}

export interface BootOptions {
  /** Disk format given to qemu; default: 'vmdk' when the file name ends in .vmdk, else 'raw'. */
  format?: 'vmdk' | 'raw'
  /** Hard limit for the whole VM run; qemu is SIGKILLed after it. Default 180000. */
  timeoutMs?: number
}

/** Error thrown by bootAndManifest; `consoleLog` holds the full serial console output. */
export class VmHarnessError extends Error {
  constructor(
    message: string,
    readonly consoleLog: string,
  ) {
    super(message)
    this.name = 'VmHarnessError'
  }
}

const VM_DIR = path.resolve(__dirname, '..', 'vm')
const BUILD_SCRIPT = path.join(VM_DIR, 'build-initramfs.sh')
const INIT_SCRIPT = path.join(VM_DIR, 'init.sh')
const QEMU = 'qemu-system-x86_64'
const DEFAULT_TIMEOUT_MS = 180_000
const CONSOLE_TAIL_LINES = 60

// ---------------------------------------------------------------------------
// Path encoding

/** Encodes raw name bytes as a manifest path string (see the module comment). */
export function bufferToManifestPath(buf: Buffer): string {
  let out = ''
  let i = 0
  while (i < buf.length) {
    const b = buf[i]
    if (b < 0x80) {
      out += b < 0x20 || b === 0x7f || b === 0x25 ? pct(b) : String.fromCharCode(b)
      i += 1
      continue
    }
    const len = utf8SequenceLength(buf, i)
    if (len === 0) {
      out += pct(b)
      i += 1
    } else {
      out += buf.subarray(i, i + len).toString('utf8')
      i += len
    }
  }
  return out
}

/** Inverse of bufferToManifestPath: the exact name bytes of a manifest path or symlink target. */
export function manifestPathToBuffer(p: string): Buffer {
  const parts: Buffer[] = []
  let i = 0
  while (i < p.length) {
    const j = p.indexOf('%', i)
    const end = j < 0 ? p.length : j
    if (end > i) parts.push(Buffer.from(p.slice(i, end), 'utf8'))
    if (j < 0) break
    const hex = p.slice(j + 1, j + 3)
    if (!/^[0-9a-f]{2}$/.test(hex)) throw new Error(`invalid %-escape in manifest path ${JSON.stringify(p)}`)
    parts.push(Buffer.from([parseInt(hex, 16)]))
    i = j + 3
  }
  return Buffer.concat(parts)
}

function pct(b: number): string {
  return '%' + b.toString(16).padStart(2, '0')
}

/** Length of the well-formed UTF-8 sequence starting at buf[i] (lead byte >= 0x80), or 0. */
function utf8SequenceLength(buf: Buffer, i: number): number {
  const b = buf[i]
  let len: number
  let lo = 0x80
  let hi = 0xbf
  if (b >= 0xc2 && b <= 0xdf) len = 2
  else if (b >= 0xe0 && b <= 0xef) {
    len = 3
    if (b === 0xe0) lo = 0xa0
    if (b === 0xed) hi = 0x9f // no UTF-16 surrogates
  } else if (b >= 0xf0 && b <= 0xf4) {
    len = 4
    if (b === 0xf0) lo = 0x90
    if (b === 0xf4) hi = 0x8f
  } else return 0
  if (i + len > buf.length) return 0
  for (let k = 1; k < len; k++) {
    const c = buf[i + k]
    const min = k === 1 ? lo : 0x80
    const max = k === 1 ? hi : 0xbf
    if (c < min || c > max) return 0
  }
  return len
}

function sortManifest(entries: ManifestEntry[]): ManifestEntry[] {
  const keyed = entries.map((e) => ({ e, k: manifestPathToBuffer(e.path) }))
  keyed.sort((a, b) => Buffer.compare(a.k, b.k))
  return keyed.map((x) => x.e)
}

// ---------------------------------------------------------------------------
// Entry construction shared by host and guest side

const S_IFMT = 0o170000
const TYPES: Record<number, ManifestEntry['type']> = {
  0o100000: 'file',
  0o040000: 'dir',
  0o120000: 'symlink',
  0o020000: 'char',
  0o060000: 'block',
  0o010000: 'fifo',
  0o140000: 'socket',
}

interface RawStat {
  mode: number
  uid: number
  gid: number
  nlink: number
  mtime: number
  size: number
  rdevMajor: number
  rdevMinor: number
}

function makeEntry(pathBytes: Buffer, st: RawStat, extra: { sha256?: string; target?: Buffer }): ManifestEntry {
  const type = TYPES[st.mode & S_IFMT]
  if (!type) throw new Error(`unknown file type 0o${(st.mode & S_IFMT).toString(8)} for ${bufferToManifestPath(pathBytes)}`)
  const e: ManifestEntry = {
    path: bufferToManifestPath(pathBytes),
    type,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    nlink: st.nlink,
    mtime: st.mtime,
    size: type === 'dir' ? 0 : st.size,
  }
  if (type === 'file') {
    if (extra.sha256 === undefined) throw new Error(`no sha256 for regular file ${e.path}`)
    e.sha256 = extra.sha256
  }
  if (type === 'symlink') {
    if (extra.target === undefined) throw new Error(`no target for symlink ${e.path}`)
    e.target = bufferToManifestPath(extra.target)
  }
  if (type === 'char' || type === 'block') e.rdev = `${st.rdevMajor}:${st.rdevMinor}`
  return e
}

// ---------------------------------------------------------------------------
// Host side

/** The manifest of a host directory tree (lstat-based, symlinks not followed), sorted like bootAndManifest's. */
export async function manifestOfDir(dir: string): Promise<ManifestEntry[]> {
  const root = Buffer.from(path.resolve(dir))
  const entries: ManifestEntry[] = []
  const walk = async (rel: Buffer | null): Promise<void> => {
    const abs = rel ? Buffer.concat([root, Buffer.from('/'), rel]) : root
    const st = await fsp.lstat(abs, { bigint: true })
    const raw: RawStat = {
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      nlink: Number(st.nlink),
      mtime: Number(floorDiv(st.mtimeNs, 1_000_000_000n)),
      size: Number(st.size),
      ...devMajorMinor(st.rdev),
    }
    const extra: { sha256?: string; target?: Buffer } = {}
    if (st.isFile()) extra.sha256 = await sha256File(abs)
    if (st.isSymbolicLink()) extra.target = await fsp.readlink(abs, { encoding: 'buffer' })
    entries.push(makeEntry(rel ?? Buffer.alloc(0), raw, extra))
    if (st.isDirectory()) {
      const names = await fsp.readdir(abs, { encoding: 'buffer' })
      for (const name of names) await walk(rel ? Buffer.concat([rel, Buffer.from('/'), name]) : name)
    }
  }
  await walk(null)
  return sortManifest(entries)
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b
  return a % b !== 0n && a < 0n ? q - 1n : q
}

/** glibc's gnu_dev_major/gnu_dev_minor. */
function devMajorMinor(dev: bigint): { rdevMajor: number; rdevMinor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn)
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn)
  return { rdevMajor: Number(major), rdevMinor: Number(minor) }
}

async function sha256File(p: Buffer): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of fs.createReadStream(p)) h.update(chunk as Buffer)
  return h.digest('hex')
}

// ---------------------------------------------------------------------------
// Prerequisites

interface Prereqs {
  kernel: string
  modulesDir: string
  qemu: string
  busybox: string
}

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue
    const p = path.join(dir, cmd)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      if (fs.statSync(p).isFile()) return p
    } catch {
      /* not here */
    }
  }
  return undefined
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[^0-9]+/).filter(Boolean).map(Number)
  const pb = b.split(/[^0-9]+/).filter(Boolean).map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1)
    if (d !== 0) return d
  }
  return a.localeCompare(b)
}

function moduleKnown(modulesDir: string, name: string): boolean {
  const re = new RegExp(`(^|/)${name}\\.ko(\\.[a-z]+)?(:|$)`, 'm')
  for (const f of ['modules.dep', 'modules.builtin']) {
    try {
      if (re.test(fs.readFileSync(path.join(modulesDir, f), 'utf8'))) return true
    } catch {
      /* missing file */
    }
  }
  return false
}

/** True when the ELF file has no PT_INTERP program header (statically linked). */
function isStaticElf(p: string): boolean {
  const buf = fs.readFileSync(p)
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return false // ELF64 LE only
  const phoff = Number(buf.readBigUInt64LE(0x20))
  const phentsize = buf.readUInt16LE(0x36)
  const phnum = buf.readUInt16LE(0x38)
  for (let i = 0; i < phnum; i++) {
    const off = phoff + i * phentsize
    if (off + 4 > buf.length) return false
    if (buf.readUInt32LE(off) === 3 /* PT_INTERP */) return false
  }
  return true
}

function checkPrereqs(): Prereqs {
  const problems: string[] = []
  const needModules = ['erofs', 'virtio_blk']

  // Kernel + matching modules directory.
  let kernel = process.env.VM_HARNESS_KERNEL
  let modulesDir = process.env.VM_HARNESS_MODULES_DIR
  if (!kernel) {
    let candidates: string[] = []
    try {
      candidates = fs.readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-'))
    } catch {
      /* no /boot */
    }
    const releases = candidates
      .map((f) => f.slice('vmlinuz-'.length))
      .filter((rel) => needModules.every((m) => moduleKnown(path.join('/lib/modules', rel), m)))
      .sort(compareVersions)
      .reverse()
    const preferred = releases.find((r) => r.startsWith('6.12.')) ?? releases[0]
    if (preferred) {
      kernel = path.join('/boot', `vmlinuz-${preferred}`)
      modulesDir = modulesDir ?? path.join('/lib/modules', preferred)
    } else {
      problems.push(
        `no kernel found: need /boot/vmlinuz-<rel> with /lib/modules/<rel> providing ${needModules.join(', ')} ` +
          `(install Debian's linux-image-amd64 6.12 from bookworm-backports, or set VM_HARNESS_KERNEL and VM_HARNESS_MODULES_DIR)`,
      )
    }
  }
  if (kernel) {
    try {
      fs.accessSync(kernel, fs.constants.R_OK)
    } catch {
      problems.push(`kernel ${kernel} is missing or not readable (Debian installs vmlinuz mode 0600: run as root or chmod it)`)
    }
    if (!modulesDir) modulesDir = path.join('/lib/modules', path.basename(kernel).replace(/^vmlinuz-/, ''))
  }
  if (modulesDir) {
    if (!fs.existsSync(path.join(modulesDir, 'modules.dep'))) {
      problems.push(`kernel modules missing: ${modulesDir}/modules.dep not found (install the kernel's modules or set VM_HARNESS_MODULES_DIR)`)
    } else {
      for (const m of needModules) {
        if (!moduleKnown(modulesDir, m)) problems.push(`kernel module ${m} is neither in ${modulesDir}/modules.dep nor modules.builtin`)
      }
    }
  }

  const qemu = which(QEMU)
  if (!qemu) problems.push(`${QEMU} not found in PATH (apt-get install qemu-system-x86)`)

  const busybox = process.env.VM_HARNESS_BUSYBOX ?? '/bin/busybox'
  if (!fs.existsSync(busybox)) problems.push(`busybox not found at ${busybox} (apt-get install busybox-static, or set VM_HARNESS_BUSYBOX)`)
  else if (!isStaticElf(busybox)) problems.push(`${busybox} is not a statically linked x86-64 binary (apt-get install busybox-static)`)

  for (const tool of ['bash', 'cpio', 'gzip', 'xz']) {
    if (!which(tool)) problems.push(`'${tool}' not found in PATH (needed to build the initramfs)`)
  }
  for (const f of [BUILD_SCRIPT, INIT_SCRIPT]) if (!fs.existsSync(f)) problems.push(`harness file missing: ${f}`)

  if (problems.length) {
    throw new Error(`VM harness prerequisites missing:\n  - ${problems.join('\n  - ')}`)
  }
  return { kernel: kernel!, modulesDir: modulesDir!, qemu: qemu!, busybox }
}

/** Throws with an actionable message if the kernel, modules, qemu-system-x86_64 or busybox are missing. */
export function vmPrerequisites(): { kernel: string; modulesDir: string } {
  const { kernel, modulesDir } = checkPrereqs()
  return { kernel, modulesDir }
}

// ---------------------------------------------------------------------------
// Initramfs (cached)

function execFileP(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`))
      else resolve({ stdout, stderr })
    })
  })
}

function cacheDir(): string {
  return process.env.VM_HARNESS_CACHE ?? path.join(os.tmpdir(), 'microsandbox-vm-harness')
}

/** Path of the cached initramfs for this kernel, building it when missing. */
export async function ensureInitramfs(): Promise<string> {
  const p = checkPrereqs()
  const release = path.basename(p.modulesDir)
  const bb = fs.statSync(p.busybox)
  const key = createHash('sha256')
    .update(fs.readFileSync(BUILD_SCRIPT))
    .update('\0')
    .update(fs.readFileSync(INIT_SCRIPT))
    .update('\0')
    .update(`${release}\0${p.modulesDir}\0${fs.statSync(path.join(p.modulesDir, 'modules.dep')).mtimeMs}\0`)
    .update(`${p.busybox}\0${bb.size}\0${bb.mtimeMs}`)
    .digest('hex')
    .slice(0, 16)
  const dir = cacheDir()
  await fsp.mkdir(dir, { recursive: true })
  const out = path.join(dir, `initramfs-${release}-${key}.cpio.gz`)
  if (fs.existsSync(out)) return out
  // The script writes to a temp file and renames it, so concurrent builds are safe.
  await execFileP('bash', [BUILD_SCRIPT, p.modulesDir, out, p.busybox])
  // Drop initramfs images of older harness versions for this kernel.
  for (const f of await fsp.readdir(dir)) {
    if (f.startsWith(`initramfs-${release}-`) && f.endsWith('.cpio.gz') && f !== path.basename(out)) {
      await fsp.rm(path.join(dir, f), { force: true })
    }
  }
  return out
}

// ---------------------------------------------------------------------------
// Boot

const running = new Set<ChildProcess>()
let exitHookInstalled = false
function trackChild(child: ChildProcess): void {
  running.add(child)
  child.once('exit', () => running.delete(child))
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.once('exit', () => {
      for (const c of running) c.kill('SIGKILL')
    })
  }
}

function tail(text: string, lines = CONSOLE_TAIL_LINES): string {
  const all = text.replace(/\r/g, '').split('\n')
  while (all.length && all[all.length - 1] === '') all.pop()
  return all.slice(-lines).join('\n')
}

function qemuDriveFile(p: string): string {
  return p.replace(/,/g, ',,') // qemu option syntax escapes ',' by doubling it
}

/**
 * QEMU's VMDK driver silently ignores every extent whose access mode is not
 * "RW" (block/vmdk.c, vmdk_parse_extents: `strcmp(access, "RW")` -> skip), so a
 * valid descriptor with `RDONLY` extents shows up in the guest as an empty,
 * 0-byte disk. The drive is attached with readonly=on anyway, so for a text
 * descriptor with RDONLY extents we boot a temporary copy in which those
 * extents say RW and point at the extent files by absolute path; the extent
 * files themselves are used unchanged. Other descriptors are used as they are.
 */
async function qemuCompatibleVmdk(descriptor: string, tmp: string): Promise<string> {
  const fd = await fsp.open(descriptor, 'r')
  let head: Buffer
  try {
    head = Buffer.alloc(4)
    await fd.read(head, 0, 4, 0)
  } finally {
    await fd.close()
  }
  if (head.toString('latin1') === 'KDMV') return descriptor // binary sparse VMDK: embedded descriptor, leave alone
  const st = await fsp.stat(descriptor)
  if (st.size > 1 << 20) return descriptor // not a descriptor file
  const text = await fsp.readFile(descriptor, 'utf8')
  const extent = /^(\s*)RDONLY(\s+\d+\s+\S+\s+)"([^"\n]*)"/gm
  if (!extent.test(text)) return descriptor
  const dir = path.dirname(descriptor)
  const rewritten = text.replace(extent, (_m, indent: string, mid: string, file: string) => {
    return `${indent}RW${mid}"${path.resolve(dir, file)}"`
  })
  const copy = path.join(tmp, 'disk.vmdk')
  await fsp.writeFile(copy, rewritten)
  return copy
}

/**
 * Boot the kernel with `disk` (path to a .vmdk descriptor or a raw image) attached read-only, mount it as EROFS,
 * and return the manifest of the mounted tree. Rejects with a clear error (including the tail of the console log)
 * when the kernel cannot mount or the VM does not finish within timeoutMs.
 */
export async function bootAndManifest(disk: string, opts: BootOptions = {}): Promise<ManifestEntry[]> {
  const prereqs = checkPrereqs()
  const diskPath = path.resolve(disk)
  const st = await fsp.stat(diskPath).catch(() => undefined)
  if (!st || !st.isFile()) throw new VmHarnessError(`disk image ${diskPath} does not exist or is not a file`, '')
  const format = opts.format ?? (diskPath.toLowerCase().endsWith('.vmdk') ? 'vmdk' : 'raw')
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const initramfs = await ensureInitramfs()

  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vm-harness-'))
  const consolePath = path.join(tmp, 'console.log')
  const dataPath = path.join(tmp, 'data.log')
  try {
    const drivePath = format === 'vmdk' ? await qemuCompatibleVmdk(diskPath, tmp) : diskPath
    const qemuArgs = [
      '-accel', 'tcg',
      '-m', '512M',
      '-smp', '1',
      '-nodefaults', '-no-user-config',
      // Like -nographic, but both UARTs go to files instead of stdio and there is no monitor.
      '-display', 'none', '-monitor', 'none',
      '-no-reboot',
      '-nic', 'none',
      '-kernel', prereqs.kernel,
      '-initrd', initramfs,
      '-append', 'console=ttyS0 panic=-1 loglevel=4',
      '-serial', `file:${consolePath}`,
      '-serial', `file:${dataPath}`,
      '-drive', `file=${qemuDriveFile(drivePath)},format=${format},if=virtio,readonly=on`,
    ]
    // setpriv --pdeathsig: qemu dies with us even if this process is killed without running exit hooks.
    const setpriv = which('setpriv')
    const [cmd, args] = setpriv
      ? [setpriv, ['--pdeathsig', 'KILL', prereqs.qemu, ...qemuArgs]]
      : [prereqs.qemu, qemuArgs]

    const started = Date.now()
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    trackChild(child)
    let qemuOutput = ''
    child.stdout!.on('data', (d: Buffer) => (qemuOutput += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (qemuOutput += d.toString()))

    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    const { code, signal, spawnError } = await new Promise<{
      code: number | null
      signal: NodeJS.Signals | null
      spawnError?: Error
    }>((resolve) => {
      child.once('error', (err) => resolve({ code: null, signal: null, spawnError: err }))
      child.once('close', (c, s) => resolve({ code: c, signal: s }))
    })
    clearTimeout(timer)
    const elapsed = Date.now() - started

    const consoleLog = await fsp.readFile(consolePath, 'utf8').catch(() => '')
    const data = await fsp.readFile(dataPath, 'latin1').catch(() => '')
    const ctx = () =>
      `\n  disk: ${diskPath} (format ${format})` +
      (qemuOutput.trim() ? `\n  qemu output:\n${qemuOutput.trim()}` : '') +
      `\n  ---- console tail ----\n${tail(consoleLog)}\n  ---- end console ----`

    if (spawnError) throw new VmHarnessError(`failed to start ${QEMU}: ${spawnError.message}${ctx()}`, consoleLog)
    if (timedOut) {
      throw new VmHarnessError(`VM did not finish within ${timeoutMs} ms (qemu killed)${ctx()}`, consoleLog)
    }
    let parsed: ReturnType<typeof parseDataChannel>
    try {
      parsed = parseDataChannel(data)
    } catch (err) {
      throw new VmHarnessError(`garbled result from the guest: ${(err as Error).message}${ctx()}`, consoleLog)
    }
    if (parsed.status === undefined) {
      throw new VmHarnessError(
        `VM exited (code ${code}, signal ${signal}) after ${elapsed} ms without reporting a result${ctx()}`,
        consoleLog,
      )
    }
    if (parsed.status !== 'ok') {
      throw new VmHarnessError(`guest failed: ${parsed.status.replace(/^fail /, '')}${ctx()}`, consoleLog)
    }
    try {
      return sortManifest(guestManifest(parsed.sections))
    } catch (err) {
      throw new VmHarnessError(`cannot parse the guest manifest: ${(err as Error).message}${ctx()}`, consoleLog)
    }
  } finally {
    if (process.env.VM_HARNESS_KEEP_TMP === '1') console.log(`vm harness: kept ${tmp}`)
    else await fsp.rm(tmp, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------
// Guest output parsing

function parseDataChannel(data: string): { status?: string; sections: Map<string, Buffer> } {
  const sections = new Map<string, Buffer>()
  let status: string | undefined
  let current: { name: string; hex: string[] } | undefined
  for (const rawLine of data.split('\n')) {
    const line = rawLine.replace(/\r/g, '').trim()
    if (!line) continue
    if (current) {
      if (line.startsWith('VMH-END ')) {
        const [, name, bytes] = line.split(' ')
        if (name !== current.name) throw new Error(`data channel: VMH-END ${name} inside section ${current.name}`)
        const buf = gunzipSync(Buffer.from(current.hex.join(''), 'hex'))
        if (buf.length !== Number(bytes)) {
          throw new Error(`data channel: section ${name} has ${buf.length} bytes, guest sent ${bytes}`)
        }
        sections.set(name, buf)
        current = undefined
      } else if (/^[0-9a-f]+$/.test(line)) current.hex.push(line)
      else throw new Error(`data channel: unexpected line in section ${current.name}: ${JSON.stringify(line)}`)
    } else if (line.startsWith('VMH-BEGIN ')) current = { name: line.slice('VMH-BEGIN '.length), hex: [] }
    else if (line.startsWith('VMH-STATUS ')) status = line.slice('VMH-STATUS '.length)
  }
  return { status, sections }
}

function splitNul(buf: Buffer): Buffer[] {
  const out: Buffer[] = []
  let start = 0
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0) {
      out.push(buf.subarray(start, i))
      start = i + 1
    }
  }
  if (start !== buf.length) throw new Error('NUL-separated list does not end with NUL')
  return out
}

function guestManifest(sections: Map<string, Buffer>): ManifestEntry[] {
  const get = (n: string): Buffer => {
    const b = sections.get(n)
    if (!b) throw new Error(`section ${n} missing`)
    return b
  }
  const names = splitNul(get('names'))

  // stat output: "<f> <u> <g> <h> <Y> <s> <t> <T> <raw name>\n" per name, in `find` order.
  const statOut = get('stat')
  const stats: RawStat[] = []
  let pos = 0
  for (const name of names) {
    const fields: string[] = []
    for (let k = 0; k < 8; k++) {
      const sp = statOut.indexOf(0x20, pos)
      if (sp < 0 || sp - pos > 24) throw new Error(`stat output out of step at ${bufferToManifestPath(name)}`)
      fields.push(statOut.subarray(pos, sp).toString('latin1'))
      pos = sp + 1
    }
    if (!statOut.subarray(pos, pos + name.length).equals(name) || statOut[pos + name.length] !== 0x0a) {
      throw new Error(`stat output out of step at ${bufferToManifestPath(name)}`)
    }
    pos += name.length + 1
    const num = (s: string, radix: number): number => {
      if (!(radix === 16 ? /^[0-9a-f]+$/ : /^-?[0-9]+$/).test(s)) {
        throw new Error(`bad stat field ${JSON.stringify(s)} for ${bufferToManifestPath(name)}`)
      }
      return parseInt(s, radix)
    }
    stats.push({
      mode: num(fields[0], 16),
      uid: num(fields[1], 10),
      gid: num(fields[2], 10),
      nlink: num(fields[3], 10),
      mtime: num(fields[4], 10),
      size: num(fields[5], 10),
      rdevMajor: num(fields[6], 16),
      rdevMinor: num(fields[7], 16),
    })
  }
  if (pos !== statOut.length) throw new Error('unexpected trailing stat output')

  // sha256sum output: "<64 hex>  <raw name>\n" per regular file, in `find -type f` order (= `find` order).
  const sums = get('sums')
  const hashes = new Map<number, string>()
  let off = 0
  names.forEach((name, i) => {
    if ((stats[i].mode & S_IFMT) !== 0o100000) return
    const hash = sums.subarray(off, off + 64).toString('latin1')
    const sep = sums.subarray(off + 64, off + 66).toString('latin1')
    const got = sums.subarray(off + 66, off + 66 + name.length)
    if (!/^[0-9a-f]{64}$/.test(hash) || sep !== '  ' || !got.equals(name) || sums[off + 66 + name.length] !== 0x0a) {
      throw new Error(`sha256sum output out of step at ${bufferToManifestPath(name)}`)
    }
    hashes.set(i, hash)
    off += 66 + name.length + 1
  })
  if (off !== sums.length) throw new Error('unexpected trailing sha256sum output')

  // Symlinks: lnames must be the symlinks of `names` in the same order; links holds "target\n\0" each.
  const lnames = splitNul(get('lnames'))
  const targets = splitNul(get('links'))
  const linkIdx = names.map((_, i) => i).filter((i) => (stats[i].mode & S_IFMT) === 0o120000)
  if (lnames.length !== linkIdx.length || targets.length !== linkIdx.length || lnames.some((n, k) => !n.equals(names[linkIdx[k]]))) {
    throw new Error('symlink list does not match the names list')
  }
  const linkTargets = new Map<number, Buffer>()
  linkIdx.forEach((i, k) => {
    const t = targets[k]
    if (t[t.length - 1] !== 0x0a) throw new Error(`readlink output for ${bufferToManifestPath(names[i])} lacks newline`)
    linkTargets.set(i, t.subarray(0, t.length - 1))
  })

  return names.map((name, i) => {
    let rel: Buffer
    if (name.equals(Buffer.from('.'))) rel = Buffer.alloc(0)
    else if (name.subarray(0, 2).equals(Buffer.from('./'))) rel = name.subarray(2)
    else throw new Error(`unexpected find output ${bufferToManifestPath(name)}`)
    return makeEntry(rel, stats[i], { sha256: hashes.get(i), target: linkTargets.get(i) })
  })
}
