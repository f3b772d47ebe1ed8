/**
 * Stock layer sets the specs share, so that the same varied content is
 * loaded, saved, collected and booted across the suite: `sampleLayers` (a
 * small but varied root filesystem), `edgeLayers` and `dirToFileLayers`
 * (what a layer filesystem must get right) and `noise` (incompressible
 * bytes for layers of a given size). The layer sets go to `buildImage`.
 */
import { Entry, LayerSpec } from './image-build'

/** A small but varied root filesystem: files with owners, modes and mtimes, a symlink, a hard link, a deletion. */
export function sampleLayers(tag = 'sample'): LayerSpec[] {
  return [
    {
      entries: [
        { type: 'dir', path: 'etc', mode: 0o755, mtime: 1_600_000_000 },
        { type: 'file', path: 'etc/os-release', content: `ID=${tag}\n`, mode: 0o644, mtime: 1_600_000_001 },
        { type: 'file', path: 'bin/tool', content: `#!/bin/sh\necho ${tag}\n`, mode: 0o755, uid: 1000, gid: 1000, mtime: 1_600_000_002 },
        { type: 'file', path: 'tmp/scratch', content: 'to be deleted', mode: 0o600 },
        { type: 'dir', path: 'opt/data', mode: 0o750 },
        { type: 'file', path: 'opt/data/old.txt', content: 'old contents' },
      ],
    },
    {
      entries: [
        { type: 'file', path: `app/${tag}.py`, content: `print("hello from ${tag}")\n`, mode: 0o644, uid: 1000, gid: 1000, mtime: 1_650_000_000 },
        { type: 'symlink', path: 'app/current', target: `${tag}.py` },
        { type: 'hardlink', path: 'bin/tool-link', target: 'bin/tool' },
        { type: 'delete', path: 'tmp/scratch' },
      ],
    },
  ]
}

/** Deterministic pseudo-random bytes (incompressible), for layers of a given size. */
export function noise(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

/**
 * Layers exercising what a layer filesystem must get right: a type change
 * across layers (file → directory), a deleted tree, a
 * directory with hundreds of entries, a 255-byte name, non-ASCII names,
 * an empty file, setuid and sticky bits, an absolute symlink, a deep path,
 * a file spanning many blocks, a file rewritten in a later layer.
 */
export function edgeLayers(): LayerSpec[] {
  const many: Entry[] = Array.from({ length: 300 }, (_, i) => ({ type: 'file' as const, path: `many/f${String(i).padStart(3, '0')}`, content: `${i}\n` }))
  return [
    {
      entries: [
        { type: 'file', path: 'file-to-dir', content: 'was a file\n' },
        { type: 'file', path: 'deleted-dir/a', content: 'a' },
        { type: 'file', path: 'deleted-dir/sub/b', content: 'b' },
        ...many,
        { type: 'file', path: `long/${'n'.repeat(255)}`, content: 'long name\n' },
        { type: 'file', path: 'unicode/héllo-wörld-日本語.txt', content: 'unicode\n' },
        { type: 'file', path: 'empty', content: '' },
        { type: 'file', path: 'suid', content: '#!/bin/sh\n', mode: 0o4755 },
        { type: 'dir', path: 'sticky', mode: 0o1777 },
        { type: 'file', path: 'big.bin', content: noise(300_000, 42), mtime: 1_234_567_890 },
        { type: 'symlink', path: 'abs-link', target: '/etc/os-release' },
        { type: 'file', path: 'deep/a/b/c/d/e/f/g/h/file', content: 'deep\n', uid: 65534, gid: 65534 },
      ],
    },
    {
      entries: [
        { type: 'delete', path: 'file-to-dir' },
        { type: 'file', path: 'file-to-dir/inside', content: 'now a dir\n' },
        { type: 'delete', path: 'deleted-dir' },
        { type: 'file', path: 'many/f150', content: 'rewritten in layer 1\n', mode: 0o600 },
        { type: 'delete', path: 'many/f299' },
      ],
    },
  ]
}

/**
 * A directory replaced by a file in the next layer. umoci (0.4.7) writes
 * that layer as the file `dir-to-file` followed by `dir-to-file/.wh.child`
 * (a whiteout below the new file, for the lower layer's child); `umoci
 * unpack` ends with the file.
 */
export function dirToFileLayers(): LayerSpec[] {
  return [
    { entries: [{ type: 'file', path: 'dir-to-file/child', content: 'child\n' }, { type: 'file', path: 'keep', content: 'keep\n' }] },
    {
      entries: [
        { type: 'delete', path: 'dir-to-file' },
        { type: 'file', path: 'dir-to-file', content: 'now a file\n' },
      ],
    },
  ]
}
