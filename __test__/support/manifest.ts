/**
 * The manifest the VM harness (./vm) compares: one entry per file of a tree,
 * built by the same code from a host directory (`manifestOfDir`) and from
 * what the guest reports about the disk it mounted (`guestManifest`), so a
 * test can compare the two with `toEqual`.
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
 */
import * as fsp from 'fs/promises'
import * as path from 'path'

import { hexOf, sha256File } from './tools'

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
    if (st.isFile()) extra.sha256 = hexOf(await sha256File(abs))
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

// ---------------------------------------------------------------------------
// Guest side

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

/**
 * The manifest of the guest's mounted tree from the sections it sent (see
 * ../vm/init.sh), sorted like manifestOfDir's; throws when the sections
 * disagree with each other.
 */
export function guestManifest(sections: Map<string, Buffer>): ManifestEntry[] {
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

  const entries = names.map((name, i) => {
    let rel: Buffer
    if (name.equals(Buffer.from('.'))) rel = Buffer.alloc(0)
    else if (name.subarray(0, 2).equals(Buffer.from('./'))) rel = name.subarray(2)
    else throw new Error(`unexpected find output ${bufferToManifestPath(name)}`)
    return makeEntry(rel, stats[i], { sha256: hashes.get(i), target: linkTargets.get(i) })
  })
  return sortManifest(entries)
}
