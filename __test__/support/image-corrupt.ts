/**
 * Broken inputs for the error tests. Byte-level corruptors (truncate, flip a
 * byte), tars written member by member through Python's tarfile (`craftTar`,
 * `rewriteTar`) for the names and links the tools refuse to write, and named
 * corruptors that each break exactly one thing of a tool-made archive or
 * layout while keeping everything else valid.
 */
import { execFile } from 'child_process'
import * as fsp from 'fs/promises'
import * as path from 'path'

import { BuiltImage, blobPath, editImage } from './image-build'
import { run, sha256 } from './tools'

// ---------------------------------------------------------------- corruptors

/** Cuts `file` to `keep` bytes (default: half). */
export async function truncateFile(file: string, keep?: number): Promise<string> {
  const size = (await fsp.stat(file)).size
  await fsp.truncate(file, keep ?? Math.floor(size / 2))
  return file
}

/** Flips every bit of the byte at `offset` (negative: from the end). */
export async function flipByte(file: string, offset: number): Promise<void> {
  const fd = await fsp.open(file, 'r+')
  try {
    const size = (await fd.stat()).size
    const at = offset < 0 ? size + offset : offset
    if (at < 0 || at >= size) throw new Error(`offset ${offset} outside ${file} (${size} bytes)`)
    const b = Buffer.alloc(1)
    await fd.read(b, 0, 1, at)
    b[0] ^= 0xff
    await fd.write(b, 0, 1, at)
  } finally {
    await fd.close()
  }
}

/**
 * Flips a byte of layer `i`'s blob in a layout, keeping its size:
 * `where: 'gzip-header'` hits the gzip MTIME field (the stream still
 * decompresses to the right tar, only the blob digest is wrong);
 * `'middle'` hits the compressed data.
 */
export async function corruptLayerBlob(img: BuiltImage, i: number, where: 'gzip-header' | 'middle'): Promise<string> {
  const file = blobPath(img.layout, img.layers[i].digest)
  const size = (await fsp.stat(file)).size
  await flipByte(file, where === 'gzip-header' ? 4 : Math.floor(size / 2))
  return file
}

/** Writes a tar with exactly these members (names verbatim, links as given), via Python's tarfile. */
export async function craftTar(out: string, members: Array<{ name: string; content?: string | Buffer; symlink?: string; hardlink?: string; dir?: boolean }>): Promise<string> {
  const spec = members.map((m) => ({
    name: m.name,
    content: m.content === undefined ? null : Buffer.from(m.content).toString('base64'),
    symlink: m.symlink ?? null,
    hardlink: m.hardlink ?? null,
    dir: m.dir ?? false,
  }))
  const script = `
import base64, io, json, sys, tarfile
spec = json.load(sys.stdin)
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    for m in spec:
        info = tarfile.TarInfo(m['name'])
        info.mtime = 0
        if m['dir']:
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            t.addfile(info)
        elif m['symlink'] is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = m['symlink']
            t.addfile(info)
        elif m['hardlink'] is not None:
            info.type = tarfile.LNKTYPE
            info.linkname = m['hardlink']
            t.addfile(info)
        else:
            data = base64.b64decode(m['content'] or '')
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
`
  await new Promise<void>((resolve, reject) => {
    const child = execFile('python3', ['-c', script, out], (err, _stdout, stderr) => (err ? reject(new Error(`python3 tar craft failed: ${stderr}`)) : resolve()))
    child.stdin!.end(JSON.stringify(spec))
  })
  return out
}

/** Reads every member of a tar into memory (name → bytes; links → `{ link }`). */
export async function readTarMembers(file: string): Promise<Array<{ name: string; data?: Buffer; symlink?: string; hardlink?: string; dir?: boolean }>> {
  const script = `
import base64, json, sys, tarfile
out = []
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        e = {'name': m.name}
        if m.isdir(): e['dir'] = True
        elif m.issym(): e['symlink'] = m.linkname
        elif m.islnk(): e['hardlink'] = m.linkname
        else: e['data'] = base64.b64encode(t.extractfile(m).read()).decode()
        out.append(e)
json.dump(out, sys.stdout)
`
  const { stdout } = await run('python3', ['-c', script, file])
  return (JSON.parse(stdout) as Array<{ name: string; data?: string; symlink?: string; hardlink?: string; dir?: boolean }>).map((m) => ({
    ...m,
    data: m.data === undefined ? undefined : Buffer.from(m.data, 'base64'),
  }))
}

/**
 * Rewrites a tar archive member by member through `transform` (which may
 * rename, replace, drop or add members): the hand-made way to get inputs the
 * tools refuse to write (`..` or absolute names, links leading outside).
 */
export async function rewriteTar(
  src: string,
  out: string,
  transform: (members: Awaited<ReturnType<typeof readTarMembers>>) => Parameters<typeof craftTar>[1],
): Promise<string> {
  const members = await readTarMembers(src)
  return craftTar(out, transform(members))
}

/** A file that is not an archive of any kind. */
export async function notAnArchive(out: string): Promise<string> {
  await fsp.writeFile(out, 'This is a plain text file, not an image archive.\n'.repeat(40))
  return out
}

// ---------------------------------------------------------------- named corruptors
// Each takes a tool-made input (copy it first: they edit in place or write `out`)
// and breaks exactly one thing, keeping everything else valid.

type TarSpec = Parameters<typeof craftTar>[1]

/** The members of a tar as `craftTar` input, to copy them unchanged. */
export function asTarSpec(members: Awaited<ReturnType<typeof readTarMembers>>): TarSpec {
  return members.map((m) => ({ name: m.name, content: m.data, symlink: m.symlink, hardlink: m.hardlink, dir: m.dir }))
}

/** Layer `i`'s descriptor in the manifest claims `delta` more bytes than the blob has. */
export async function corruptLayerSize(layout: string, ref: string, i: number, delta: number): Promise<BuiltImage> {
  return editImage(layout, ref, { manifest: (m) => ({ ...m, layers: m.layers.map((l, j) => (j === i ? { ...l, size: l.size + delta } : l)) }) })
}

/** The config names `wrong` as layer `i`'s diff_id (all descriptors updated, so only the diff_id lies). */
export async function corruptDiffId(layout: string, ref: string, i: number, wrong = sha256(`not layer ${i}`)): Promise<BuiltImage> {
  return editImage(layout, ref, { config: (c) => ({ ...c, rootfs: { ...c.rootfs, diff_ids: c.rootfs.diff_ids.map((d, j) => (j === i ? wrong : d)) } }) })
}

/** The config blob is `text` (not JSON); the manifest names it by its real digest. */
export async function configNotJson(layout: string, ref: string, text = 'config? no: [1,2'): Promise<void> {
  await editImage(layout, ref, { config: () => Buffer.from(text) })
}

/** The manifest blob is `text` (not JSON); index.json names it by its real digest. */
export async function manifestNotJson(layout: string, ref: string, text = '<html>not a manifest</html>'): Promise<void> {
  await editImage(layout, ref, { manifest: () => Buffer.from(text) })
}

/** index.json of a layout is cut short. */
export async function indexNotJson(layout: string): Promise<void> {
  await fsp.writeFile(path.join(layout, 'index.json'), '{"schemaVersion": 2, "manifests": [')
}

/** The manifest descriptor in index.json claims `delta` more bytes. */
export async function corruptIndexSize(layout: string, delta = 3): Promise<void> {
  const file = path.join(layout, 'index.json')
  const index = JSON.parse(await fsp.readFile(file, 'utf8'))
  index.manifests[0].size += delta
  await fsp.writeFile(file, JSON.stringify(index))
}

/** A copy of tar `src` at `out` with `extra` members appended (e.g. `../x`, `/abs`, links leading out). */
export async function withExtraMembers(src: string, out: string, extra: TarSpec): Promise<string> {
  return rewriteTar(src, out, (ms) => [...asTarSpec(ms), ...extra])
}

/** A copy of tar `src` at `out` where member `name` is replaced by `replacement` (same name unless given). */
export async function withMemberReplaced(src: string, out: string, name: string, replace: (m: TarSpec[number]) => TarSpec[number]): Promise<string> {
  let found = false
  const result = await rewriteTar(src, out, (ms) =>
    asTarSpec(ms).map((m) => {
      if (m.name !== name) return m
      found = true
      return replace(m)
    }),
  )
  if (!found) throw new Error(`no member ${name} in ${src}`)
  return result
}

/** A copy of docker archive `src` at `out` whose first symlink member (`<id>/layer.tar`) points at `target`. */
export async function withSymlinkRetargeted(src: string, out: string, target = '../../../../../etc/passwd'): Promise<string> {
  return rewriteTar(src, out, (ms) => {
    const spec = asTarSpec(ms)
    const link = spec.find((m) => m.symlink !== undefined)
    if (!link) throw new Error(`${src} has no symlink member`)
    link.symlink = target
    return spec
  })
}

/** In a layout directory, moves blob `digest` outside the layout and leaves a symlink to it (same bytes, outside). */
export async function blobSymlinkedOutside(layout: string, digest: string, outside: string): Promise<void> {
  const blob = blobPath(layout, digest)
  await fsp.rename(blob, outside)
  await fsp.symlink(outside, blob)
}
