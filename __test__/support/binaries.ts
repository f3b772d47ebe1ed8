/**
 * What a built binary is, read by the toolchains' own inspectors: LLVM's
 * llvm-objdump for Mach-O (Debian's `llvm`), MinGW's objdump
 * for PE (Debian's `binutils-mingw-w64-x86-64`). Nothing here parses
 * binaries itself.
 */
import { requireTools, run } from './images'

/** The minimum macOS the darwin-arm64 binary is built for (scripts/build-targets.sh). */
export const MIN_MACOS = '11.0'

export interface MachO {
  /** `filetype` of the Mach header, e.g. DYLIB. */
  fileType: string
  /** `cputype`, e.g. ARM64. */
  cpu: string
  /** LC_BUILD_VERSION: platform name and minimum OS version. */
  buildVersion: { platform: string; minos: string } | null
  /** LC_ID_DYLIB: the library's own install name. */
  id: string
  /** Install names of the LC_LOAD_DYLIB libraries. */
  dylibs: string[]
  /** Exported symbols (the export trie). */
  exports: string[]
  /** Undefined symbols looked up in the host process at load (flat namespace). */
  flatLookups: string[]
  /** Undefined symbols bound to a named library. */
  boundImports: Array<{ symbol: string; library: string }>
}

export async function machO(file: string): Promise<MachO> {
  requireTools(['llvm-objdump'])
  const headers = (await run('llvm-objdump', ['--macho', '--private-headers', file])).stdout
  const header = headers.split('\n').find((l) => /^\s*MH_MAGIC/.test(l))
  if (!header) throw new Error(`${file}: no Mach-O header in llvm-objdump's output:\n${headers}`)
  const [, cpu, , , fileType] = header.trim().split(/\s+/)
  const build = /cmd LC_BUILD_VERSION\n(?:.*\n)*?\s*platform (\S+)\n(?:.*\n)*?\s*minos (\S+)/.exec(headers)
  const id = (await run('llvm-objdump', ['--macho', '--dylib-id', file])).stdout.split('\n')[1]?.trim() ?? ''
  // --dylibs-used lists LC_ID_DYLIB too.
  const dylibs = (await run('llvm-objdump', ['--macho', '--dylibs-used', file])).stdout
    .split('\n')
    .slice(1)
    .map((l) => l.trim().replace(/ \(compatibility version.*$/, ''))
    .filter((l) => l && l !== id)
  const exports = (await run('llvm-objdump', ['--macho', '--exports-trie', file])).stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/).pop() ?? '')
    .filter((s) => s.startsWith('_'))
  // What dyld binds at load: each imported symbol and the library it is
  // looked up in, "flat-namespace" for those linked with -undefined
  // dynamic_lookup (found in whatever image defines them: node). The
  // binary carries LC_DYLD_INFO bind tables (zig does not emit chained
  // fixups), which LLVM 14's objdump prints; none at all fails the checks.
  const flatLookups: string[] = []
  const boundImports: Array<{ symbol: string; library: string }> = []
  for (const table of ['--bind', '--lazy-bind']) {
    const rows = (await run('llvm-objdump', ['--macho', table, file])).stdout.split('\n')
    const start = rows.findIndex((l) => /^segment\s+section\s+address/.test(l))
    if (start < 0) continue
    for (const row of rows.slice(start + 1).filter((l) => l.trim())) {
      const fields = row.trim().split(/\s+/)
      const [library, symbol] = fields.slice(-2)
      if (library === 'flat-namespace') flatLookups.push(symbol)
      else boundImports.push({ symbol, library })
    }
  }
  return {
    fileType,
    cpu,
    buildVersion: build ? { platform: build[1], minos: build[2] } : null,
    id,
    dylibs,
    exports,
    flatLookups,
    boundImports,
  }
}

export interface PeFile {
  /** objdump's file format, e.g. pei-x86-64. */
  format: string
  isDll: boolean
  /** Names in the export table. */
  exports: string[]
  /** DLLs of the import table. */
  dlls: string[]
}

export async function peImports(file: string): Promise<PeFile> {
  const objdump = 'x86_64-w64-mingw32-objdump'
  requireTools([objdump])
  const out = (await run(objdump, ['-p', file])).stdout
  const format = /file format (\S+)/.exec(out)?.[1] ?? ''
  const characteristics = /^Characteristics\s+0x([0-9a-f]+)/im.exec(out)
  // IMAGE_FILE_DLL
  const isDll = characteristics ? (parseInt(characteristics[1], 16) & 0x2000) !== 0 : false
  const dlls = [...out.matchAll(/^\s*DLL Name: (\S+)$/gm)].map((m) => m[1])
  const table = out.split('[Ordinal/Name Pointer] Table')[1] ?? ''
  const exports = [...table.matchAll(/^\s*\[\s*\d+\] (\S+)$/gm)].map((m) => m[1])
  return { format, isDll, exports, dlls }
}
