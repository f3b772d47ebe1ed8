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
 * The manifest itself (its entries, the path encoding, the comparison rules
 * and the code computing it on both sides) is ./manifest; this module boots
 * the VM, carries the guest's report back over the data channel, and
 * re-exports the manifest API so that specs import the harness from here.
 *
 * Guest <-> host protocol: see ../vm/init.sh. The kernel console (ttyS0) is
 * written to a log file and only used for diagnostics; the manifest travels
 * over a second UART (ttyS1) as gzipped, hex-encoded sections between
 * `VMH-BEGIN <section>` / `VMH-END <section> <bytes>` markers, terminated by
 * `VMH-STATUS ok|fail <reason>`, so kernel messages cannot corrupt it.
 *
 * Other harnesses (./powerloss) reuse the parts: `ensureInitramfs(extras)`
 * builds a variant of the image with more modules and files (a /harness.sh
 * that init.sh runs instead of the manifest), and `spawnVm` starts qemu on
 * it with their own drive and kernel command line.
 *
 * Environment overrides: VM_HARNESS_KERNEL (path to vmlinuz),
 * VM_HARNESS_MODULES_DIR (/lib/modules/<rel>), VM_HARNESS_BUSYBOX (static
 * busybox), VM_HARNESS_CACHE (initramfs cache dir, default
 * $TMPDIR/microsandbox-vm-harness), VM_HARNESS_KEEP_TMP=1 (keep the per-boot
 * temp dir with console.log/data.log for debugging).
 */
import { spawn, ChildProcess } from 'child_process'
import { createHash } from 'crypto'
import * as fs from 'fs'
import * as fsp from 'fs/promises'
import * as os from 'os'
import * as path from 'path'
import { gunzipSync } from 'zlib'

import { ManifestEntry, guestManifest } from './manifest'
import { run } from './tools'

export type { ManifestEntry } from './manifest'
export { bufferToManifestPath, manifestOfDir, manifestPathToBuffer } from './manifest'

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

function checkPrereqs(extraModules: readonly string[] = []): Prereqs {
  const problems: string[] = []
  const needModules = ['erofs', 'virtio_blk', ...extraModules]

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

/** Throws with an actionable message if the kernel, modules (and `extraModules`), qemu-system-x86_64 or busybox are missing. */
export function vmPrerequisites(extraModules: readonly string[] = []): { kernel: string; modulesDir: string } {
  const { kernel, modulesDir } = checkPrereqs(extraModules)
  return { kernel, modulesDir }
}

// ---------------------------------------------------------------------------
// Initramfs (cached)

function cacheDir(): string {
  return process.env.VM_HARNESS_CACHE ?? path.join(os.tmpdir(), 'microsandbox-vm-harness')
}

/** What a harness adds to the initramfs (build-initramfs.sh's VM_EXTRA_MODULES and VM_EXTRA_FILES). */
export interface InitramfsExtras {
  /** Names the variant in the cache, so variants do not evict each other. */
  variant: string
  /** More kernel modules, loaded with their dependencies. */
  modules: string[]
  /** Host files and where they go in the image (with the shared libraries they need). */
  files: Array<{ from: string; to: string }>
}

/** Path of the cached initramfs for this kernel (with `extras`, that variant of it), building it when missing. */
export async function ensureInitramfs(extras?: InitramfsExtras): Promise<string> {
  const p = checkPrereqs(extras?.modules)
  const release = path.basename(p.modulesDir)
  const bb = fs.statSync(p.busybox)
  const hash = createHash('sha256')
    .update(fs.readFileSync(BUILD_SCRIPT))
    .update('\0')
    .update(fs.readFileSync(INIT_SCRIPT))
    .update('\0')
    .update(`${release}\0${p.modulesDir}\0${fs.statSync(path.join(p.modulesDir, 'modules.dep')).mtimeMs}\0`)
    .update(`${p.busybox}\0${bb.size}\0${bb.mtimeMs}`)
  if (extras) {
    hash.update(`\0${extras.modules.join(' ')}`)
    for (const f of extras.files) hash.update(`\0${f.to}\0`).update(fs.readFileSync(f.from))
  }
  const key = hash.digest('hex').slice(0, 16)
  const dir = cacheDir()
  await fsp.mkdir(dir, { recursive: true })
  const name = extras ? `${release}-${extras.variant}` : release
  const out = path.join(dir, `initramfs-${name}-${key}.cpio.gz`)
  if (fs.existsSync(out)) return out
  // The script writes to a temp file and renames it, so concurrent builds are safe.
  const env = extras && { ...process.env, VM_EXTRA_MODULES: extras.modules.join(' '), VM_EXTRA_FILES: extras.files.map((f) => `${f.from} ${f.to}`).join('\n') }
  await run('bash', [BUILD_SCRIPT, p.modulesDir, out, p.busybox], { env })
  // Drop initramfs images of older harness versions for this kernel (and variant).
  const older = new RegExp(`^initramfs-${name.replace(/[.+]/g, '\\$&')}-[0-9a-f]{16}\\.cpio\\.gz$`)
  for (const f of await fsp.readdir(dir)) {
    if (older.test(f) && f !== path.basename(out)) await fsp.rm(path.join(dir, f), { force: true })
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

/** The last `lines` lines of a console log. */
export function tail(text: string, lines = CONSOLE_TAIL_LINES): string {
  const all = text.replace(/\r/g, '').split('\n')
  while (all.length && all[all.length - 1] === '') all.pop()
  return all.slice(-lines).join('\n')
}

/** A path as a qemu `-drive file=` value. */
export function qemuDriveFile(p: string): string {
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

/** How `spawnVm` starts a VM. */
export interface VmSpec {
  kernel: string
  initramfs: string
  /** The virtio disk, as a qemu `-drive` value. */
  drive: string
  /** Where the kernel console (ttyS0) and the data channel (ttyS1) go. */
  consolePath: string
  dataPath: string
  /** Appended to the kernel command line. */
  append?: string
}

/**
 * Starts qemu (TCG, 512 MiB, one CPU, no network) on `spec`; stdout and
 * stderr are pipes. qemu dies with this process (exit hook, and
 * `setpriv --pdeathsig` where available); the caller bounds its run.
 */
export function spawnVm(spec: VmSpec): ChildProcess {
  const qemuArgs = [
    '-accel', 'tcg',
    '-m', '512M',
    '-smp', '1',
    '-nodefaults', '-no-user-config',
    // Like -nographic, but both UARTs go to files instead of stdio and there is no monitor.
    '-display', 'none', '-monitor', 'none',
    '-no-reboot',
    '-nic', 'none',
    '-kernel', spec.kernel,
    '-initrd', spec.initramfs,
    '-append', `console=ttyS0 panic=-1 loglevel=4${spec.append ? ` ${spec.append}` : ''}`,
    '-serial', `file:${spec.consolePath}`,
    '-serial', `file:${spec.dataPath}`,
    '-drive', spec.drive,
  ]
  // setpriv --pdeathsig: qemu dies with us even if this process is killed without running exit hooks.
  const setpriv = which('setpriv')
  const qemu = which(QEMU) ?? QEMU
  const [cmd, args] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', qemu, ...qemuArgs]] : [qemu, qemuArgs]
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  trackChild(child)
  return child
}

/**
 * Boot the kernel with `disk` (path to a .vmdk descriptor or a raw image) attached read-only, mount it as EROFS,
 * and return the manifest of the mounted tree. Rejects with a clear error (including the tail of the console log)
 * when the kernel cannot mount or the VM does not finish within timeoutMs.
 */
export async function bootAndManifest(disk: string, opts: BootOptions = {}): Promise<ManifestEntry[]> {
  return (await bootWithConsole(disk, opts)).manifest
}

/**
 * `bootAndManifest`, with the kernel console beside the manifest: its
 * `VMH: [uptime] label` lines are the guest's own clock (bench/boot-read.mjs
 * times the kernel's read of the disk with them).
 */
export async function bootWithConsole(disk: string, opts: BootOptions = {}): Promise<{ manifest: ManifestEntry[]; consoleLog: string }> {
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
    const started = Date.now()
    const child = spawnVm({
      kernel: prereqs.kernel,
      initramfs,
      drive: `file=${qemuDriveFile(drivePath)},format=${format},if=virtio,readonly=on`,
      consolePath,
      dataPath,
    })
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
      return { manifest: guestManifest(parsed.sections), consoleLog }
    } catch (err) {
      throw new VmHarnessError(`cannot parse the guest manifest: ${(err as Error).message}${ctx()}`, consoleLog)
    }
  } finally {
    if (process.env.VM_HARNESS_KEEP_TMP === '1') console.log(`vm harness: kept ${tmp}`)
    else await fsp.rm(tmp, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------
// Data channel: the guest's sections and status

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
